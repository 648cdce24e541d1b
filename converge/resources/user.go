package resources

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func validAccount(name string) error {
	if name == "" || len(name) > 32 || strings.HasPrefix(name, "-") || strings.ContainsAny(name, " \t:/,\n") {
		return fmt.Errorf("name: %q is not a valid user or group name", name)
	}
	return nil
}

func userKind() converge.Kind {
	return converge.Kind{
		Name: "user",
		Spec: hcldec.ObjectSpec{
			"name":   reqStr("name"),
			"uid":    optNum("uid"),
			"group":  optStr("group"),
			"groups": optList("groups"),
			"home":   optStr("home"),
			"shell":  optStr("shell"),
			"system": optBool("system"),
			"ensure": strDefault("ensure", "present"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			ensure := o.str("ensure")
			if err := oneOf("ensure", ensure, "present", "absent"); err != nil {
				return nil, err
			}
			if err := validAccount(o.str("name")); err != nil {
				return nil, err
			}
			uid, err := o.intp("uid")
			if err != nil {
				return nil, err
			}
			groups := o.list("groups")
			slices.Sort(groups)
			return &User{env: env, name: o.str("name"), uid: uid, group: o.str("group"), groups: groups,
				hasGroups: o.has("groups"), home: o.str("home"), shell: o.str("shell"),
				system: o.boolean("system"), absent: ensure == "absent"}, nil
		},
	}
}

// User is a local account, managed with useradd/usermod/userdel. Like
// package, it only checks on local nodes, whose accounts are the host's.
type User struct {
	env         converge.Env
	name        string
	uid         *int
	group       string
	groups      []string
	hasGroups   bool
	home, shell string
	system      bool
	absent      bool
	change      string
}

var _ converge.Changer = (*User)(nil)

// Change implements converge.Changer.
func (u *User) Change() string { return u.change }

type passwdEntry struct {
	uid, gid    int
	home, shell string
}

// getent returns the database entry fields for key, or nil when absent.
func getent(ctx context.Context, db, key string) ([]string, error) {
	out, err := run(ctx, nil, "", "getent", db, key)
	if err != nil {
		if code, _ := exitCode(ctx, nil, "", "getent", db, key); code == 2 {
			return nil, nil
		}
		return nil, err
	}
	return strings.Split(strings.TrimSpace(out), ":"), nil
}

// CheckApply implements converge.Resource.
func (u *User) CheckApply(ctx context.Context, apply bool) (bool, error) {
	f, err := getent(ctx, "passwd", u.name)
	if err != nil {
		return false, err
	}
	var args []string // usermod/useradd options that differ
	switch {
	case u.absent && f == nil:
		return true, nil
	case u.absent:
		u.change = "delete"
	case f == nil:
		u.change = "create"
		args = u.addArgs()
	default:
		if len(f) < 7 {
			return false, fmt.Errorf("user %s: malformed passwd entry", u.name)
		}
		var diffs []string
		if u.uid != nil && f[2] != strconv.Itoa(*u.uid) {
			diffs = append(diffs, "uid "+f[2]+" -> "+strconv.Itoa(*u.uid))
			args = append(args, "-u", strconv.Itoa(*u.uid))
		}
		if u.group != "" {
			gid, err := lookupGID(u.group)
			if err != nil {
				return false, err
			}
			if f[3] != strconv.Itoa(gid) {
				diffs = append(diffs, "group -> "+u.group)
				args = append(args, "-g", u.group)
			}
		}
		if u.home != "" && f[5] != u.home {
			diffs = append(diffs, "home "+f[5]+" -> "+u.home)
			args = append(args, "-d", u.home)
		}
		if u.shell != "" && f[6] != u.shell {
			diffs = append(diffs, "shell "+f[6]+" -> "+u.shell)
			args = append(args, "-s", u.shell)
		}
		if u.hasGroups {
			have, err := u.supplementary(ctx, f[3])
			if err != nil {
				return false, err
			}
			if !slices.Equal(have, u.groups) {
				diffs = append(diffs, fmt.Sprintf("groups %v -> %v", have, u.groups))
				args = append(args, "-G", strings.Join(u.groups, ","))
			}
		}
		if len(diffs) == 0 {
			return true, nil
		}
		u.change = joinChanges(diffs)
	}
	if u.env.Local() {
		return false, fmt.Errorf("user %s needs to %s, but local nodes share the host's accounts and hactl does not change them", u.name, u.change)
	}
	if !apply {
		return false, nil
	}
	if os.Geteuid() != 0 {
		return false, errors.New("managing users needs root")
	}
	switch {
	case u.absent:
		_, err = run(ctx, nil, "", "userdel", u.name)
	case f == nil:
		_, err = run(ctx, nil, "", append(append([]string{"useradd"}, args...), u.name)...)
	default:
		_, err = run(ctx, nil, "", append(append([]string{"usermod"}, args...), u.name)...)
	}
	return false, err
}

func (u *User) addArgs() []string {
	var a []string
	if u.uid != nil {
		a = append(a, "-u", strconv.Itoa(*u.uid))
	}
	if u.group != "" {
		a = append(a, "-g", u.group)
	}
	if u.hasGroups && len(u.groups) > 0 {
		a = append(a, "-G", strings.Join(u.groups, ","))
	}
	if u.home != "" {
		a = append(a, "-d", u.home)
	}
	if u.shell != "" {
		a = append(a, "-s", u.shell)
	}
	if u.system {
		a = append(a, "-r")
	}
	return a
}

// supplementary lists the groups u belongs to besides its primary one.
func (u *User) supplementary(ctx context.Context, primaryGID string) ([]string, error) {
	out, err := run(ctx, nil, "", "id", "-Gn", u.name)
	if err != nil {
		return nil, err
	}
	primary := ""
	if f, _ := getent(ctx, "group", primaryGID); len(f) > 0 {
		primary = f[0]
	}
	var gs []string
	for _, g := range strings.Fields(out) {
		if g != primary {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	if gs == nil {
		gs = []string{}
	}
	return gs, nil
}
