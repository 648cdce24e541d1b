package resources

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// renderSimple must give exactly what the full HCL evaluation gives, or
// decline.
func TestRenderSimple_MatchesFullEvaluation(t *testing.T) {
	vars := map[string]cty.Value{
		"name":  cty.StringVal("svc-1"),
		"port":  compactNumber(cty.NumberIntVal(8080)),
		"big":   cty.MustParseNumberVal("123456789012345678901234567890"),
		"half":  cty.NumberFloatVal(1.5),
		"neg":   cty.NumberIntVal(-7),
		"on":    cty.True,
		"empty": cty.StringVal(""),
		"nul":   cty.NullVal(cty.String),
		"unk":   cty.UnknownVal(cty.String),
		"obj":   cty.ObjectVal(map[string]cty.Value{"a": cty.StringVal("x")}),
		"list":  cty.ListVal([]cty.Value{cty.StringVal("a")}),
		"sec":   cty.StringVal("s").Mark("sensitive"),
	}
	cases := []struct {
		tpl    string
		simple bool // whether the fast path is expected to take it
	}{
		{"", true},
		{"plain text\n", true},
		{"name = ${name}\nport = ${port}\n", true},
		{"${name}:${port} on=${on} e=[${empty}] n=${neg}", true},
		{"unicode é ${name} 日本", true},
		{"big ${big}", false},
		{"half ${half}", false},
		{"${name}", false}, // a lone interpolation is a TemplateWrapExpr
		{"a ${obj.a} b", false},
		{"a ${port + 1} b", false},
		{"a %{ if on }yes%{ endif } b", false},
		{"a ${missing} b", false},
		{"a ${nul} b", false},
		{"a ${unk} b", false},
		{"a ${list} b", false},
		{"a ${sec} b", false},
		{"a ${upper(name)} b", false},
	}
	for _, c := range cases {
		expr, diags := hclsyntax.ParseTemplate([]byte(c.tpl), "t.tpl", hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			t.Fatalf("%q: %s", c.tpl, diags.Error())
		}
		got, ok := renderSimple(expr, vars)
		if ok != c.simple {
			t.Errorf("%q: fast path taken = %v, want %v", c.tpl, ok, c.simple)
		}
		if !ok {
			continue
		}
		val, diags := expr.Value(&hcl.EvalContext{Variables: vars})
		if diags.HasErrors() {
			t.Fatalf("%q: full evaluation: %s", c.tpl, diags.Error())
		}
		s, err := convert.Convert(val, cty.String)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != s.AsString() {
			t.Errorf("%q: fast path %q, full evaluation %q", c.tpl, got, s.AsString())
		}
	}
}

func TestReadCompare_SizeChangedSinceLstat(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	cases := []struct {
		content string
		size    int64 // what an earlier Lstat saw
		want    string
		same    bool
	}{
		{"abc", 3, "abc", true},
		{"abc", 3, "abd", false},
		{"", 0, "", true},
		{"", 0, "x", false},
		{"abcdef", 3, "abc", false}, // grew after the Lstat
		{"abcdef", 3, "abcdef", true},
		{"ab", 3, "ab", true}, // shrank after the Lstat
		{"ab", 3, "abc", false},
	}
	for _, c := range cases {
		if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		old, same, err := readCompare(p, c.size, []byte(c.want), true)
		if err != nil {
			t.Fatal(err)
		}
		if string(old) != c.content || same != c.same {
			t.Errorf("%q (Lstat size %d) vs %q: got %q, same=%v; want the content and same=%v", c.content, c.size, c.want, old, same, c.same)
		}
	}
	if _, _, err := readCompare(filepath.Join(p, "missing"), 0, nil, true); err == nil {
		t.Error("no error for a missing file")
	}
}
