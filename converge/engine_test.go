package converge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// recorder is the shared state of the "probe" test kind: it records the
// order of CheckApply and Refresh calls and the concurrency reached.
type recorder struct {
	mu        sync.Mutex
	cond      *sync.Cond
	events    []string
	applied   map[string]bool
	cur, peak int
	started   int
	waitFor   int // probes wait until this many run at once (or all started)
	total     int
}

func newRecorder() *recorder {
	r := &recorder{applied: map[string]bool{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

func (r *recorder) add(ev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

// probe: ok unless `change`; fails when `fail`. Applying records it, so a
// second run is idempotent.
type probe struct {
	r            *recorder
	name         string
	change, fail bool
}

func (p *probe) CheckApply(ctx context.Context, apply bool) (bool, error) {
	r := p.r
	r.mu.Lock()
	r.cur++
	r.started++
	r.peak = max(r.peak, r.cur)
	r.cond.Broadcast()
	deadline := time.Now().Add(30 * time.Second)
	for r.waitFor > 0 && r.cur < r.waitFor && r.started < r.total && time.Now().Before(deadline) {
		go func() { time.Sleep(50 * time.Millisecond); r.cond.Broadcast() }()
		r.cond.Wait()
	}
	r.cur--
	r.events = append(r.events, "check "+p.name)
	done := r.applied[p.name]
	if apply && p.change && !p.fail {
		r.applied[p.name] = true
	}
	r.mu.Unlock()
	if p.fail {
		return false, errors.New("probe failure")
	}
	return !p.change || done, nil
}

func (p *probe) Refresh(ctx context.Context) error {
	p.r.add("refresh " + p.name)
	return nil
}

func (p *probe) Diff() (string, error) {
	return UnifiedDiff("a", "b", []byte("old\n"), []byte("new\n")), nil
}

func probeKind(r *recorder) Kind {
	return Kind{
		Name: "probe",
		Spec: hcldec.ObjectSpec{
			"change": &hcldec.AttrSpec{Name: "change", Type: cty.Bool},
			"fail":   &hcldec.AttrSpec{Name: "fail", Type: cty.Bool},
			"label":  &hcldec.AttrSpec{Name: "label", Type: cty.String},
		},
		New: func(env Env, v cty.Value) (Resource, error) {
			b := func(n string) bool { a := v.GetAttr(n); return !a.IsNull() && a.True() }
			name := "?"
			if l := v.GetAttr("label"); !l.IsNull() {
				name = l.AsString()
			}
			return &probe{r: r, name: name, change: b("change"), fail: b("fail")}, nil
		},
	}
}

func parse(t *testing.T, src string) []*lang.ResourceDecl {
	t.Helper()
	decls, diags := ParseResources("test.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("parse: %s", diags.Error())
	}
	return decls
}

func statuses(rep *Report) map[string]Status {
	m := map[string]Status{}
	for _, rr := range rep.Resources {
		m[rr.Addr] = rr.Status
	}
	return m
}

func TestEngine_Run_ParallelismBound(t *testing.T) {
	r := newRecorder()
	var src strings.Builder
	for i := range 6 {
		fmt.Fprintf(&src, "resource \"probe\" \"p%d\" {\n  label = \"p%d\"\n}\n", i, i)
	}
	r.waitFor, r.total = 2, 6
	e := NewEngine(NewRegistry(probeKind(r)), Env{})
	rep, err := e.Run(t.Context(), parse(t, src.String()), nil, Options{Parallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.peak != 2 {
		t.Errorf("peak concurrency = %d, want exactly the bound 2", r.peak)
	}
	if rep.Summary.Unchanged != 6 {
		t.Errorf("summary = %+v", rep.Summary)
	}
}

func TestEngine_Run_FailureSkipsOnlyDependents(t *testing.T) {
	r := newRecorder()
	src := `
resource "probe" "a" {
  fail = true
}
resource "probe" "b" {
  depends_on = [probe.a]
  change     = true
}
resource "probe" "c" {
  depends_on = [probe.b]
}
resource "probe" "d" {
  change = true
}
`
	e := NewEngine(NewRegistry(probeKind(r)), Env{})
	rep, err := e.Run(t.Context(), parse(t, src), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"probe.a": StatusFailed, "probe.b": StatusSkipped, "probe.c": StatusSkipped, "probe.d": StatusChanged}
	if diff := cmp.Diff(want, statuses(rep)); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	a := rep.Resource("probe.a")
	if !strings.Contains(a.Error, "probe.a") || !strings.Contains(a.Error, "test.hcl:2,1") || !strings.Contains(a.Error, "probe failure") {
		t.Errorf("error %q should name the resource, its range and the cause", a.Error)
	}
	if got := rep.Summary; got != (Summary{Changed: 1, Failed: 1, Skipped: 2}) {
		t.Errorf("summary = %+v", got)
	}
	if !rep.Failed() {
		t.Error("Failed() = false")
	}
}

func TestEngine_Run_Cycle(t *testing.T) {
	src := `
resource "probe" "a" {
  depends_on = [probe.c]
}
resource "probe" "b" {
  depends_on = [probe.a]
}
resource "probe" "c" {
  subscribe = [probe.b]
}
`
	e := NewEngine(NewRegistry(probeKind(newRecorder())), Env{})
	_, err := e.Run(t.Context(), parse(t, src), nil, Options{})
	if err == nil {
		t.Fatal("want a cycle error")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "dependency cycle: probe.") || !strings.Contains(err.Error(), "probe.c") || !strings.Contains(err.Error(), "test.hcl:") {
		t.Errorf("error %q should name the cycle and its ranges", err)
	}
}

func TestEngine_Run_UndeclaredReference(t *testing.T) {
	e := NewEngine(NewRegistry(probeKind(newRecorder())), Env{})
	_, err := e.Run(t.Context(), parse(t, "resource \"probe\" \"a\" {\n  depends_on = [probe.zz]\n}\n"), nil, Options{})
	if err == nil || !strings.Contains(err.Error(), "undeclared resource probe.zz") {
		t.Fatalf("err = %v", err)
	}
}

func TestEngine_Run_NotifyOnceAfterAllNotifiers(t *testing.T) {
	r := newRecorder()
	src := `
resource "probe" "n1" {
  label  = "n1"
  change = true
  notify = [probe.svc]
}
resource "probe" "n2" {
  label  = "n2"
  change = true
  notify = [probe.svc]
}
resource "probe" "n3" {
  label = "n3"
}
resource "probe" "svc" {
  label     = "svc"
  subscribe = [probe.n3]
}
`
	e := NewEngine(NewRegistry(probeKind(r)), Env{})
	rep, err := e.Run(t.Context(), parse(t, src), nil, Options{Parallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	var refreshes, svcIdx int
	for i, ev := range r.events {
		if ev == "refresh svc" {
			refreshes++
			svcIdx = i
		}
	}
	if refreshes != 1 {
		t.Fatalf("refreshes = %d, want 1 (events %v)", refreshes, r.events)
	}
	for _, n := range []string{"check n1", "check n2", "check n3"} {
		i := indexOf(r.events, n)
		if i < 0 || i > svcIdx {
			t.Errorf("%q should come before the refresh: %v", n, r.events)
		}
	}
	svc := rep.Resource("probe.svc")
	if svc.Status != StatusChanged || !strings.Contains(svc.Change, "probe.n1, probe.n2") {
		t.Errorf("svc = %+v", svc)
	}
	// Second run: nothing changes, so nothing refreshes.
	r.events = nil
	rep, err = e.Run(t.Context(), parse(t, src), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if indexOf(r.events, "refresh svc") >= 0 || rep.Summary.Changed != 0 {
		t.Errorf("idempotent run refreshed or changed: %v %+v", r.events, rep.Summary)
	}
}

func TestEngine_Run_DryRun(t *testing.T) {
	r := newRecorder()
	src := `
resource "probe" "a" {
  label  = "a"
  change = true
  notify = [probe.b]
}
resource "probe" "b" {
  label = "b"
}
`
	e := NewEngine(NewRegistry(probeKind(r)), Env{})
	rep, err := e.Run(t.Context(), parse(t, src), nil, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.applied) != 0 || indexOf(r.events, "refresh b") >= 0 {
		t.Errorf("dry run applied or refreshed: %v %v", r.applied, r.events)
	}
	a, b := rep.Resource("probe.a"), rep.Resource("probe.b")
	if a.Status != StatusWouldChange || !strings.Contains(a.Diff, "-old\n+new\n") {
		t.Errorf("a = %+v", a)
	}
	if b.Status != StatusWouldChange || !strings.Contains(b.Change, "would refresh") {
		t.Errorf("b = %+v", b)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"started", "duration_ms", "dry_run", "resources", "summary"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, buf.String())
		}
	}
	res := m["resources"].([]any)[0].(map[string]any)
	for _, k := range []string{"addr", "kind", "status", "duration_ms", "diff", "range"} {
		if _, ok := res[k]; !ok {
			t.Errorf("resource JSON lacks %q", k)
		}
	}
}

func TestEngine_Run_DecodeErrorFailsOneResource(t *testing.T) {
	src := `
resource "probe" "a" {
  change = "notabool"
}
resource "nosuch" "x" {
}
resource "probe" "b" {
}
`
	e := NewEngine(NewRegistry(probeKind(newRecorder())), Env{})
	rep, err := e.Run(t.Context(), parse(t, src), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"probe.a": StatusFailed, "nosuch.x": StatusFailed, "probe.b": StatusUnchanged}
	if diff := cmp.Diff(want, statuses(rep)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if e := rep.Resource("probe.a").Error; !strings.Contains(e, "test.hcl:3") {
		t.Errorf("error %q should point at the attribute", e)
	}
	if e := rep.Resource("nosuch.x").Error; !strings.Contains(e, "unknown resource kind") {
		t.Errorf("error %q", e)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestEnv_Path_Confinement(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.Symlink("/etc", filepath.Join(root, "abs")))        // absolute: the kernel follows it to the host's /etc
	must(os.Symlink(outside, filepath.Join(root, "escape")))    // really points outside
	must(os.Symlink("../../..", filepath.Join(root, "etc/up"))) // climbs out
	must(os.Symlink("etc", filepath.Join(root, "rel")))         // relative, inside
	must(os.WriteFile(filepath.Join(root, "etc/file"), nil, 0o644))
	env := Env{Root: root}
	rroot, _ := filepath.EvalSymlinks(root)
	for _, tc := range []struct {
		name, in, want string
		escape         bool
	}{
		{name: "plain", in: "/etc/app.conf", want: filepath.Join(rroot, "etc/app.conf")},
		{name: "root", in: "/", want: rroot},
		{name: "dotdot", in: "/../etc/passwd", escape: true},
		{name: "dotdot inside", in: "/etc/../var/x", want: filepath.Join(rroot, "var/x")},
		{name: "symlink to outside dir", in: "/escape/x", escape: true},
		{name: "relative symlink climbing out", in: "/etc/up/passwd", escape: true},
		{name: "last element not followed", in: "/escape", want: filepath.Join(rroot, "escape")},
		{name: "absolute symlink, followed as the kernel would", in: "/abs/x", escape: true},
		{name: "relative symlink inside", in: "/rel/x", want: filepath.Join(rroot, "etc/x")},
		{name: "symlink deeper", in: "/rel/sub/x", want: filepath.Join(rroot, "etc/sub/x")},
		{name: "missing parents", in: "/new/a/b", want: filepath.Join(rroot, "new/a/b")},
		{name: "parent is a file", in: "/etc/file/x", want: filepath.Join(rroot, "etc/file/x")},
		{name: "already under the root", in: rroot + "/etc/app.conf", want: filepath.Join(rroot, "etc/app.conf")},
		{name: "the root itself", in: rroot, want: rroot},
		{name: "under the root, climbing", in: rroot + "/../../../../../../../../../x", escape: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := env.Path(tc.in)
			if tc.escape {
				if !errors.Is(err, ErrEscape) {
					t.Fatalf("Path(%q) = %q, %v; want ErrEscape", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Path(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
	// On a real machine the path is only cleaned.
	if got, err := (Env{Root: "/"}).Path("/etc//x"); err != nil || got != "/etc/x" {
		t.Errorf("real Path = %q, %v", got, err)
	}
	if _, err := env.Path("relative"); err == nil {
		t.Error("relative path accepted")
	}
}

func TestUnifiedDiff(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	new := "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\nk\n"
	want := `--- a/x
+++ b/x
@@ -2,9 +2,10 @@
 b
 c
 d
-e
+E
 f
 g
 h
 i
 j
+k
`
	if diff := cmp.Diff(want, UnifiedDiff("a/x", "b/x", []byte(old), []byte(new))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := UnifiedDiff("a", "b", []byte("x"), []byte("x")); got != "" {
		t.Errorf("equal inputs: %q", got)
	}
	got := UnifiedDiff("a", "b", nil, []byte("new"))
	if !strings.Contains(got, "@@ -0,0 +1 @@\n+new\n\\ No newline at end of file\n") {
		t.Errorf("create diff: %q", got)
	}
}

var _ = hcl.Range{}

func TestRegistry_Schemas(t *testing.T) {
	reg := NewRegistry(probeKind(newRecorder()))
	var s lang.Schemas = reg
	if _, ok := s.ResourceSpec("probe"); !ok {
		t.Error("probe spec missing")
	}
	if _, ok := s.ResourceSpec("nope"); ok {
		t.Error("unknown kind has a spec")
	}
	if got := reg.Kinds(); !cmp.Equal(got, []string{"probe"}) {
		t.Errorf("Kinds = %v", got)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("kind with Flatten but no Unflatten did not panic")
			}
		}()
		k := probeKind(nil)
		k.Flatten = func(cty.Value) ([]byte, error) { return nil, nil }
		NewRegistry(k)
	}()
	defer func() {
		if recover() == nil {
			t.Error("duplicate kind did not panic")
		}
	}()
	NewRegistry(probeKind(nil), probeKind(nil))
}

func TestRangeString_MatchesHCL(t *testing.T) {
	for _, r := range []hcl.Range{
		{Filename: "web.hcl", Start: hcl.Pos{Line: 4, Column: 1}, End: hcl.Pos{Line: 4, Column: 24}},
		{Filename: "roles/a b.hcl", Start: hcl.Pos{Line: 12, Column: 3}, End: hcl.Pos{Line: 20, Column: 2}},
		{},
	} {
		if got, want := rangeString(r), r.String(); got != want {
			t.Errorf("rangeString = %q, want %q (hcl.Range.String)", got, want)
		}
	}
}
