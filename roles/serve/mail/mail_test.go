package mail

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/roles/serve"
)

const testToken = "s3cret-cluster-token"

type node struct {
	s      *Server
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func (n *node) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	n.done <- nil // later stops are no-ops
}

func startNode(t testing.TB, peers []string, mod func(*Config)) *node {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Listen:           "127.0.0.1:0",
		HTTPListen:       "127.0.0.1:0",
		Domain:           "example.org",
		Maildir:          filepath.Join(dir, "Maildir"),
		MaxSize:          4096,
		Peers:            peers,
		Token:            testToken,
		Hostname:         "mail-test",
		ReplicateTimeout: 5 * time.Second,
	}
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{s: s, dir: cfg.Maildir, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(func() { n.cancel(); <-n.done })
	return n
}

func (n *node) url() string { return "http://" + n.s.HTTPAddr().String() }

func (n *node) files(t *testing.T, folder string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.dir, folder))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// smtpConn is a raw SMTP dialogue, so malformed input reaches the server
// unchanged.
type smtpConn struct {
	t testing.TB
	c *textproto.Conn
}

func dial(t testing.TB, addr string) *smtpConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &smtpConn{t: t, c: textproto.NewConn(nc)}
	t.Cleanup(func() { c.c.Close() })
	c.expect(220)
	return c
}

// cmd sends a line and returns the reply code.
func (c *smtpConn) cmd(line string) (int, string) {
	c.t.Helper()
	if err := c.c.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

func (c *smtpConn) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.c.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatal(err)
	}
	return code, msg
}

func (c *smtpConn) expect(want int) {
	c.t.Helper()
	if code, msg := c.reply(); code != want {
		c.t.Fatalf("reply %d %q, want %d", code, msg, want)
	}
}

func (c *smtpConn) want(line string, want int) string {
	c.t.Helper()
	code, msg := c.cmd(line)
	if code != want {
		c.t.Fatalf("%s -> %d %q, want %d", line, code, msg, want)
	}
	return msg
}

// send runs one whole transaction and returns the final reply code.
func (c *smtpConn) send(from, to, body string) (int, string) {
	c.t.Helper()
	c.want("MAIL FROM:<"+from+">", 250)
	c.want("RCPT TO:<"+to+">", 250)
	c.want("DATA", 354)
	w := c.c.DotWriter()
	io.WriteString(w, body)
	w.Close()
	return c.reply()
}

func TestServer_Data_AcknowledgedAfterPeerAck(t *testing.T) {
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)

	c := dial(t, a.s.Addr().String())
	c.want("EHLO client.test", 250)
	code, msg := c.send("alice@elsewhere.test", "bob@Example.ORG", "Subject: hi\r\n\r\nhello bob\r\n")
	if code != 250 {
		t.Fatalf("DATA -> %d %q, want 250", code, msg)
	}
	// By the time 250 arrived, both replicas hold the message.
	an, bn := a.files(t, "new"), b.files(t, "new")
	if len(an) != 1 || len(bn) != 1 || an[0] != bn[0] {
		t.Fatalf("new/ on a = %v, on b = %v; want the same single message", an, bn)
	}
	if tmp := a.files(t, "tmp"); len(tmp) != 0 {
		t.Errorf("a tmp/ = %v, want empty", tmp)
	}
	ad, _ := os.ReadFile(filepath.Join(a.dir, "new", an[0]))
	bd, _ := os.ReadFile(filepath.Join(b.dir, "new", bn[0]))
	if string(ad) != string(bd) || !strings.HasSuffix(string(ad), "hello bob\r\n") || !strings.HasPrefix(string(ad), "Return-Path: <alice@elsewhere.test>\r\n") {
		t.Errorf("stored messages differ or are wrong:\na: %q\nb: %q", ad, bd)
	}
	c.want("QUIT", 221)
}

func TestServer_Data_451WhenPeerDown(t *testing.T) {
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	b.stop(t) // the peer is gone: connection refused

	c := dial(t, a.s.Addr().String())
	c.want("EHLO client.test", 250)
	if code, msg := c.send("alice@elsewhere.test", "bob@example.org", "body\r\n"); code != 451 {
		t.Fatalf("DATA with peer down -> %d %q, want 451", code, msg)
	}
	if n, tmp := a.files(t, "new"), a.files(t, "tmp"); len(n) != 0 || len(tmp) != 0 {
		t.Fatalf("after 451: new/ = %v tmp/ = %v, want both empty", n, tmp)
	}
	// The session goes on: the client may retry.
	c.want("RSET", 250)
}

