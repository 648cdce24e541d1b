package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs hactl in-process with args and stdin, and returns its output
// and exit status. Every in-process CLI test uses it.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin)}
	root := newRootCmdFor(g, args) // as run does
	root.SetArgs(normalizeArgs(root, args))
	err := root.ExecuteContext(t.Context())
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	default:
		code = 1
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, s := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// blogTree copies the example blog configuration of lang's tests.
func blogTree(t *testing.T) string {
	t.Helper()
	files := map[string]string{}
	for _, name := range []string{"blog.hcl", "roles/repo.hcl", "templates/index.html.tmpl"} {
		b, err := os.ReadFile(filepath.Join("../../lang/testdata/valid", name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(b)
	}
	return writeTree(t, files)
}

func TestValidateCmd_Valid(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "validate", blogTree(t))
	if code != 0 || !strings.Contains(stdout, "Success! The configuration is valid.") {
		t.Fatalf("code %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func TestValidateCmd_Errors(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"main.hcl": "cluster \"c\" {}\nrole \"web\" {\n  count = 0\n}\nvariable \"v\" { type = number }\n",
	})
	stdout, stderr, code := runCLI(t, "", "validate", dir)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.Contains(stdout, "Success") {
		t.Errorf("stdout claims success: %s", stdout)
	}
	for _, want := range []string{"Error: Invalid count", "main.hcl line 3", "3:   count = 0", "Error: Missing variable value"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// -var fixes the variable; -json reports the rest.
	stdout, _, code = runCLI(t, "", "validate", "-json", "-var", "v=3", dir)
	if code != 1 {
		t.Errorf("-json exit %d, want 1", code)
	}
	var res validateResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("-json output is not JSON: %v\n%s", err, stdout)
	}
	if res.Valid || res.ErrorCount != 1 || len(res.Diagnostics) != 1 || res.Diagnostics[0].Range == nil ||
		res.Diagnostics[0].Range.Start.Line != 3 || res.Diagnostics[0].Summary != "Invalid count" {
		t.Errorf("unexpected result: %+v", res)
	}
}

func TestValidateCmd_MissingDir(t *testing.T) {
	_, stderr, code := runCLI(t, "", "validate", filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(stderr, "Cannot read configuration directory") {
		t.Errorf("code %d, stderr %s", code, stderr)
	}
}
