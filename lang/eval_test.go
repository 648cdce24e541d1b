package lang

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// testSchemas knows two resource kinds.
type testSchemas struct{}

func (testSchemas) ResourceSpec(kind string) (hcldec.Spec, bool) {
	switch kind {
	case "file":
		return hcldec.ObjectSpec{
			"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
			"content": &hcldec.AttrSpec{Name: "content", Type: cty.String},
		}, true
	case "service":
		return hcldec.ObjectSpec{
			"name": &hcldec.AttrSpec{Name: "name", Type: cty.String, Required: true},
		}, true
	}
	return nil, false
}

func (testSchemas) Kinds() []string { return []string{"file", "service"} }

const schemaConfig = `cluster "c" {}

role "web" {
  resource "file" "ok" {
    path    = "${node.dir}/etc/motd"
    content = "hello ${node.name} in ${cluster.name}"
  }

  resource "file" "bad" {
    path   = "/etc/x"
    colour = "red"
  }

  resource "file" "typed" {
    path = ["a", "b"]
  }

  resource "pkg" "nginx" {
    name = "nginx"
  }
}
`

func TestLoadFiles_Schemas_UnknownAttribute(t *testing.T) {
	_, diags := LoadFiles(map[string][]byte{"main.hcl": []byte(schemaConfig)}, LoadOptions{Schemas: testSchemas{}, Getenv: noEnv})
	type got struct {
		Summary string
		Range   string
	}
	var gotDiags []got
	for _, d := range diags {
		gotDiags = append(gotDiags, got{d.Summary, d.Subject.String()})
		if d.Summary == "Unknown resource kind" && !strings.Contains(d.Detail, "file, service") {
			t.Errorf("unknown kind detail does not list the known kinds: %q", d.Detail)
		}
	}
	want := []got{
		{"Unsupported argument", "main.hcl:11,5-11"},
		{"Incorrect attribute value type", "main.hcl:15,12-22"},
		{"Unknown resource kind", "main.hcl:18,12-17"},
	}
	if diff := cmp.Diff(want, gotDiags); diff != "" {
		t.Errorf("diagnostics (-want +got):\n%s", diff)
	}
}

func TestLoadFiles_Variables_Sources(t *testing.T) {
	src := `
variable "name" {
  type = string
}
variable "count" {
  type    = number
  default = 1
}
variable "tags" {
  type    = list(string)
  default = []
}
locals {
  greeting = "hi ${var.name}"
  twice    = local.n * 2
  n        = var.count
}
cluster "c" {}
role "web" { count = local.twice }
`
	env := map[string]string{"HACTL_VAR_name": "from-env", "HACTL_VAR_count": "5"}
	tests := []struct {
		name     string
		vars     map[string]string
		wantName string
		wantCnt  int
		wantTags int
	}{
		{"env", nil, "from-env", 10, 0},
		{"flags win over env", map[string]string{"name": "flag", "count": "2", "tags": `["a", "b"]`}, "flag", 4, 2},
		{"string not parsed", map[string]string{"name": "1+1"}, "1+1", 10, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, diags := LoadFiles(map[string][]byte{"m.hcl": []byte(src)},
				LoadOptions{Variables: tc.vars, Getenv: func(k string) string { return env[k] }})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if got := c.Variables["name"].AsString(); got != tc.wantName {
				t.Errorf("var.name = %q, want %q", got, tc.wantName)
			}
			if got := c.Role("web").Count; got != tc.wantCnt {
				t.Errorf("count = %d, want %d", got, tc.wantCnt)
			}
			if got := c.Variables["tags"].LengthInt(); got != tc.wantTags {
				t.Errorf("len(tags) = %d, want %d", got, tc.wantTags)
			}
			if got := c.Locals["greeting"].AsString(); got != "hi "+tc.wantName {
				t.Errorf("local.greeting = %q", got)
			}
		})
	}
	_, diags := LoadFiles(map[string][]byte{"m.hcl": []byte(src)},
		LoadOptions{Variables: map[string]string{"name": "x", "nope": "1"}, Getenv: noEnv})
	if errs := diags.Errs(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "Value for undeclared variable") {
		t.Errorf("undeclared -var: got %v", diags)
	}
}

// evalString evaluates one expression in ctx.
func evalString(t *testing.T, ctx *hcl.EvalContext, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "expr.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", src, diags.Error())
	}
	return expr.Value(ctx)
}

