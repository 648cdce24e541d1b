package agent

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hactl/hactl/converge/resources"
)

// TestAgent_EngineEndToEnd runs the agent with the real language (lang.Load)
// and the real converge engine and supervisor: a signed commit declares a
// file and a service (python3's HTTP server serving that file); a broken
// commit is refused while the service keeps serving; a fixed commit rolls
// out; closing the converger stops the service.
func TestAgent_EngineEndToEnd(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: it is the test's stand-in web service")
	}
	f := newFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	role := func(content, extra string) string {
		return fmt.Sprintf(`  count = 1
  resource "directory" "www" {
    path = "/srv/www"
  }
  resource "file" "index" {
    path    = "/srv/www/index.html"
    content = "%s on ${node.name}"
  }
  resource "service" "www" {
    name    = "www"
    command = [%q, "-m", "http.server", "%d", "--bind", "127.0.0.1", "--directory", "${node.dir}/srv/www"]
    depends_on = [file.index]
  }
%s`, content, py, port, extra)
	}
	good := f.publish(role("v1", ""), f.key)

	root := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	conv, err := NewEngineConverger(resources.Builtin(), root, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conv.Close() })
	a, err := New(Options{
		Config:    f.config(),
		Identity:  Identity{Name: "web-1", Role: "web", Slot: 1, Generation: 1, Address: "127.0.0.1", Root: root},
		Converger: conv, Loader: LangLoader(resources.Builtin()), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/index.html", port)
	get := func() string {
		resp, err := httpGet(url)
		if err != nil {
			return "error: " + err.Error()
		}
		return resp
	}

	if run := a.RunOnce(t.Context()); !run.OK {
		t.Fatalf("first run: %s", run.Error)
	}
	waitFor(t, "the service to serve v1", func() bool { return get() == "v1 on web-1" })
	if _, err := os.Stat(filepath.Join(root, "var/lib/hactl/last-report.json")); err != nil {
		t.Errorf("run report: %v", err)
	}

	bad := f.publish(role("v2", `  resource "file" "oops" {
    path = "/x"
    colour = "blue"
  }
`), f.key)
	if run := a.RunOnce(t.Context()); !run.OK || run.Revision != good {
		t.Errorf("run with a broken commit = %+v, want ok on %s", run, good)
	}
	st := a.Status()
	if len(st.Refused) != 1 || st.Refused[0].Commit != bad || st.Refused[0].Reason != ReasonEvaluate || !strings.Contains(st.Refused[0].Error, "colour") {
		t.Errorf("refused = %+v, want %s refused for evaluate naming the attribute", st.Refused, bad)
	}
	if got := get(); got != "v1 on web-1" {
		t.Errorf("service after a refused commit = %q", got)
	}

	fixed := f.publish(role("v2", ""), f.key)
	if run := a.RunOnce(t.Context()); !run.OK || run.Revision != fixed {
		t.Fatalf("run with the fix = %+v", run)
	}
	waitFor(t, "the service to serve v2", func() bool { return get() == "v2 on web-1" })

	conv.Close()
	waitFor(t, "the service to stop", func() bool { return strings.HasPrefix(get(), "error") })
}
