package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	uglyHCL   = "role \"web\" {\ncount=2\n  provider =    \"local\"\n}\n"
	prettyHCL = "role \"web\" {\n  count    = 2\n  provider = \"local\"\n}\n"
)

func TestFmtCmd_Write(t *testing.T) {
	dir := writeTree(t, map[string]string{"a.hcl": uglyHCL, "b.hcl": prettyHCL, "sub/c.hcl": uglyHCL, "notes.txt": uglyHCL})
	stdout, stderr, code := runCLI(t, "", "fmt", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := filepath.Join(dir, "a.hcl") + "\n"; stdout != want {
		t.Errorf("listed %q, want %q", stdout, want)
	}
	for name, want := range map[string]string{"a.hcl": prettyHCL, "b.hcl": prettyHCL, "sub/c.hcl": uglyHCL, "notes.txt": uglyHCL} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	if _, _, code := runCLI(t, "", "fmt", "-recursive", dir); code != 0 {
		t.Fatalf("-recursive exit %d", code)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub/c.hcl")); string(b) != prettyHCL {
		t.Errorf("-recursive left sub/c.hcl as %q", b)
	}
}

func TestFmtCmd_CheckDiff(t *testing.T) {
	dir := writeTree(t, map[string]string{"a.hcl": uglyHCL})
	path := filepath.Join(dir, "a.hcl")
	stdout, _, code := runCLI(t, "", "fmt", "-check", "-diff", dir)
	if code != fmtCheckExit {
		t.Errorf("-check exit %d, want %d", code, fmtCheckExit)
	}
	for _, want := range []string{"--- old/" + path, "+++ new/" + path, "@@ -1,4 +1,4 @@", "-count=2", "+  count    = 2", " role \"web\" {"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("diff lacks %q:\n%s", want, stdout)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != uglyHCL {
		t.Error("-check changed the file")
	}
	stdout, _, code = runCLI(t, "", "fmt", "-json", "-write=false", dir)
	var res fmtResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 || len(res.Changed) != 1 || res.Changed[0] != path {
		t.Errorf("-json: code %d, %v, %+v", code, err, res)
	}
	if b, _ := os.ReadFile(path); string(b) != uglyHCL {
		t.Error("-write=false changed the file")
	}
}

func TestFmtCmd_StdinAndSyntaxError(t *testing.T) {
	stdout, _, code := runCLI(t, uglyHCL, "fmt", "-")
	if code != 0 || stdout != prettyHCL {
		t.Errorf("stdin: exit %d, out %q", code, stdout)
	}
	dir := writeTree(t, map[string]string{"bad.hcl": "role \"web\" {\n  count = \n"})
	_, stderr, code := runCLI(t, "", "fmt", dir)
	if code != 1 || !strings.Contains(stderr, "bad.hcl line") {
		t.Errorf("syntax error: exit %d, stderr %s", code, stderr)
	}
}

func TestUnifiedDiff_Hunks(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\nTWO\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\nthirteen\n"
	got := string(unifiedDiff("f", []byte(a), []byte(b)))
	want := "--- old/f\n+++ new/f\n@@ -1,5 +1,5 @@\n 1\n-2\n+TWO\n 3\n 4\n 5\n@@ -10,3 +10,4 @@\n 10\n 11\n 12\n+thirteen\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
