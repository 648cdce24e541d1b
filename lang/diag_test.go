package lang

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteDiagnostics_Snippet(t *testing.T) {
	files := map[string][]byte{"main.hcl": []byte("cluster \"c\" {}\nrole \"web\" {\n  count = 0\n}\n")}
	c, diags := LoadFiles(files, LoadOptions{Getenv: noEnv})
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, c.Files, diags, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Error: Invalid count", "on main.hcl line 3", "3:   count = 0", "at least 1 node"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDiagnosticsJSON_Fields(t *testing.T) {
	files := map[string][]byte{"main.hcl": []byte("cluster \"c\" {}\nrole \"web\" {\n  count = 0\n}\n")}
	_, diags := LoadFiles(files, LoadOptions{Getenv: noEnv})
	got := DiagnosticsJSON(diags)
	want := []JSONDiagnostic{{
		Severity: "error",
		Summary:  "Invalid count",
		Detail:   `Role "web" has count 0; a role needs at least 1 node. Remove the role if it is not wanted.`,
		Range: &JSONRange{Filename: "main.hcl",
			Start: JSONPos{Line: 3, Column: 11, Byte: 38}, End: JSONPos{Line: 3, Column: 12, Byte: 39}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b, err := json.Marshal(DiagnosticsJSON(nil))
	if err != nil || string(b) != "[]" {
		t.Errorf("no diagnostics encode as %s, %v; want []", b, err)
	}
}
