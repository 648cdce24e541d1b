package web

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf collects log output from the server goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startServer(t *testing.T, root string) (*Server, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	s, err := New(Config{Root: root, Listen: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, logs
}

// rawGet sends a request line exactly as given (no client-side cleaning)
// and returns the status code and body.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestServer_Handler_ServesContent(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	writeFile(t, filepath.Join(root, "index.html"), "<h1>blog</h1>")
	writeFile(t, filepath.Join(root, "posts", "index.html"), "<h1>posts</h1>")
	writeFile(t, filepath.Join(root, "style.css"), "body{}")
	s, _ := startServer(t, root)
	addr := s.Addr().String()

	for _, tc := range []struct {
		target string
		code   int
		body   string
	}{
		{"/", 200, "<h1>blog</h1>"},
		{"/index.html", 200, "<h1>blog</h1>"},
		{"/posts/", 200, "<h1>posts</h1>"},
		{"/style.css", 200, "body{}"},
		{"/missing.html", 404, "not found\n"},
	} {
		code, body := rawGet(t, addr, tc.target)
		if code != tc.code || body != tc.body {
			t.Errorf("GET %s = %d %q, want %d %q", tc.target, code, body, tc.code, tc.body)
		}
	}
	resp, err := http.Get("http://" + addr + "/style.css")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Content-Type":           "text/css; charset=utf-8",
		"Cache-Control":          "public, max-age=300",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified header")
	}
	// A directory without trailing slash redirects relatively.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = c.Get("http://" + addr + "/posts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "posts/" {
		t.Errorf("GET /posts = %d Location %q, want 301 posts/", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("x"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", resp.StatusCode)
	}
}

func TestServer_Handler_RefusesTraversal(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(root, "index.html"), "home")
	writeFile(t, filepath.Join(dir, "secret.txt"), "TOP-SECRET")
	writeFile(t, filepath.Join(dir, "secretdir", "index.html"), "TOP-SECRET")
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "leak.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secretdir"), filepath.Join(root, "leakdir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret.txt", filepath.Join(root, "rel.txt")); err != nil {
		t.Fatal(err)
	}
	s, logs := startServer(t, root)
	addr := s.Addr().String()

	for _, tc := range []struct {
		target string
		code   int
	}{
		{"/../secret.txt", 400},
		{"/a/../../secret.txt", 400},
		{"/%2e%2e/secret.txt", 400},
		{"/%2E%2E%2fsecret.txt", 400},
		{"/..%5csecret.txt", 400},
		{"/%00", 400},
		{"/leak.txt", 404},
		{"/rel.txt", 404},
		{"/leakdir/", 404},
		{"/leakdir/index.html", 404},
	} {
		code, body := rawGet(t, addr, tc.target)
		if code != tc.code {
			t.Errorf("GET %s = %d, want %d", tc.target, code, tc.code)
		}
		if strings.Contains(body, "TOP-SECRET") {
			t.Errorf("GET %s leaked the secret", tc.target)
		}
	}
	if n := strings.Count(logs.String(), "refused request path"); n < 10 {
		t.Errorf("logged %d refusals, want 10; logs:\n%s", n, logs)
	}
}

func TestServer_Healthz(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	s, _ := startServer(t, root)
	addr := s.Addr().String()

	if code, _ := rawGet(t, addr, "/healthz"); code != 503 {
		t.Errorf("healthz without root = %d, want 503", code)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _ := rawGet(t, addr, "/healthz"); code != 503 {
		t.Errorf("healthz without index.html = %d, want 503", code)
	}
	writeFile(t, filepath.Join(root, "index.html"), "home")
	if code, body := rawGet(t, addr, "/healthz"); code != 200 || body != "ok" {
		t.Errorf("healthz with content = %d %q, want 200 ok", code, body)
	}
	if err := os.Remove(filepath.Join(root, "index.html")); err != nil {
		t.Fatal(err)
	}
	if code, _ := rawGet(t, addr, "/healthz"); code != 503 {
		t.Errorf("healthz after index.html removed = %d, want 503", code)
	}
}

func TestServer_Run_StopsOnCancel(t *testing.T) {
	root := t.TempDir()
	s, err := New(Config{Root: root, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if code, _ := rawGet(t, s.Addr().String(), "/healthz"); code != 503 {
		t.Fatalf("healthz = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("listener still open after Run returned")
	}
}

func TestNew_RequiresRoot(t *testing.T) {
	if _, err := New(Config{Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("New without root succeeded")
	}
}
