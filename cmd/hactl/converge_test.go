package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge"
)

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
	stdout, stderr, code := runCLI(t, "", "converge", file, "--node", "web-2", "--root", root, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "+hello web-2 (web 2)") || !strings.Contains(stdout, "2 would change") {
		t.Fatalf("dry run: code %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err == nil {
		t.Fatal("dry run created files")
	}
	stdout, stderr, code = runCLI(t, "", "converge", file, "--node", "web-2", "--root", root)
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
	stdout, _, code = runCLI(t, "", "converge", "-json", file, "--node", "web-2", "--root", root)
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
	stdout, stderr, code := runCLI(t, "", "converge", file, "--node", "n-1", "--root", filepath.Join(dir, "node"))
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
	stdout, stderr, code := runCLI(t, "", "converge", "web", "--config", cfg, "--node", "web-1", "--root", root, "--address", "127.0.0.7")
	if code != 0 {
		t.Fatalf("code %d\n%s\n%s", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/web.conf")); string(b) != "listen 127.0.0.7:8080\n" {
		t.Errorf("web.conf = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/plain")); string(b) != "X" {
		t.Errorf("plain = %q", b)
	}
	_, stderr, code = runCLI(t, "", "converge", "nosuch", "--config", cfg, "--node", "web-1", "--root", root)
	if code == 0 || !strings.Contains(stderr, "neither a file nor a role") {
		t.Errorf("unknown role: code %d %s", code, stderr)
	}
}

// The compiled form of a resource file is reused only while the file, the
// facts and the binary are the same, and a damaged cache is never trusted.
func TestConvergeCmd_FileCache(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "node")
	file := filepath.Join(dir, "res.hcl")
	cache := filepath.Join(root, "var/lib/hactl/converge-cache")
	motd := filepath.Join(root, "etc/motd")
	writeRes := func(greeting string) {
		t.Helper()
		src := `resource "file" "motd" {
  path    = "/etc/motd"
  content = "` + greeting + ` ${node.name}\n"
  mode    = "0640"
}
`
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(wantHit bool, node, want string, extra ...string) {
		t.Helper()
		args := append([]string{"converge", file, "--node", node, "--root", root, "--log-level", "debug"}, extra...)
		stdout, stderr, code := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("converge %v: code %d\n%s\n%s", extra, code, stdout, stderr)
		}
		if hit := strings.Contains(stderr, "converge cache hit"); hit != wantHit {
			t.Errorf("converge %v as %s: cache hit = %v, want %v\n%s", extra, node, hit, wantHit, stderr)
		}
		if got := readFile(t, motd); got != want {
			t.Errorf("converge %v as %s: motd %q, want %q", extra, node, got, want)
		}
	}
	writeRes("hello")
	run(false, "web-1", "hello web-1\n")
	if _, err := os.Stat(cache); err != nil {
		t.Fatalf("no cache after a run: %v", err)
	}
	// A hit still checks the node: drifted content and mode are repaired.
	if err := os.WriteFile(motd, []byte("drifted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "web-1", "hello web-1\n")
	if fi, err := os.Stat(motd); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after a cached run: %v %v", fi.Mode(), err)
	}
	run(false, "web-2", "hello web-2\n") // other facts: miss
	writeRes("bye")
	run(false, "web-2", "bye web-2\n") // other file content: miss
	run(true, "web-2", "bye web-2\n")
	run(false, "web-2", "bye web-2\n", "--no-cache")
	// A damaged cache is refused and rewritten.
	b, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(cache, b, 0o600); err != nil {
		t.Fatal(err)
	}
	run(false, "web-2", "bye web-2\n")
	run(true, "web-2", "bye web-2\n")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Templates are kept in their flat form: the first run (building from it
// already) and cached runs render the same, repair drift, and a changed
// template file (not part of the key: it is read every run) or var is
// picked up.
func TestConvergeCmd_FileCache_Template(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "node")
	file := filepath.Join(dir, "res.hcl")
	tpl := filepath.Join(dir, "app.tpl")
	out := filepath.Join(root, "etc/app.conf")
	writeRes := func(port string) {
		t.Helper()
		src := `resource "template" "app" {
  path   = "/etc/app.conf"
  source = "app.tpl"
  mode   = "0600"
  vars   = { name = "svc", port = ` + port + ` }
}
`
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTpl := func(s string) {
		t.Helper()
		if err := os.WriteFile(tpl, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(wantHit bool, want string) {
		t.Helper()
		stdout, stderr, code := runCLI(t, "", "converge", file, "--node", "web-1", "--root", root, "--log-level", "debug")
		if code != 0 {
			t.Fatalf("converge: code %d\n%s\n%s", code, stdout, stderr)
		}
		if hit := strings.Contains(stderr, "converge cache hit"); hit != wantHit {
			t.Errorf("cache hit = %v, want %v\n%s", hit, wantHit, stderr)
		}
		if got := readFile(t, out); got != want {
			t.Errorf("app.conf %q, want %q", got, want)
		}
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode: %v %v", fi, err)
		}
	}
	writeTpl("${name}:${port}\n")
	writeRes("8000")
	run(false, "svc:8000\n")
	run(true, "svc:8000\n")
	if err := os.WriteFile(out, []byte("drifted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(true, "svc:8000\n")
	writeTpl("%{ if port > 8000 }high%{ else }low%{ endif } ${port + 1}\n") // off the fast path: the var's type matters
	run(true, "low 8001\n")
	writeRes("8080")
	run(false, "high 8081\n")
	run(true, "high 8081\n")
}