func testConfig(t *testing.T) *Config {
	t.Helper()
	files := map[string][]byte{
		"cfg/main.hcl": []byte(`
cluster "blog" {}
variable "domain" { default = "example.org" }
locals { port = 8080 }
role "web" { count = 2 }
role "lb" { count = 2 }
`),
		"cfg/templates/page.tmpl":    []byte("Hello ${name} on ${upper(domain)}%{ for b in backends } ${b}%{ endfor }"),
		"cfg/templates/outer.tmpl":   []byte(`[${templatefile("templates/inner.tmpl", { x = x })}]`),
		"cfg/templates/inner.tmpl":   []byte(`inner ${x}`),
		"cfg/templates/loop.tmpl":    []byte(`${templatefile("templates/loop.tmpl", {})}`),
		"cfg/templates/missing.tmpl": []byte(`${nothere}`),
		"cfg/files/motd":             []byte("welcome\n"),
		"roles/shared.txt":           []byte("shared"),
		"secret.txt":                 []byte("secret"),
	}
	c, diags := loadMem(files, "cfg")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return c
}

// loadMem loads an in-memory tree as if dir were the configuration
// directory, without reading the disk.
func loadMem(files map[string][]byte, dir string) (*Config, hcl.Diagnostics) {
	c, diags := LoadFiles(files, LoadOptions{Dir: dir, Getenv: func(k string) string {
		if k == "HOME" {
			return "/home/op"
		}
		return ""
	}})
	return c, diags
}

func TestConfig_EvalContext_Functions(t *testing.T) {
	c := testConfig(t)
	c.src.disk = false // never touch the disk in this test
	ctx := c.EvalContext(&NodeFacts{Name: "web-1", Role: "web", Slot: 1, Address: "10.0.0.11", Dir: "/", OSFamily: "debian",
		Members: map[string][]Member{"web": {{Name: "web-2", Address: "10.0.0.12", Slot: 2}, {Name: "web-1", Address: "10.0.0.11", Slot: 1}}}})
	tests := []struct {
		expr    string
		want    cty.Value
		wantErr string
	}{
		{`upper("a")`, cty.StringVal("A"), ""},
		{`lower("A")`, cty.StringVal("a"), ""},
		{`trimspace("  x ")`, cty.StringVal("x"), ""},
		{`join(",", split(" ", "a b c"))`, cty.StringVal("a,b,c"), ""},
		{`replace("a-b", "-", "_")`, cty.StringVal("a_b"), ""},
		{`length(concat([1], [2, 3]))`, cty.NumberIntVal(3), ""},
		{`keys(merge({a = 1}, {b = 2}))`, cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.StringVal("b")}), ""},
		{`contains(["a"], "a")`, cty.True, ""},
		{`jsonencode({a = 1})`, cty.StringVal(`{"a":1}`), ""},
		{`jsondecode("[1]")[0]`, cty.NumberIntVal(1), ""},
		{`max(1, 5, 3) + min(2, 4) + abs(-1)`, cty.NumberIntVal(8), ""},
		{`coalesce(null, "x")`, cty.StringVal("x"), ""},
		{`length(range(3))`, cty.NumberIntVal(3), ""},
		{`tostring(5)`, cty.StringVal("5"), ""},
		{`tonumber("5")`, cty.NumberIntVal(5), ""},
		{`format("%s:%d", "h", 80)`, cty.StringVal("h:80"), ""},
		{`lookup({a = "x"}, "b", "d")`, cty.StringVal("d"), ""},
		{`cidrhost("10.1.0.0/16", 5)`, cty.StringVal("10.1.0.5"), ""},
		{`cidrhost("10.1.2.0/24", -2)`, cty.StringVal("10.1.2.254"), ""},
		{`cidrhost("fd00::/64", 17)`, cty.StringVal("fd00::11"), ""},
		{`cidrhost("10.1.2.0/30", 4)`, cty.NilVal, "has no host number 4"},
		{`env("HOME")`, cty.StringVal("/home/op"), ""},
		{`file("files/motd")`, cty.StringVal("welcome\n"), ""},
		{`file("../roles/shared.txt")`, cty.StringVal("shared"), ""},
		{`file("../secret.txt")`, cty.NilVal, "outside the configuration directory"},
		{`file("/etc/passwd")`, cty.NilVal, "absolute paths are not allowed"},
		{`file("../../../../etc/shadow")`, cty.NilVal, "outside the configuration directory"},
		{`templatefile("templates/page.tmpl", { name = node.name, domain = var.domain, backends = [for m in cluster.members.web : m.address] })`,
			cty.StringVal("Hello web-1 on EXAMPLE.ORG 10.0.0.11 10.0.0.12"), ""},
		{`templatefile("templates/outer.tmpl", { x = 1 })`, cty.StringVal("[inner 1]"), ""},
		{`templatefile("templates/loop.tmpl", {})`, cty.NilVal, "nested more than"},
		{`templatefile("templates/missing.tmpl", {})`, cty.NilVal, "not in vars"},
		{`templatefile("../secret.txt", {})`, cty.NilVal, "outside the configuration directory"},
		{`base64decode(base64encode("x"))`, cty.StringVal("x"), ""},
		{`startswith(node.name, "web")`, cty.True, ""},
		{`"${node.name}:${node.slot}:${node.os_family}:${cluster.name}:${local.port}"`, cty.StringVal("web-1:1:debian:blog:8080"), ""},
		{`length(cluster.members.lb)`, cty.NumberIntVal(0), ""},
		{`cluster.members.web[0].name`, cty.StringVal("web-1"), ""},
		{`try(node.nope, "fallback")`, cty.StringVal("fallback"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			v, diags := evalString(t, ctx, tc.expr)
			if tc.wantErr != "" {
				if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.wantErr) {
					t.Fatalf("got %#v, %v; want an error containing %q", v, diags, tc.wantErr)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			if !v.RawEquals(tc.want) {
				t.Errorf("got %#v, want %#v", v, tc.want)
			}
		})
	}
}

