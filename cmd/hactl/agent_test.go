package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/agent"
)

// TestAgentCmd_PublishUserdataBoot is the local boot path through the CLI:
// publish a signed configuration, render user-data for the role, lay out a
// local node directory, and run one agent cycle on it.
func TestAgentCmd_PublishUserdataBoot(t *testing.T) {
	base := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(base, "xdg"))
	t.Setenv("HACTL_NODE_DIR", "")
	t.Setenv("PATH", os.Getenv("PATH")) // the agent prepends the node's bin dir
	cfgDir := filepath.Join(base, "cfg")
	os.MkdirAll(cfgDir, 0o755)
	os.WriteFile(filepath.Join(cfgDir, "main.hcl"), []byte(`cluster "demo" {}

role "web" {
  count = 2
  resource "directory" "www" {
    path = "/srv/www"
  }
  resource "file" "index" {
    path    = "/srv/www/index.html"
    content = "hello from ${node.name}"
  }
}
`), 0o644)
	repo := filepath.Join(base, "repo.git")

	out, errOut, code := runCLI(t, "", "publish", cfgDir, "--repo", repo, "-json")
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errOut)
	}
	var pub struct{ Commit, SigningKey string }
	if err := json.Unmarshal([]byte(out), &pub); err != nil || len(pub.Commit) != 40 {
		t.Fatalf("publish output %q: %v", out, err)
	}
	if !strings.Contains(errOut, "agents must trust") {
		t.Errorf("first publish did not announce the generated key: %q", errOut)
	}

	ud, errOut, code := runCLI(t, "", "userdata", "web", "--standalone", "--config", cfgDir, "--remote", repo)
	if code != 0 {
		t.Fatalf("userdata: %d %s", code, errOut)
	}
	if _, errOut, code := runCLI(t, "", "userdata", "db", "--standalone", "--config", cfgDir, "--remote", repo); code == 0 || !strings.Contains(errOut, "not declared") {
		t.Errorf("userdata for an undeclared role: %d %q", code, errOut)
	}

	node := filepath.Join(base, "nodes", "web-2.g1")
	os.MkdirAll(node, 0o755)
	os.WriteFile(filepath.Join(node, "user-data"), []byte(ud), 0o644)
	os.WriteFile(filepath.Join(node, "meta-data.json"), []byte(`{"instance-id":"web-2.g1","local-hostname":"web-2",
"local-ipv4":"127.0.0.1","cluster":"demo","role":"web","slot":2,"generation":1}`), 0o644)

	out, errOut, code = runCLI(t, "", "agent", "--node-dir", node, "--once", "--api-listen", "127.0.0.1:0", "-json")
	if code != 0 {
		t.Fatalf("agent --once: %d\n%s\n%s", code, out, errOut)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status %q: %v", out, err)
	}
	if st.LastGood != pub.Commit || st.Identity.Name != "web-2" || !st.Healthy {
		t.Errorf("status = %+v, want web-2 healthy on %s", st, pub.Commit)
	}
	b, err := os.ReadFile(filepath.Join(node, "root/srv/www/index.html"))
	if err != nil || string(b) != "hello from web-2" {
		t.Errorf("index.html = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(node, "root/etc/hactl/agent.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent.json under the node root: %v", err)
	}

	// A broken configuration is not published.
	os.WriteFile(filepath.Join(cfgDir, "main.hcl"), []byte("role {{{"), 0o644)
	if _, errOut, code := runCLI(t, "", "publish", cfgDir, "--repo", repo); code == 0 || !strings.Contains(errOut, "refusing to publish") {
		t.Errorf("publish of broken HCL: %d %q", code, errOut)
	}
}
