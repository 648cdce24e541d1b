package resources

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// TestTemplate_Flat_SameAsNew: a template resource built from its flat form
// (a cached compilation) is the one New builds from the value: the same
// fields, the same rendered content (on the fast path and off it, where the
// vars' types matter), the same errors; values New refuses have no flat form.
func TestTemplate_Flat_SameAsNew(t *testing.T) {
	env := localEnv(t)
	env.EvalContext = nodeEvalContext()
	env.Memo = &converge.Memo{}
	dir := t.TempDir()
	tpl := func(name, body string) string {
		p := filepath.Join(dir, name)
		write(t, p, body)
		return p
	}
	simple := tpl("simple.tpl", "name = ${name}\nport = ${port}\non = ${on}\n")
	full := tpl("full.tpl", "%{ if on }on%{ endif } ${port + 1} ${port == 8000} ${name == \"8000\"} ${upper} ${node.name}\n%{ for x in list }[${x}]%{ endfor }\n")
	missing := tpl("missing.tpl", "${nosuch}\n")
	cases := []struct{ name, body string }{
		{"simple", `path = "/etc/a.conf"
  source = "` + simple + `"
  vars = { name = "svc", port = 8000, on = true }`},
		{"simple, attributes", `path = "/etc/b.conf"
  source = "` + simple + `"
  mode = "4750"
  owner = "root"
  group = "0"
  vars = { name = "svc", port = 8000, on = false }`},
		{"number as string", `path = "/etc/c.conf"
  source = "` + full + `"
  vars = { name = "8000", port = 8000, on = true, upper = "X", list = [1, "two", true] }`},
		{"fractional and huge numbers", `path = "/etc/d.conf"
  source = "` + simple + `"
  vars = { name = 0.5, port = 123456789012345678901234567890, on = "yes" }`},
		{"no vars", `path = "/etc/e.conf"
  source = "` + simple + `"`},
		{"missing var", `path = "/etc/f.conf"
  source = "` + missing + `"
  vars = {}`},
		{"content", `path = "/etc/g.conf"
  content = "hello ${node.name}\n"
  vars = { x = 1 }`},
		{"relative source", `path = "/etc/h.conf"
  source = "simple.tpl"`},
		{"absent", `path = "/etc/i.conf"
  ensure = "absent"`},
		{"bad mode", `path = "/etc/k.conf"
  source = "` + simple + `"
  mode = "999"`},
		{"bad ensure", `path = "/etc/l.conf"
  source = "` + simple + `"
  ensure = "maybe"`},
		{"both source and content", `path = "/etc/m.conf"
  source = "` + simple + `"
  content = "x"`},
		{"neither", `path = "/etc/n.conf"`},
		{"vars not an object", `path = "/etc/o.conf"
  source = "` + simple + `"
  vars = "x"`},
		{"relative path", `path = "etc/p.conf"
  source = "` + simple + `"`},
	}
	k, _ := Builtin().Kind("template")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf("resource \"template\" \"x\" {\n  %s\n}\n", tc.body)
			decls, diags := converge.ParseResources("test.hcl", []byte(src))
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			v, diags := hcldec.Decode(decls[0].Body, k.Spec, env.EvalContext)
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			env := env
			env.ConfigDir = dir
			want, wantErr := k.New(env, v)
			flat, flatErr := k.Flatten(v)
			if flatErr != nil {
				if wantErr == nil {
					t.Fatalf("no flat form (%v) for a value New accepts", flatErr)
				}
				return
			}
			got, gotErr := k.Unflatten(env, flat)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("Unflatten error %v, New error %v", gotErr, wantErr)
			}
			if wantErr != nil {
				return
			}
			wf, gf := want.(*File), got.(*File)
			if wf.decl != gf.decl || wf.path != gf.path || wf.absent != gf.absent || !reflect.DeepEqual(wf.attrs, gf.attrs) || (wf.want == nil) != (gf.want == nil) {
				t.Fatalf("built %+v, New built %+v", gf, wf)
			}
			if wf.want == nil {
				return
			}
			wb, werr := wf.want()
			gb, gerr := gf.want()
			if string(gb) != string(wb) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
				t.Fatalf("renders %q, %v; New's renders %q, %v", gb, gerr, wb, werr)
			}
			if strings.Contains(tc.name, "number as string") && !strings.Contains(string(wb), "8001 true true") {
				t.Fatalf("off the fast path the types were lost: %q", wb)
			}
		})
	}
	// A damaged flat form is refused, not misread.
	v := decodeTemplate(t, env, k, `path = "/etc/z"
  source = "`+simple+`"
  vars = { name = "a" }`)
	flat, err := k.Flatten(v)
	if err != nil {
		t.Fatal(err)
	}
	for i := range flat {
		if _, err := k.Unflatten(env, flat[:i]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", i, len(flat))
		}
	}
	if _, err := k.Unflatten(env, append(append([]byte{}, flat...), 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
}

func decodeTemplate(t *testing.T, env converge.Env, k converge.Kind, body string) cty.Value {
	t.Helper()
	decls, diags := converge.ParseResources("test.hcl", []byte("resource \"template\" \"x\" {\n  "+body+"\n}\n"))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	v, diags := hcldec.Decode(decls[0].Body, k.Spec, env.EvalContext)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return v
}