func TestServer_Data_451WhenPeerHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	a := startNode(t, []string{"http://" + ln.Addr().String()}, func(c *Config) { c.ReplicateTimeout = 300 * time.Millisecond })
	c := dial(t, a.s.Addr().String())
	c.want("HELO client.test", 250)
	if code, msg := c.send("alice@elsewhere.test", "bob@example.org", "body\r\n"); code != 451 {
		t.Fatalf("DATA with hanging peer -> %d %q, want 451", code, msg)
	}
	if n := a.files(t, "new"); len(n) != 0 {
		t.Fatalf("new/ = %v after 451, want empty", n)
	}
}

func TestServer_Data_451WithoutPeers(t *testing.T) {
	a := startNode(t, nil, nil)
	c := dial(t, a.s.Addr().String())
	c.want("HELO client.test", 250)
	if code, msg := c.send("alice@elsewhere.test", "bob@example.org", "body\r\n"); code != 451 {
		t.Fatalf("DATA without peers -> %d %q, want 451", code, msg)
	}
}

func TestServer_Refusals(t *testing.T) {
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	c := dial(t, a.s.Addr().String())

	c.want("EHLO client.test", 250)
	// Out-of-order and malformed commands.
	for _, tc := range []struct {
		line string
		code int
	}{
		{"RCPT TO:<bob@example.org>", 502}, // no MAIL yet
		{"DATA", 502},                      // no MAIL/RCPT yet
		{"MAIL FROM:alice", 501},           // no angle brackets
		{"MAIL TO:<alice@x.test>", 501},
		{"FROB", 500},
		{"HELO", 501},
		{"MAIL FROM:<alice@x.test> SIZE=999999", 552}, // announced size above the limit
	} {
		if code, msg := c.cmd(tc.line); code != tc.code {
			t.Errorf("%s -> %d %q, want %d", tc.line, code, msg, tc.code)
		}
	}
	c.want("EHLO client.test", 250)
	c.want("MAIL FROM:<alice@x.test>", 250)
	// Wrong domain, and a domain that only ends like ours.
	for _, rcpt := range []string{"eve@evil.test", "eve@notexample.org", "eve@example.org.evil.test", "noat"} {
		if code, msg := c.cmd("RCPT TO:<" + rcpt + ">"); code != 550 && code != 501 {
			t.Errorf("RCPT %s -> %d %q, want 550", rcpt, code, msg)
		} else if rcpt != "noat" && code != 550 {
			t.Errorf("RCPT %s -> %d %q, want 550", rcpt, code, msg)
		}
	}
	c.want("RCPT TO:<bob@example.org>", 250)
	c.want("DATA", 354)
	w := c.c.DotWriter()
	io.WriteString(w, strings.Repeat(strings.Repeat("x", 70)+"\r\n", 80)) // 5760 bytes > 4096
	w.Close()
	if code, msg := c.reply(); code != 552 {
		t.Errorf("oversized DATA -> %d %q, want 552", code, msg)
	}
	// After all that, the connection still works and nothing was stored.
	c.want("NOOP", 250)
	if n := a.files(t, "new"); len(n) != 0 {
		t.Errorf("a new/ = %v, want empty", n)
	}
	if n := b.files(t, "new"); len(n) != 0 {
		t.Errorf("b new/ = %v, want empty", n)
	}
}

func httpDo(t *testing.T, method, url, token string, body io.Reader, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestServer_Handler_Messages(t *testing.T) {
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	c := dial(t, a.s.Addr().String())
	c.want("HELO client.test", 250)
	if code, msg := c.send("alice@x.test", "bob@example.org", "Subject: one\r\n\r\nfirst\r\n"); code != 250 {
		t.Fatalf("DATA -> %d %q", code, msg)
	}

	for _, tok := range []string{"", "wrong"} {
		if code, _ := httpDo(t, "GET", a.url()+"/messages", tok, nil, nil); code != 401 {
			t.Errorf("GET /messages with token %q = %d, want 401", tok, code)
		}
	}
	code, body := httpDo(t, "GET", a.url()+"/messages", testToken, nil, nil)
	var list struct{ Messages []Message }
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Messages) != 1 {
		t.Fatalf("GET /messages = %d %s", code, body)
	}
	id := list.Messages[0].ID
	if code, _ := httpDo(t, "GET", a.url()+"/messages/"+id, "", nil, nil); code != 401 {
		t.Errorf("GET /messages/{id} without token = %d, want 401", code)
	}
	code, msg := httpDo(t, "GET", a.url()+"/messages/"+id, testToken, nil, nil)
	if code != 200 || !strings.HasSuffix(string(msg), "first\r\n") {
		t.Errorf("GET /messages/%s = %d %q", id, code, msg)
	}
	// The peer serves the same message under the same id.
	if code, pmsg := httpDo(t, "GET", b.url()+"/messages/"+id, testToken, nil, nil); code != 200 || string(pmsg) != string(msg) {
		t.Errorf("peer GET /messages/%s = %d, differs", id, code)
	}
	for _, bad := range []string{"nope", "..%2f..%2fetc%2fpasswd", id + "x/../x"} {
		if code, _ := httpDo(t, "GET", a.url()+"/messages/"+bad, testToken, nil, nil); code != 404 {
			t.Errorf("GET /messages/%s = %d, want 404", bad, code)
		}
	}
}

