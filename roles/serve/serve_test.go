package serve

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCleanRequestPath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		ok   bool
	}{
		{"/", ".", true},
		{"", ".", true},
		{"/a/b.html", "a/b.html", true},
		{"/a//b/./c", "a/b/c", true},
		{"/..", "", false},
		{"/a/../b", "", false},
		{"/a/..", "", false},
		{"/a\\..\\b", "", false},
		{"/a\x00", "", false},
		{"/..a/b..", "..a/b..", true},
	} {
		name, ok := CleanRequestPath(tc.in)
		if name != tc.name || ok != tc.ok {
			t.Errorf("CleanRequestPath(%q) = %q, %v; want %q, %v", tc.in, name, ok, tc.name, tc.ok)
		}
	}
}

func TestList_Targets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "peers.json")
	l, err := NewList([]string{"http://127.0.0.2:80/", file, "http://127.0.0.2:80"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Targets()
	if err != nil || !cmp.Equal(got, []string{"http://127.0.0.2:80"}) {
		t.Fatalf("missing file: %v, %v", got, err)
	}
	write := func(s string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(file, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour)
	write(`{"peers":["http://127.0.0.3:8025"],"backends":["https://127.0.0.4"]}`, t0)
	got, err = l.Targets()
	want := []string{"http://127.0.0.2:80", "https://127.0.0.4", "http://127.0.0.3:8025"} // backends before peers
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("Targets() = %v, %v; want %v", got, err, cmp.Diff(want, got))
	}
	// Broken content keeps the last good list and reports the error.
	write(`{"peers":["ftp://x"]}`, t0.Add(time.Minute))
	got, err = l.Targets()
	if err == nil || !cmp.Equal(got, want) {
		t.Fatalf("broken file: %v, %v; want the last good list and an error", got, err)
	}
	write(`{"peerz":[]}`, t0.Add(2*time.Minute))
	if _, err = l.Targets(); err == nil {
		t.Fatal("unknown field accepted")
	}
	write(`{"backends":[]}`, t0.Add(3*time.Minute))
	got, err = l.Targets()
	if err != nil || !cmp.Equal(got, []string{"http://127.0.0.2:80"}) {
		t.Fatalf("emptied file: %v, %v", got, err)
	}
}

func TestNewList_RejectsBadURL(t *testing.T) {
	for _, s := range []string{"ftp://x", "http://", "http://u:p@h", "http://h/?q=1"} {
		if _, err := NewList([]string{s}); err == nil {
			t.Errorf("NewList(%q) succeeded", s)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "good"), filepath.Join(dir, "empty")
	os.WriteFile(good, []byte("  tok\n"), 0o600)
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if tok, err := ReadToken(good); err != nil || tok != "tok" {
		t.Errorf("ReadToken(good) = %q, %v", tok, err)
	}
	for _, p := range []string{empty, filepath.Join(dir, "missing")} {
		if _, err := ReadToken(p); err == nil {
			t.Errorf("ReadToken(%s) succeeded", p)
		}
	}
	if TokenEqual("", "") || TokenEqual("a", "b") || !TokenEqual("a", "a") {
		t.Error("TokenEqual is wrong")
	}
}

func TestServe_ReturnsOnCancel(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.Write([]byte("done"))
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, Logger(nil)) }()
	resp := make(chan string, 1)
	go func() {
		r, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			resp <- err.Error()
			return
		}
		defer r.Body.Close()
		b := make([]byte, 4)
		n, _ := r.Body.Read(b)
		resp <- string(b[:n])
	}()
	<-started
	cancel()
	close(release) // the in-flight request finishes during the graceful shutdown
	if got := <-resp; got != "done" {
		t.Errorf("in-flight request got %q, want done", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
}