func TestConfig_EvalContext_NilFacts(t *testing.T) {
	c := testConfig(t)
	ctx := c.EvalContext(nil)
	v, diags := evalString(t, ctx, `"${node.name}-${cluster.name}"`)
	if diags.HasErrors() || v.IsKnown() {
		t.Errorf("node.name without facts: got %#v, %v; want an unknown string", v, diags)
	}
	_, diags = evalString(t, ctx, `node.nmae`)
	if !diags.HasErrors() {
		t.Error("a misspelt node attribute must fail even without facts")
	}
}

func TestLoad_Disk_SymlinkEscape(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(root, "cfg")
	secret := filepath.Join(root, "secret.txt")
	for p, s := range map[string]string{
		filepath.Join(cfg, "main.hcl"):      "cluster \"c\" {}\nrole \"web\" { source = \"roles/web.hcl\" }\nlocals { motd = file(\"motd\") }\n",
		filepath.Join(cfg, "roles/web.hcl"): "role \"web\" { count = 2 }\n",
		filepath.Join(root, "roles/x.hcl"):  "role \"x\" {}\n",
		secret:                              "secret",
		filepath.Join(cfg, "motd"):          "hello",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, diags := Load(cfg, LoadOptions{Getenv: noEnv})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if c.Role("web").Count != 2 || c.Locals["motd"].AsString() != "hello" {
		t.Errorf("role source or file() not read: count %d, motd %#v", c.Role("web").Count, c.Locals["motd"])
	}
	if err := os.Symlink(secret, filepath.Join(cfg, "leak")); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
	ctx := c.EvalContext(nil)
	if _, diags := evalString(t, ctx, `file("leak")`); !diags.HasErrors() || !strings.Contains(diags.Error(), "symbolic link") {
		t.Errorf("file() followed a symlink out of the configuration: %v", diags)
	}
	if _, diags := evalString(t, ctx, `file("../roles/x.hcl")`); diags.HasErrors() {
		t.Errorf("file() of the roles/ directory next to the configuration: %v", diags)
	}
}

func TestLoad_MissingDir(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "nope"), LoadOptions{})
	if !diags.HasErrors() || diags[0].Summary != "Cannot read configuration directory" {
		t.Errorf("got %v", diags)
	}
	_, diags = Load(t.TempDir(), LoadOptions{})
	if !diags.HasErrors() || diags[0].Summary != "No configuration files" {
		t.Errorf("got %v", diags)
	}
	_, diags = LoadFiles(map[string][]byte{"a.hcl": []byte(`role "web" {}`)}, LoadOptions{})
	if !diags.HasErrors() || diags[0].Summary != "Missing cluster block" {
		t.Errorf("got %v", diags)
	}
}

func TestLoad_Disk_SymlinkInsideGitTree(t *testing.T) {
	top := t.TempDir()
	outside := t.TempDir()
	for p, s := range map[string]string{
		filepath.Join(top, "examples/blog/main.hcl"): "cluster \"c\" {}\nrole \"web\" { source = \"roles/web.hcl\" }\nrole \"bad\" { source = \"roles/evil.hcl\" }\n",
		filepath.Join(top, "roles/web.hcl"):          "role \"web\" { count = 2 }\n",
		filepath.Join(outside, "evil.hcl"):           "role \"evil\" {}\n",
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(top, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../roles", filepath.Join(top, "examples/blog/roles")); err != nil {
		t.Skipf("cannot create symlinks here: %v", err)
	}
	if err := os.Symlink(filepath.Join(outside, "evil.hcl"), filepath.Join(top, "roles/evil.hcl")); err != nil {
		t.Fatal(err)
	}
	c, diags := Load(filepath.Join(top, "examples/blog"), LoadOptions{Getenv: noEnv})
	if c.Role("web") == nil || c.Role("web").Count != 2 {
		t.Errorf("a symlink inside the git work tree was not followed: %s", diagText(c.Files, diags))
	}
	if len(diags) != 1 || diags[0].Summary != "Cannot read role source" || !strings.Contains(diags[0].Detail, "symbolic link") {
		t.Errorf("a symlink leaving the git work tree was followed: %s", diagText(c.Files, diags))
	}
}
