package resources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// build parses src (one resource block) and constructs its resource.
func build(t *testing.T, env converge.Env, src string) (converge.Resource, error) {
	t.Helper()
	decls, diags := converge.ParseResources("test.hcl", []byte(src))
	if diags.HasErrors() || len(decls) != 1 {
		t.Fatalf("parse: %v (%d decls)", diags, len(decls))
	}
	k, ok := Builtin().Kind(decls[0].Addr.Kind)
	if !ok {
		t.Fatalf("unknown kind %s", decls[0].Addr.Kind)
	}
	v, diags := hcldec.Decode(decls[0].Body, k.Spec, env.EvalContext)
	if diags.HasErrors() {
		t.Fatalf("decode: %s", diags.Error())
	}
	if env.Root == "" {
		env.Root = "/"
	}
	return k.New(env, v)
}

func mustBuild(t *testing.T, env converge.Env, src string) converge.Resource {
	t.Helper()
	r, err := build(t, env, src)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	return r
}

// step runs one CheckApply and checks its ok result.
func step(t *testing.T, r converge.Resource, apply, wantOK bool, what string) {
	t.Helper()
	ok, err := r.CheckApply(t.Context(), apply)
	if err != nil {
		t.Fatalf("%s: CheckApply(apply=%v): %v", what, apply, err)
	}
	if ok != wantOK {
		t.Fatalf("%s: CheckApply(apply=%v) ok = %v, want %v", what, apply, ok, wantOK)
	}
}

// timeline runs the standard sequence: noop detects the change without
// making it (untouched checks the state), apply changes, apply again is a
// no-op, break from outside, noop detects it, apply repairs it.
func timeline(t *testing.T, r converge.Resource, untouched func() bool, breakIt func()) {
	t.Helper()
	step(t, r, false, false, "noop before apply")
	if untouched != nil && !untouched() {
		t.Fatal("noop mode changed the state")
	}
	step(t, r, true, false, "first apply")
	step(t, r, true, true, "second apply (idempotent)")
	step(t, r, false, true, "noop after apply")
	if breakIt != nil {
		breakIt()
		step(t, r, false, false, "noop after breaking")
		step(t, r, true, false, "repair")
		step(t, r, true, true, "after repair")
	}
}

func localEnv(t *testing.T) converge.Env {
	root := t.TempDir()
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	return converge.Env{Root: r}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nodeEvalContext() *hcl.EvalContext {
	return &hcl.EvalContext{Variables: map[string]cty.Value{
		"node": cty.ObjectVal(map[string]cty.Value{
			"name":    cty.StringVal("web-1"),
			"address": cty.StringVal("127.0.10.1"),
		}),
		"cluster": cty.ObjectVal(map[string]cty.Value{
			"members": cty.ObjectVal(map[string]cty.Value{
				"web": cty.ListVal([]cty.Value{
					cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("web-1"), "address": cty.StringVal("127.0.10.1")}),
					cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("web-2"), "address": cty.StringVal("127.0.10.2")}),
				}),
			}),
		}),
	}}
}

var _ = strings.Contains
