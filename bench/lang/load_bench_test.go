// Package lang_test measures how long loading and validating a
// configuration takes (the cost of every `hactl validate`, plan and agent
// converge run). Run: go test -run '^$' -bench . -benchmem ./bench/lang/
package lang_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hactl/hactl/lang"
)

func readTree(b *testing.B, dir string, names ...string) map[string][]byte {
	b.Helper()
	files := map[string][]byte{}
	for _, n := range names {
		p := filepath.Join(dir, n)
		src, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		files[p] = src
	}
	return files
}

// BenchmarkLoadFiles_Blog loads the 8-node blog cluster (4 roles, 11
// resources, a role source) from memory: parse, decode, validate.
func BenchmarkLoadFiles_Blog(b *testing.B) {
	dir := "../../lang/testdata/valid"
	files := readTree(b, dir, "blog.hcl", "roles/repo.hcl", "templates/index.html.tmpl")
	opts := lang.LoadOptions{Dir: dir, Getenv: func(string) string { return "" }}
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := lang.LoadFiles(files, opts); diags.HasErrors() {
			b.Fatal(diags.Error())
		}
	}
}

// BenchmarkEvalContext_Attribute builds a node's EvalContext and evaluates
// one resource attribute with it (the template resource's vars object), as
// converge does for every resource on every run.
func BenchmarkEvalContext_Attribute(b *testing.B) {
	dir := "../../lang/testdata/valid"
	files := readTree(b, dir, "blog.hcl", "roles/repo.hcl", "templates/index.html.tmpl")
	cfg, diags := lang.LoadFiles(files, lang.LoadOptions{Dir: dir, Getenv: func(string) string { return "" }})
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	facts := &lang.NodeFacts{Name: "web-1", Role: "web", Slot: 1, Address: "127.0.0.11", Dir: "/",
		Members: map[string][]lang.Member{"web": {{Name: "web-1", Address: "127.0.0.11", Slot: 1}, {Name: "web-2", Address: "127.0.0.12", Slot: 2}}}}
	body := cfg.Role("web").Resources[1].Body
	b.ReportAllocs()
	for b.Loop() {
		attrs, _ := body.JustAttributes()
		if _, d := attrs["vars"].Expr.Value(cfg.EvalContext(facts)); d.HasErrors() {
			b.Fatal(d.Error())
		}
	}
}
