// Package agentbench measures the node agent: a no-change pull-and-converge
// cycle (go test -bench) against a real git smart-HTTP server. The start-up
// and idle figures come from run.sh beside this file.
package agentbench

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/converge/resources"
)

const role = `cluster "bench" {}

role "web" {
  count = 2
  resource "directory" "www" {
    path = "/srv/www"
  }
  resource "file" "index" {
    path    = "/srv/www/index.html"
    content = "hello from ${node.name}\n"
  }
  resource "file" "about" {
    path    = "/srv/www/about.html"
    content = "about ${node.name} at ${node.address}\n"
  }
  resource "service" "web" {
    name       = "web"
    command    = ["sleep", "3600"]
    depends_on = [file.index]
  }
}
`

// BenchmarkAgent_NoChangeCycle times RunOnce when nothing changed: fetch
// from the remote over HTTP (answered "up to date"), no new commit to
// verify, converge the in-force configuration (every resource unchanged).
func BenchmarkAgent_NoChangeCycle(b *testing.B) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		b.Skip("git not installed")
	}
	base := b.TempDir()
	src, repos := filepath.Join(base, "src"), filepath.Join(base, "repos")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "main.hcl"), []byte(role), 0o644)
	key, err := agent.GenerateSigningKey(filepath.Join(base, "key"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := agent.Publish(b.Context(), src, filepath.Join(repos, "config.git"), key, "bench"); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: &cgi.Handler{Path: gitBin, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + repos, "GIT_HTTP_EXPORT_ALL=1"}}}
	go srv.Serve(ln)
	defer srv.Close()

	root := filepath.Join(base, "root")
	log := slog.New(slog.DiscardHandler)
	conv, err := agent.NewEngineConverger(resources.Builtin(), root, log)
	if err != nil {
		b.Fatal(err)
	}
	defer conv.Close()
	a, err := agent.New(agent.Options{
		Config: agent.Config{Cluster: "bench", Remotes: []string{fmt.Sprintf("http://%s/config.git", ln.Addr())},
			TrustedKeys: []string{key.PublicKey()}},
		Identity:  agent.Identity{Name: "web-1", Role: "web", Slot: 1, Generation: 1, Address: "127.0.0.1", Root: root},
		Converger: conv, Loader: agent.LangLoader(resources.Builtin()), Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	if run := a.RunOnce(b.Context()); !run.OK {
		b.Fatalf("first run: %s", run.Error)
	}
	b.ResetTimer()
	for b.Loop() {
		run := a.RunOnce(b.Context())
		if !run.OK || run.Report.Changed != 0 {
			b.Fatalf("no-change run: %+v", run)
		}
	}
}
