package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// mailServer is a real SMTP server (go-smtp) on loopback that keeps the
// messages it accepted, plus an HTTP list of their raw text.
type mailServer struct {
	addr, listURL string
	mu            sync.Mutex
	msgs          []string
	refuseRcpt    bool
	deferData     bool // answer DATA with 451, as hactl serve mail without a peer
}

type mailBackend struct{ s *mailServer }
type mailSession struct{ s *mailServer }

func (b mailBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return mailSession(b), nil }
func (mailSession) Reset()                                        {}
func (mailSession) Logout() error                                 { return nil }
func (mailSession) Mail(string, *smtp.MailOptions) error          { return nil }
func (m mailSession) Rcpt(string, *smtp.RcptOptions) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.refuseRcpt {
		return &smtp.SMTPError{Code: 550, Message: "no such mailbox"}
	}
	return nil
}
func (m mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.deferData {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "not stored on a second replica, try again later"}
	}
	m.s.msgs = append(m.s.msgs, string(b))
	return nil
}

func newMailServer(t *testing.T) *mailServer {
	t.Helper()
	ms := &mailServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(mailBackend{ms})
	srv.Domain = "mail.test"
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ms.addr = ln.Addr().String()
	// Like hactl serve mail: a bearer token, a JSON list of ids, and each
	// message's raw text by id.
	mux := http.NewServeMux()
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /messages", authed(func(w http.ResponseWriter, r *http.Request) {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		var ids []map[string]string
		for i := range ms.msgs {
			ids = append(ids, map[string]string{"id": fmt.Sprint(i)})
		}
		json.NewEncoder(w).Encode(map[string]any{"messages": ids})
	}))
	mux.HandleFunc("GET /messages/{id}", authed(func(w http.ResponseWriter, r *http.Request) {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		i, err := strconv.Atoi(r.PathValue("id"))
		if err != nil || i < 0 || i >= len(ms.msgs) {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, ms.msgs[i])
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	ms.listURL = hs.URL + "/messages"
	return ms
}

func (ms *mailServer) count() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.msgs)
}

// gitServer serves a bare repository through the real git http-backend
// (CGI), with push enabled.
func gitServer(t *testing.T) (url, bare string) {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed:", err)
	}
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Skip("git --exec-path:", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skip("git-http-backend missing:", err)
	}
	root := t.TempDir()
	bare = filepath.Join(root, "repo.git")
	for _, args := range [][]string{{"init", "--quiet", "--bare", "--initial-branch=main", bare}, {"-C", bare, "config", "http.receivepack", "true"}} {
		if out, err := exec.Command(gitBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	// A first commit so clones have something to check out.
	if err := pushFile(context.Background(), filepath.Join(root, "seed"), bare, "", "main", "README", "hello"); err != nil {
		t.Fatal(err)
	}
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git", bare
}

func TestHTTPProbe_Check(t *testing.T) {
	status := http.StatusOK
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
	}))
	p := &HTTPProbe{URL: srv.URL}
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("200: %v", err)
	}
	mu.Lock()
	status = http.StatusServiceUnavailable
	mu.Unlock()
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("503: err = %v", err)
	}
	srv.Close()
	if err := p.Check(context.Background()); err == nil {
		t.Error("closed server: no error")
	}
}

func TestTCPProbe_Check(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProbe{Addr: ln.Addr().String()}
	if err := p.Check(context.Background()); err != nil {
		t.Errorf("listening: %v", err)
	}
	ln.Close()
	if err := p.Check(context.Background()); err == nil {
		t.Error("closed: no error")
	}
}

func TestSMTPProbe_Check_DeliversAndCounts250s(t *testing.T) {
	ms := newMailServer(t)
	p := &SMTPProbe{Addr: ms.addr}
	n, err := p.send(context.Background(), "probe subject")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if n != 4 { // EHLO, MAIL, RCPT, end of DATA
		t.Errorf("counted %d 250 replies, want 4", n)
	}
	if ms.count() != 1 {
		t.Errorf("server holds %d messages, want 1", ms.count())
	}
	ms.mu.Lock()
	ms.refuseRcpt = true
	ms.mu.Unlock()
	if err := p.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "RCPT") {
		t.Errorf("refused RCPT: err = %v", err)
	}
	if ms.count() != 1 {
		t.Errorf("refused message stored: %d", ms.count())
	}
}

