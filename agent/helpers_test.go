package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// gitServer serves bare repositories under dir with the real
// `git http-backend` (smart HTTP) on a loopback port.
type gitServer struct {
	dir string
	srv *http.Server
	ln  net.Listener
	url string
}

func requireGit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed: skipping tests that serve a real repository")
	}
	return p
}

func startGitServer(t *testing.T, dir string) *gitServer {
	t.Helper()
	gitBin := requireGit(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1"},
	}
	gs := &gitServer{dir: dir, ln: ln, srv: &http.Server{Handler: h}, url: "http://" + ln.Addr().String()}
	go gs.srv.Serve(ln)
	t.Cleanup(gs.stop)
	return gs
}

// stop makes the repository go away: the port refuses connections.
func (gs *gitServer) stop() { _ = gs.srv.Close() }

func (gs *gitServer) repoURL(name string) string { return gs.url + "/" + name }

// deadURL returns a loopback URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/config.git"
}

// fileConverger is a minimal real converger, used with the real lang.Load
// (LangLoader without schemas) so that failures can be injected
// deterministically; TestAgent_EngineEndToEnd runs the real converge engine: `resource "file" "x" { path,
// content }` writes content to root+path when it differs (atomically);
// `resource "fail" "x" {}` fails; `resource "http" "x" { body }` keeps one
// in-process HTTP server on 127.0.0.1 serving body (a stand-in for a
// supervised service: it survives across runs and is stopped by Close).
type fileConverger struct {
	root string

	mu    sync.Mutex
	runs  int
	srv   *http.Server
	addr  string
	body  string
	close sync.Once
}

func (fc *fileConverger) Converge(ctx context.Context, cfg *lang.Config, role string, facts *lang.NodeFacts, dryRun bool) (Report, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.runs++
	r := cfg.Role(role)
	if r == nil {
		return Report{}, fmt.Errorf("no role %s", role)
	}
	var rep Report
	ectx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"node": cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(facts.Name)}),
	}}
	for _, rd := range r.Resources {
		attrs, d := rd.Body.JustAttributes()
		if d.HasErrors() {
			return rep, d
		}
		get := func(n string) string {
			a, ok := attrs[n]
			if !ok {
				return ""
			}
			v, d := a.Expr.Value(ectx)
			if d.HasErrors() || v.Type() != cty.String {
				return ""
			}
			return v.AsString()
		}
		switch rd.Addr.Kind {
		case "file":
			dst := filepath.Join(fc.root, filepath.Clean("/"+get("path")))
			want := get("content")
			if b, err := os.ReadFile(dst); err == nil && string(b) == want {
				rep.Unchanged++
				continue
			}
			if dryRun {
				rep.Changed++
				continue
			}
			if err := writeFileAtomic(dst, []byte(want), 0o644); err != nil {
				rep.Failed++
				continue
			}
			rep.Changed++
		case "fail":
			rep.Failed++
		case "http":
			fc.body = get("body")
			if fc.srv != nil {
				rep.Unchanged++
				continue
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				rep.Failed++
				continue
			}
			fc.addr = ln.Addr().String()
			fc.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fc.mu.Lock()
				b := fc.body
				fc.mu.Unlock()
				io.WriteString(w, b)
			})}
			go fc.srv.Serve(ln)
			rep.Changed++
		default:
			return rep, fmt.Errorf("unknown kind %s", rd.Addr.Kind)
		}
	}
	return rep, nil
}

func (fc *fileConverger) Close() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.srv != nil {
		fc.srv.Close()
		fc.srv = nil
	}
	return nil
}

func (fc *fileConverger) serviceAddr() string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.addr
}

// fixture is a config source dir + a bare repo served over HTTP + a key.
type fixture struct {
	t      *testing.T
	src    string
	repos  string
	repo   string
	gs     *gitServer
	key    *SSHSigner
	keyPub string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{t: t, src: filepath.Join(base, "src"), repos: filepath.Join(base, "repos")}
	f.repo = filepath.Join(f.repos, "config.git")
	if err := os.MkdirAll(f.src, 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := GenerateSigningKey(filepath.Join(base, "keys", "signing"))
	if err != nil {
		t.Fatal(err)
	}
	f.key, f.keyPub = key, key.PublicKey()
	f.gs = startGitServer(t, f.repos)
	return f
}

func (f *fixture) url() string { return f.gs.repoURL("config.git") }

// publish writes main.hcl with the given role body and publishes it signed
// with signer (nil: unsigned).
func (f *fixture) publish(roleBody string, signer Signer) string {
	f.t.Helper()
	hclText := fmt.Sprintf("cluster \"demo\" {}\n\nrole \"web\" {\n%s\n}\n", roleBody)
	if err := os.WriteFile(filepath.Join(f.src, "main.hcl"), []byte(hclText), 0o644); err != nil {
		f.t.Fatal(err)
	}
	h, err := Publish(f.t.Context(), f.src, f.repo, signer, "test publish")
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func fileRole(content string) string {
	return fmt.Sprintf("  resource \"file\" \"index\" {\n    path = \"/srv/www/index.html\"\n    content = %q\n  }\n", content)
}

func (f *fixture) config(remotes ...string) Config {
	if len(remotes) == 0 {
		remotes = []string{f.url()}
	}
	return Config{
		Cluster: "demo", Remotes: remotes, TrustedKeys: []string{f.keyPub},
		Interval: Duration(time.Hour), Splay: Duration(time.Millisecond), FetchTimeout: Duration(10 * time.Second),
	}
}

type testNode struct {
	a    *Agent
	conv *fileConverger
	root string
}

func newTestNode(t *testing.T, cfg Config, root string) *testNode {
	t.Helper()
	conv := &fileConverger{root: root}
	t.Cleanup(func() { conv.Close() })
	a, err := New(Options{
		Config:    cfg,
		Identity:  Identity{Name: "web-1", Role: "web", Slot: 1, Generation: 1, Address: "127.0.0.1", Root: root},
		Converger: conv, Loader: LangLoader(nil),
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{a: a, conv: conv, root: root}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "<missing>"
		}
		t.Fatal(err)
	}
	return string(b)
}

// testWriter sends logs to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}