func TestServer_Handler_Replicate(t *testing.T) {
	a := startNode(t, nil, nil)
	id := a.s.md.newID()
	data := "Subject: r\r\n\r\nreplica\r\n"
	sum := "54f2f5ba1ae5b1ffaa3e3df6a24c2e4e7b2c2b8a4c1b7f0f9ab0a4f5e9b6c3d2" // wrong on purpose
	hdr := map[string]string{"X-Hactl-Message-Id": id, "X-Hactl-Sha256": sum}
	if code, _ := httpDo(t, "POST", a.url()+"/replicate", "", strings.NewReader(data), hdr); code != 401 {
		t.Errorf("POST /replicate without token = %d, want 401", code)
	}
	if code, _ := httpDo(t, "POST", a.url()+"/replicate", testToken, strings.NewReader(data), hdr); code != 400 {
		t.Errorf("POST /replicate with wrong sha256 = %d, want 400", code)
	}
	hdr["X-Hactl-Message-Id"] = "../../evil"
	if code, _ := httpDo(t, "POST", a.url()+"/replicate", testToken, strings.NewReader(data), hdr); code != 400 {
		t.Errorf("POST /replicate with bad id = %d, want 400", code)
	}
	if n := a.files(t, "new"); len(n) != 0 {
		t.Fatalf("refused replicas stored: %v", n)
	}
	// A correct replica is stored, and storing it again is idempotent.
	b := startNode(t, []string{a.url()}, nil)
	if err := b.s.replicate(id, []byte(data)); err != nil {
		t.Fatalf("replicate: %v", err)
	}
	if err := b.s.replicate(id, []byte(data)); err != nil {
		t.Fatalf("replicate again: %v", err)
	}
	if err := b.s.replicate(id, []byte(data+"changed")); err == nil {
		t.Fatal("replicate with different content under the same id succeeded")
	}
	if n := a.files(t, "new"); len(n) != 1 || n[0] != id {
		t.Fatalf("new/ = %v, want [%s]", n, id)
	}
	// Replicating to oneself does not count as a second replica.
	self := startNode(t, nil, nil)
	self.s.peers, _ = serve.NewList([]string{self.url()})
	if err := self.s.replicate(self.s.md.newID(), []byte(data)); err == nil {
		t.Fatal("replication to self counted as an acknowledgement")
	}
}

func TestNew_RejectsBadConfig(t *testing.T) {
	base := Config{Listen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", Domain: "example.org", Token: "t"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no domain", func(c *Config) { c.Domain = "" }},
		{"address as domain", func(c *Config) { c.Domain = "a@example.org" }},
		{"no maildir", func(c *Config) {}},
		{"no token", func(c *Config) { c.Token = "" }},
		{"no http", func(c *Config) { c.HTTPListen = "" }},
		{"bad peer", func(c *Config) { c.Peers = []string{"ftp://x"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			if tc.name != "no maildir" {
				cfg.Maildir = filepath.Join(t.TempDir(), "md")
			}
			tc.mod(&cfg)
			if s, err := New(cfg); err == nil {
				s.ln.Close()
				s.httpLn.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestMaildir_NewID_Unique(t *testing.T) {
	md, err := openMaildir(t.TempDir(), "host.example/x:y")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 1000 {
		id := md.newID()
		if seen[id] || !validID(id) {
			t.Fatalf("id %q duplicate=%v valid=%v", id, seen[id], validID(id))
		}
		seen[id] = true
	}
}

// BenchmarkServer_Deliver measures one accepted message: SMTP transaction on
// an open connection, local fsync, replication to one peer (fsync there) and
// the 250.
func BenchmarkServer_Deliver(b *testing.B) {
	peer := startNode(b, nil, nil)
	a := startNode(b, []string{peer.url()}, nil)
	c := dial(b, a.s.Addr().String())
	c.want("HELO bench", 250)
	b.ResetTimer()
	for range b.N {
		if code, msg := c.send("a@x.test", "bob@example.org", "Subject: b\r\n\r\nbody\r\n"); code != 250 {
			b.Fatalf("DATA -> %d %q", code, msg)
		}
	}
}
