package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
)

func convergeCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	root := newRootCmd(g)
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

func TestConvergeCmd_File(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "node")
	file := filepath.Join(dir, "res.hcl")
	os.WriteFile(file, []byte(`
resource "file" "motd" {
  path    = "/etc/motd"
  content = "hello ${node.name} (${node.role} ${node.slot})\n"
}
resource "symlink" "cur" {
  path       = "/etc/current"
  target     = "/etc/motd"
  depends_on = [file.motd]
}
`), 0o644)
	stdout, stderr, code := convergeCLI(t, "converge", file, "--node", "web-2", "--root", root, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "+hello web-2 (web 2)") || !strings.Contains(stdout, "2 would change") {
		t.Fatalf("dry run: code %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err == nil {
		t.Fatal("dry run created files")
	}
	stdout, stderr, code = convergeCLI(t, "converge", file, "--node", "web-2", "--root", root)
	if code != 0 || !strings.Contains(stdout, "0 unchanged, 2 changed") {
		t.Fatalf("run: code %d\n%s\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(root, "var/lib/hactl/last-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep converge.Report
	if err := json.Unmarshal(b, &rep); err != nil || rep.Summary.Changed != 2 || rep.DryRun {
		t.Fatalf("report %s: %v", b, err)
	}
	stdout, _, code = convergeCLI(t, "converge", "-json", file, "--node", "web-2", "--root", root)
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 || rep.Summary.Unchanged != 2 {
		t.Fatalf("second run: code %d %v\n%s", code, err, stdout)
	}
}

func TestConvergeCmd_FailureExitsOne(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "res.hcl")
	os.WriteFile(file, []byte(`
resource "exec" "boom" {
  command = ["false"]
}
resource "file" "ok" {
  path    = "/ok"
  content = "x"
}
`), 0o644)
	stdout, stderr, code := convergeCLI(t, "converge", file, "--node", "n-1", "--root", filepath.Join(dir, "node"))
	if code != 1 || !strings.Contains(stdout, "failed       exec.boom: exec.boom (") || !strings.Contains(stdout, "1 changed, 1 failed") {
		t.Fatalf("code %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestConvergeCmd_Role(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cfg")
	os.MkdirAll(cfg, 0o755)
	os.WriteFile(filepath.Join(cfg, "main.hcl"), []byte(`
cluster "c" {}

locals {
  port = 8080
}

role "web" {
  resource "file" "conf" {
    path    = "${node.dir}/etc/web.conf"
    content = "listen ${node.address}:${local.port}\n"
  }
  resource "file" "plain" {
    path    = "/etc/plain"
    content = upper("x")
  }
}
`), 0o644)
	root := filepath.Join(dir, "node")
	stdout, stderr, code := convergeCLI(t, "converge", "web", "--config", cfg, "--node", "web-1", "--root", root, "--address", "127.0.0.7")
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/web.conf")); string(b) != "listen 127.0.0.7:8080\n" {
		t.Errorf("web.conf = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/plain")); string(b) != "X" {
		t.Errorf("plain = %q", b)
	}
	_, stderr, code = convergeCLI(t, "converge", "nosuch", "--config", cfg, "--node", "web-1", "--root", root)
	if code == 0 || !strings.Contains(stderr, "neither a file nor a role") {
		t.Errorf("unknown role: code %d %s", code, stderr)
	}
}
