package converge

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// stager writes `content` to `path` (under the node root) through
// Env.WriteFile; reader records what `path` holds when it runs. Together
// they show when staged writes become visible.
type stager struct {
	env        Env
	path, want string
	fail       bool
}

func (s *stager) CheckApply(ctx context.Context, apply bool) (bool, error) {
	have, err := os.ReadFile(s.path)
	if err == nil && string(have) == s.want {
		return true, nil
	}
	if !apply {
		return false, nil
	}
	if err := s.env.WriteFile(s.path, []byte(s.want), 0o640, nil); err != nil {
		return false, err
	}
	if s.fail {
		return false, errors.New("failed after staging")
	}
	return false, nil
}

type reader struct {
	path string
	mu   *sync.Mutex
	seen map[string]string
}

func (r *reader) CheckApply(ctx context.Context, apply bool) (bool, error) {
	b, err := os.ReadFile(r.path)
	if err != nil {
		b = []byte("<" + err.Error() + ">")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[filepath.Base(r.path)] = string(b)
	return true, nil
}

func writeKinds(mu *sync.Mutex, seen map[string]string) *Registry {
	path := func(env Env, v cty.Value) string {
		p, _ := env.Path(v.GetAttr("path").AsString())
		return p
	}
	return NewRegistry(
		Kind{
			Name: "stager",
			Spec: hcldec.ObjectSpec{
				"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
				"content": &hcldec.AttrSpec{Name: "content", Type: cty.String, Required: true},
				"fail":    &hcldec.AttrSpec{Name: "fail", Type: cty.Bool},
			},
			New: func(env Env, v cty.Value) (Resource, error) {
				f := v.GetAttr("fail")
				return &stager{env: env, path: path(env, v), want: v.GetAttr("content").AsString(), fail: !f.IsNull() && f.True()}, nil
			},
		},
		Kind{
			Name: "reader",
			Spec: hcldec.ObjectSpec{"path": &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true}},
			New: func(env Env, v cty.Value) (Resource, error) {
				return &reader{path: path(env, v), mu: mu, seen: seen}, nil
			},
		},
	)
}

// temps lists the temporary files left under root.
func temps(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".hactl-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func TestEngine_Run_StagedWritesVisibleToDependents(t *testing.T) {
	root := t.TempDir()
	var mu sync.Mutex
	seen := map[string]string{}
	src := `
resource "stager" "a" {
  path    = "/etc/a.conf"
  content = "new a"
}
resource "stager" "b" {
  path    = "/etc/b.conf"
  content = "new b"
}
resource "reader" "a" {
  path       = "/etc/a.conf"
  depends_on = [stager.a]
}
resource "reader" "b" {
  path       = "/etc/b.conf"
  depends_on = [stager.b]
}
resource "stager" "late" {
  path       = "/etc/late.conf"
  content    = "late"
  depends_on = [reader.a]
}
`
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/a.conf"), []byte("old a"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(writeKinds(&mu, seen), Env{Root: root})
	rep, err := e.Run(t.Context(), parse(t, src), nil, Options{Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"stager.a": StatusChanged, "stager.b": StatusChanged, "reader.a": StatusUnchanged, "reader.b": StatusUnchanged, "stager.late": StatusChanged}
	if d := cmp.Diff(want, statuses(rep)); d != "" {
		t.Errorf("statuses (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"a.conf": "new a", "b.conf": "new b"}, seen); d != "" {
		t.Errorf("dependents saw (-want +got):\n%s", d)
	}
	for name, content := range map[string]string{"a.conf": "new a", "b.conf": "new b", "late.conf": "late"} {
		p := filepath.Join(root, "etc", name)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != content {
			t.Errorf("%s = %q, %v; want %q", name, b, err, content)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode = %v, %v; want 0640", name, fi.Mode(), err)
		}
	}
	if left := temps(t, root); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	rep, err = e.Run(t.Context(), parse(t, src), nil, Options{Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Unchanged != 5 {
		t.Errorf("second run summary = %+v, want all 5 unchanged", rep.Summary)
	}
}

func TestEngine_Run_StagedWritesOfFailedResourceDropped(t *testing.T) {
	root := t.TempDir()
	var mu sync.Mutex
	seen := map[string]string{}
	src := `
resource "stager" "bad" {
  path    = "/a.conf"
  content = "new"
  fail    = true
}
resource "stager" "good" {
  path    = "/b.conf"
  content = "new"
}
`
	if err := os.WriteFile(filepath.Join(root, "a.conf"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := NewEngine(writeKinds(&mu, seen), Env{Root: root}).Run(t.Context(), parse(t, src), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]Status{"stager.bad": StatusFailed, "stager.good": StatusChanged}, statuses(rep)); d != "" {
		t.Errorf("statuses (-want +got):\n%s", d)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a.conf")); string(b) != "old" {
		t.Errorf("a.conf = %q after its resource failed, want the old content", b)
	}
	if left := temps(t, root); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestCommitWrites_Order(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(p(n), []byte("old "+n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// c cannot be renamed over: it is a non-empty directory.
	if err := os.MkdirAll(p("c/x"), 0o755); err != nil {
		t.Fatal(err)
	}
	w1, w2 := &Writes{}, &Writes{}
	env1, env2 := Env{Writes: w1}, Env{Writes: w2}
	for _, s := range []struct {
		env  Env
		name string
	}{{env1, "a"}, {env1, "b"}, {env2, "c"}, {env2, "d"}} {
		if err := s.env.WriteFile(p(s.name), []byte("new "+s.name), 0o600, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Staged: nothing visible yet, every temporary file whole.
	for _, n := range []string{"a", "b"} {
		if b, _ := os.ReadFile(p(n)); string(b) != "old "+n {
			t.Errorf("%s = %q before the commit, want the old content", n, b)
		}
	}
	if _, err := os.Stat(p("d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d exists before the commit: %v", err)
	}
	for _, w := range []*Writes{w1, w2} {
		for _, s := range w.staged {
			if b, err := os.ReadFile(s.tmp); err != nil || string(b) != "new "+filepath.Base(s.path) {
				t.Errorf("staged %s = %q, %v", s.tmp, b, err)
			}
		}
	}
	errs := commitWrites([]*Writes{w1, w2})
	if errs[0] != nil {
		t.Errorf("first batch: %v", errs[0])
	}
	if errs[1] == nil {
		t.Errorf("second batch committed a rename over a non-empty directory")
	}
	// The failed rename fails its own Writes only, and stops it: d, staged
	// after c by the same resource, is not made (a backup staged before
	// its file must never be skipped while the file is replaced).
	for n, want := range map[string]string{"a": "new a", "b": "new b"} {
		if b, err := os.ReadFile(p(n)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", n, b, err, want)
		}
	}
	if _, err := os.Stat(p("d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d was renamed into place after c, staged before it, failed: %v", err)
	}
	if left := temps(t, dir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if w1.Len()+w2.Len() != 0 {
		t.Errorf("writes still staged after the commit")
	}
}

func TestEnv_WriteFile_OutsideRun(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "f")
	if err := (Env{}).WriteFile(p, []byte("x"), 0o750|os.ModeSetuid, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModePerm|os.ModeSetuid) != 0o750|os.ModeSetuid {
		t.Errorf("mode = %v, want setuid 0750", fi.Mode())
	}
	if left := temps(t, filepath.Dir(p)); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
