package lang

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to LoadFiles (with resource schemas, so
// hcldec runs too) and renders the diagnostics: none of it may panic. The
// seeds are testdata/valid, testdata/errors and testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*.hcl", "testdata/valid/roles/*.hcl", "testdata/errors/*.hcl"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		files := map[string][]byte{
			"main.hcl":         src,
			"roles/web.hcl":    src,
			"templates/x.tmpl": src,
			"files/motd":       []byte("hello"),
		}
		c, diags := LoadFiles(files, LoadOptions{Schemas: testSchemas{}, Getenv: noEnv})
		if c == nil {
			t.Fatal("LoadFiles returned a nil Config")
		}
		_ = WriteDiagnostics(io.Discard, c.Files, diags, true)
		_ = DiagnosticsJSON(diags)
		if !diags.HasErrors() {
			ctx := c.EvalContext(&NodeFacts{Name: "web-1", Role: "web", Slot: 1})
			for _, r := range c.Roles {
				for _, d := range r.Resources {
					attrs, _ := d.Body.JustAttributes()
					for _, a := range attrs {
						_, _ = a.Expr.Value(ctx)
					}
				}
			}
		}
	})
}