func TestSMTPMarker_WriteRead(t *testing.T) {
	ms := newMailServer(t)
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := ParseMarker("smtp=" + ms.addr + "," + ms.listURL + "," + tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Write(context.Background(), "other"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Write(ctx, "abc123"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if ok, err := m.Read(ctx, "abc123"); !ok || err != nil {
		t.Errorf("Read(abc123) = %v, %v; want true", ok, err)
	}
	if ok, err := m.Read(ctx, "never-written"); ok || err != nil {
		t.Errorf("Read(never-written) = %v, %v; want false", ok, err)
	}
	noTok := &SMTPMarker{Addr: ms.addr, ListURL: ms.listURL}
	if _, err := noTok.Read(ctx, "abc123"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("Read without token: err = %v, want 401", err)
	}
}

func TestGitProbe_CloneAndPush(t *testing.T) {
	url, bare := gitServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := (&GitProbe{URL: url}).Check(ctx); err != nil {
		t.Fatalf("clone: %v", err)
	}
	if err := (&GitProbe{URL: url, Push: true}).Check(ctx); err != nil {
		t.Fatalf("clone+push: %v", err)
	}
	if out, err := exec.Command("git", "-C", bare, "rev-parse", "--verify", "refs/heads/hactl-chaos/probe").CombinedOutput(); err != nil {
		t.Errorf("push did not land: %v %s", err, out)
	}
	if err := (&GitProbe{URL: url + "-missing"}).Check(ctx); err == nil {
		t.Error("clone of a missing repo succeeded")
	}
}

func TestGitMarker_WriteReadAndLoss(t *testing.T) {
	url, bare := gitServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m := &GitMarker{URL: url}
	if err := m.Write(ctx, "m1"); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if ok, err := m.Read(ctx, "m1"); !ok || err != nil {
		t.Fatalf("Read(m1) = %v, %v", ok, err)
	}
	// Lose the acknowledged data, as a rebuilt replica without it would.
	if out, err := exec.Command("git", "-C", bare, "update-ref", "-d", "refs/heads/hactl-chaos/marker-m1").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if ok, err := m.Read(ctx, "m1"); ok || err != nil {
		t.Errorf("Read(m1) after loss = %v, %v; want false, nil", ok, err)
	}
}

func TestCommandProbe_Check(t *testing.T) {
	if err := (&CommandProbe{Command: "true"}).Check(context.Background()); err != nil {
		t.Error(err)
	}
	if err := (&CommandProbe{Command: "echo boom >&2; exit 3"}).Check(context.Background()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err = %v, want exit 3 with output", err)
	}
}

func TestParseProbe_Kinds(t *testing.T) {
	for in, want := range map[string]string{
		"http=http://127.0.0.1/": "http=http://127.0.0.1/", "tcp=127.0.0.1:25": "tcp=127.0.0.1:25",
		"smtp=127.0.0.1:25": "smtp=127.0.0.1:25", "git=http://x/r.git": "git=http://x/r.git",
		"git-push=http://x/r.git": "git-push=http://x/r.git", "cmd=true": "cmd=true",
	} {
		p, err := ParseProbe(in)
		if err != nil || p.Name() != want {
			t.Errorf("ParseProbe(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"http", "ftp=x", "tcp="} {
		if _, err := ParseProbe(bad); err == nil {
			t.Errorf("ParseProbe(%q) accepted", bad)
		}
	}
}

func TestSampler_RecordsSuccessAndFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TCPProbe{Addr: ln.Addr().String()}
	s := &Sampler{Probes: []Probe{p}, Interval: 20 * time.Millisecond}
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	eventually(t, "ok samples", func() error {
		if len(s.Samples(p.Name())) < 2 {
			return os.ErrNotExist
		}
		return nil
	})
	ln.Close()
	cut := time.Now()
	eventually(t, "failed sample", func() error {
		if _, failed, _ := s.Between(cut, time.Now().Add(time.Hour)); failed == 0 {
			return os.ErrNotExist
		}
		return nil
	})
	s.Stop()
	ss := s.Samples(p.Name())
	if !ss[0].OK || ss[len(ss)-1].OK {
		t.Errorf("first sample ok=%v, last ok=%v; want true, false", ss[0].OK, ss[len(ss)-1].OK)
	}
	for i := 1; i < len(ss); i++ {
		if ss[i].At.Before(ss[i-1].At) {
			t.Errorf("samples out of order at %d", i)
		}
	}
}
