package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Spec helpers: every attribute is declared once, next to its kind.
func optStr(name string) hcldec.Spec { return &hcldec.AttrSpec{Name: name, Type: cty.String} }
func reqStr(name string) hcldec.Spec {
	return &hcldec.AttrSpec{Name: name, Type: cty.String, Required: true}
}
func optBool(name string) hcldec.Spec { return &hcldec.AttrSpec{Name: name, Type: cty.Bool} }
func optNum(name string) hcldec.Spec  { return &hcldec.AttrSpec{Name: name, Type: cty.Number} }
func optList(name string) hcldec.Spec {
	return &hcldec.AttrSpec{Name: name, Type: cty.List(cty.String)}
}
func optMap(name string) hcldec.Spec {
	return &hcldec.AttrSpec{Name: name, Type: cty.Map(cty.String)}
}
func strDefault(name, def string) hcldec.Spec {
	return &hcldec.DefaultSpec{Primary: optStr(name), Default: &hcldec.LiteralSpec{Value: cty.StringVal(def)}}
}

// obj reads attributes from a decoded object value.
type obj struct{ v cty.Value }

// get returns the attribute and whether it is set (present and not
// null), looking it up once (each lookup normalizes the name).
func (o obj) get(name string) (cty.Value, bool) {
	t := o.v.Type()
	if !t.IsObjectType() || !t.HasAttribute(name) {
		return cty.NilVal, false
	}
	a := o.v.GetAttr(name)
	return a, !a.IsNull()
}

func (o obj) has(name string) bool {
	_, ok := o.get(name)
	return ok
}

func (o obj) str(name string) string {
	a, ok := o.get(name)
	if !ok {
		return ""
	}
	return a.AsString()
}

func (o obj) strp(name string) *string {
	a, ok := o.get(name)
	if !ok {
		return nil
	}
	s := a.AsString()
	return &s
}

func (o obj) boolean(name string) bool {
	a, ok := o.get(name)
	return ok && a.True()
}

func (o obj) boolp(name string) *bool {
	a, ok := o.get(name)
	if !ok {
		return nil
	}
	b := a.True()
	return &b
}

func (o obj) intp(name string) (*int, error) {
	a, ok := o.get(name)
	if !ok {
		return nil, nil
	}
	bf := a.AsBigFloat()
	i, acc := bf.Int64()
	if acc != 0 || i < 0 {
		return nil, fmt.Errorf("%s: want a non-negative whole number, got %s", name, bf.String())
	}
	n := int(i)
	return &n, nil
}

func (o obj) list(name string) []string {
	a, ok := o.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range a.AsValueSlice() {
		out = append(out, e.AsString())
	}
	return out
}

func (o obj) strMap(name string) map[string]string {
	a, ok := o.get(name)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, e := range a.AsValueMap() {
		out[k] = e.AsString()
	}
	return out
}

func oneOf(attr, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", attr, v, strings.Join(allowed, ", "))
}

// parseMode parses an octal mode such as "0644" or "755".
func parseMode(s string) (*fs.FileMode, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return nil, fmt.Errorf("mode: %q is not an octal file mode like \"0644\"", s)
	}
	m := fs.FileMode(n&0o777) | modeBits(n)
	return &m, nil
}

func modeBits(n uint64) fs.FileMode {
	var m fs.FileMode
	if n&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

const permMask = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// attrs are the mode/owner/group every path kind shares.
type attrs struct {
	mode         *fs.FileMode
	owner, group string
}

func decodeAttrs(o obj) (attrs, error) {
	m, err := parseMode(o.str("mode"))
	return attrs{mode: m, owner: o.str("owner"), group: o.str("group")}, err
}

func lookupUID(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("owner %q: %w", name, err)
	}
	return strconv.Atoi(u.Uid)
}

func lookupGID(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// check compares fi with the wanted attributes and, when apply, fixes
// them. It returns what differs, in words.
func (a attrs) check(path string, fi fs.FileInfo, apply bool) ([]string, error) {
	var diffs []string
	if a.mode != nil && fi.Mode()&permMask != *a.mode {
		diffs = append(diffs, fmt.Sprintf("mode %#o -> %#o", uint32(fi.Mode()&permMask), uint32(*a.mode)))
		if apply {
			if err := os.Chmod(path, *a.mode); err != nil {
				return nil, err
			}
		}
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	uid, gid := -1, -1
	if a.owner != "" {
		u, err := lookupUID(a.owner)
		if err != nil {
			return nil, err
		}
		if st == nil || int(st.Uid) != u {
			diffs = append(diffs, "owner -> "+a.owner)
			uid = u
		}
	}
	if a.group != "" {
		g, err := lookupGID(a.group)
		if err != nil {
			return nil, err
		}
		if st == nil || int(st.Gid) != g {
			diffs = append(diffs, "group -> "+a.group)
			gid = g
		}
	}
	if apply && (uid >= 0 || gid >= 0) {
		if err := os.Lchown(path, uid, gid); err != nil {
			return nil, err
		}
	}
	return diffs, nil
}

// run runs argv and returns its combined output; the error carries the
// exit status and the tail of the output.
func run(ctx context.Context, env []string, dir string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, tail(string(out), 400))
	}
	return string(out), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// exitCode runs argv and returns its exit status (-1 with an error when it
// could not run at all).
func exitCode(ctx context.Context, env []string, dir string, argv ...string) (int, error) {
	_, err := run(ctx, env, dir, argv...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func joinChanges(parts []string) string { return strings.Join(parts, ", ") }
