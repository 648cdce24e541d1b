package resources

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hactl/hactl/lang"
)

func TestBuiltin_Kinds(t *testing.T) {
	want := []string{"directory", "exec", "file", "git", "group", "package", "service", "symlink", "template", "user"}
	if diff := cmp.Diff(want, Builtin().Kinds()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The example configurations of lang validate against these schemas.
func TestBuiltin_ValidatesLangExamples(t *testing.T) {
	const src = "../../lang/testdata/valid"
	tops, _ := filepath.Glob(filepath.Join(src, "*.hcl"))
	if len(tops) == 0 {
		t.Skip("skipping: lang/testdata/valid has no examples")
	}
	n := 0
	for _, top := range tops {
		// Each top-level file is a configuration of its own; give it the
		// shared roles/ and templates/ directories.
		dir := t.TempDir()
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		for _, other := range tops {
			if other != top {
				os.Remove(filepath.Join(dir, filepath.Base(other)))
			}
		}
		cfg, diags := lang.Load(dir, lang.LoadOptions{Schemas: Builtin()})
		if diags.HasErrors() {
			t.Errorf("%s: %s", filepath.Base(top), diags.Error())
			continue
		}
		for _, r := range cfg.Roles {
			n += len(r.Resources)
		}
	}
	if n == 0 {
		t.Error("no resources in the examples")
	}
}
