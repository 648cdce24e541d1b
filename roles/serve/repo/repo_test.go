package repo

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testToken = "push-token-123"

func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: skipping repo tests")
	}
}

type node struct {
	s      *Server
	repos  string
	cancel context.CancelFunc
	done   chan error
}

func (n *node) url() string { return "http://" + n.s.Addr().String() }

func (n *node) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	if err := <-n.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	n.done <- nil
}

func startNode(t *testing.T, peers []string, mod func(*Config)) *node {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Listen:        "127.0.0.1:0",
		Repos:         filepath.Join(dir, "repos"),
		Packages:      filepath.Join(dir, "packages"),
		Init:          []string{"blog.git"},
		Peers:         peers,
		Token:         testToken,
		AnonymousRead: true,
		PushTimeout:   20 * time.Second,
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
	n := &node{s: s, repos: cfg.Repos, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- s.Run(ctx) }()
	t.Cleanup(func() { n.cancel(); <-n.done })
	return n
}

// gitEnv isolates client git commands from the user's configuration and
// never prompts for credentials.
func gitEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(),
		"HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org",
		"GIT_ASKPASS=", "SSH_ASKPASS=")
}

// git runs git in dir and returns its combined output and error.
func git(t *testing.T, env []string, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, env []string, dir string, args ...string) string {
	t.Helper()
	out, err := git(t, env, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// revParse returns the value of ref in a server's bare repository, or "".
func (n *node) revParse(t *testing.T, ref string) string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir", filepath.Join(n.repos, "blog.git"), "rev-parse", "--verify", "--quiet", ref).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func (n *node) hasObject(t *testing.T, sha string) bool {
	t.Helper()
	return exec.Command("git", "--git-dir", filepath.Join(n.repos, "blog.git"), "cat-file", "-e", sha).Run() == nil
}

// workTree makes a local repository with one commit on main.
func workTree(t *testing.T, env []string) string {
	t.Helper()
	dir := t.TempDir()
	mustGit(t, env, dir, "init", "--quiet", "--initial-branch=main")
	commit(t, env, dir, "index.html", "<h1>v1</h1>")
	return dir
}

func commit(t *testing.T, env []string, dir, file, content string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	mustGit(t, env, dir, "add", file)
	mustGit(t, env, dir, "commit", "--quiet", "-m", "change "+file)
	return mustGit(t, env, dir, "rev-parse", "HEAD")
}

func authURL(n *node, user, pass string) string {
	return "http://" + user + ":" + pass + "@" + n.s.Addr().String() + "/blog.git"
}

func TestServer_Push_ReplicatedBeforeSuccess(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	wt := workTree(t, env)
	head := mustGit(t, env, wt, "rev-parse", "HEAD")

	out := mustGit(t, env, wt, "push", authURL(a, "alice", testToken), "main")
	if !strings.Contains(out, "hactl: replicated to "+b.url()) {
		t.Errorf("push output lacks the replication report:\n%s", out)
	}
	// The push has been acknowledged: both replicas hold it already.
	if got := a.revParse(t, "refs/heads/main"); got != head {
		t.Errorf("a main = %q, want %s", got, head)
	}
	if got := b.revParse(t, "refs/heads/main"); got != head {
		t.Errorf("b main = %q, want %s (not replicated before success)", got, head)
	}

	// Anonymous clones from either replica give the pushed content.
	for _, n := range []*node{a, b} {
		dst := filepath.Join(t.TempDir(), "clone")
		mustGit(t, env, "", "clone", "--quiet", n.url()+"/blog.git", dst)
		if got := mustGit(t, env, dst, "rev-parse", "HEAD"); got != head {
			t.Errorf("clone from %s HEAD = %s, want %s", n.url(), got, head)
		}
	}

	// A second push, a new branch and a deletion of an unprotected ref.
	head2 := commit(t, env, wt, "post.html", "post")
	mustGit(t, env, wt, "push", authURL(a, "alice", testToken), "main", "main:refs/heads/draft")
	if b.revParse(t, "refs/heads/main") != head2 || b.revParse(t, "refs/heads/draft") != head2 {
		t.Errorf("second push not replicated")
	}
	mustGit(t, env, wt, "push", authURL(a, "alice", testToken), ":refs/heads/draft")

	// A push larger than git's http.postBuffer (1 MiB) is sent chunked
	// through the CGI, and replicated the same way.
	big := make([]byte, 3<<19) // 1.5 MiB
	rand.Read(big)
	head3 := commit(t, env, wt, "big.bin", string(big))
	mustGit(t, env, wt, "push", "--quiet", authURL(a, "alice", testToken), "main")
	if a.revParse(t, "refs/heads/main") != head3 || b.revParse(t, "refs/heads/main") != head3 {
		t.Errorf("large push not on both replicas")
	}
	if a.revParse(t, "refs/heads/draft") != "" || b.revParse(t, "refs/heads/draft") != "" {
		t.Errorf("deleted branch still on a replica")
	}
}

func TestServer_Push_RefusedWithoutPeer(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	wt := workTree(t, env)
	mustGit(t, env, wt, "push", "--quiet", authURL(a, "alice", testToken), "main")
	before := a.revParse(t, "refs/heads/main")

	b.stop(t)
	head := commit(t, env, wt, "index.html", "<h1>v2</h1>")
	out, err := git(t, env, wt, "push", authURL(a, "alice", testToken), "main")
	if err == nil {
		t.Fatalf("push without a reachable peer succeeded:\n%s", out)
	}
	for _, want := range []string{"hactl: replication to " + b.url() + " failed", "hactl: push refused", "pre-receive hook declined"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	if got := a.revParse(t, "refs/heads/main"); got != before {
		t.Errorf("a main = %s after refused push, want unchanged %s", got, before)
	}
	if a.hasObject(t, head) {
		t.Errorf("refused push left commit %s in a's object store", head)
	}

	// A server with no peers at all refuses pushes the same way.
	lone := startNode(t, nil, nil)
	out, err = git(t, env, wt, "push", authURL(lone, "alice", testToken), "main")
	if err == nil || !strings.Contains(out, "hactl: push refused") {
		t.Fatalf("push to a server without peers: err=%v\n%s", err, out)
	}
}

func TestServer_Push_ProtectedRefRefused(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	wt := workTree(t, env)
	commit(t, env, wt, "a.html", "a")
	mustGit(t, env, wt, "push", "--quiet", authURL(a, "alice", testToken), "main", "main:refs/heads/topic")
	main := a.revParse(t, "refs/heads/main")

	// Rewrite history and force-push it.
	mustGit(t, env, wt, "reset", "--quiet", "--hard", "HEAD~1")
	commit(t, env, wt, "b.html", "b")
	out, err := git(t, env, wt, "push", "--force", authURL(a, "alice", testToken), "main")
	if err == nil || !strings.Contains(out, "hactl: refusing non-fast-forward update of protected ref refs/heads/main") || !strings.Contains(out, "[remote rejected]") {
		t.Errorf("force push to main: err=%v\n%s", err, out)
	}
	out, err = git(t, env, wt, "push", authURL(a, "alice", testToken), ":refs/heads/main")
	if err == nil || !strings.Contains(out, "hactl: refusing to delete protected ref refs/heads/main") {
		t.Errorf("deleting main: err=%v\n%s", err, out)
	}
	if a.revParse(t, "refs/heads/main") != main || b.revParse(t, "refs/heads/main") != main {
		t.Errorf("protected main changed")
	}
	// An unprotected branch may be force-pushed, and the replica follows.
	mustGit(t, env, wt, "push", "--quiet", "--force", authURL(a, "alice", testToken), "main:refs/heads/topic")
	head := mustGit(t, env, wt, "rev-parse", "HEAD")
	if a.revParse(t, "refs/heads/topic") != head || b.revParse(t, "refs/heads/topic") != head {
		t.Errorf("force push of unprotected topic not applied on both replicas")
	}
	// The peer refuses the same rewrite of main when pushed to directly,
	// even with the replica user.
	out, err = git(t, env, wt, "push", "--force", authURL(b, ReplicaUser, testToken), "main")
	if err == nil || !strings.Contains(out, "protected ref refs/heads/main") {
		t.Errorf("force push to main on the peer as replica: err=%v\n%s", err, out)
	}
}

func TestServer_Push_AnonymousRefused(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	wt := workTree(t, env)
	for name, url := range map[string]string{
		"anonymous":   a.url() + "/blog.git",
		"wrong token": authURL(a, "alice", "wrong"),
	} {
		out, err := git(t, env, wt, "push", url, "main")
		if err == nil {
			t.Errorf("%s push succeeded:\n%s", name, out)
		} else if !strings.Contains(out, "Authentication failed") && !strings.Contains(out, "could not read Username") {
			t.Errorf("%s push: unexpected output:\n%s", name, out)
		}
	}
	resp, err := http.Get(a.url() + "/blog.git/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("anonymous receive-pack advertisement = %d %q, want 401 Basic", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if a.revParse(t, "refs/heads/main") != "" || b.revParse(t, "refs/heads/main") != "" {
		t.Error("unauthenticated push changed a repository")
	}
}

func TestServer_Handler_ReadsAndPackages(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, func(c *Config) { c.AnonymousRead = false })
	if err := os.MkdirAll(a.s.cfg.Packages, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a.s.cfg.Packages, "hello_1.0_all.deb"), []byte("deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(a.s.cfg.Packages), "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	wt := workTree(t, env)
	mustGit(t, env, wt, "push", "--quiet", authURL(a, "alice", testToken), "main")

	// Reads need the token on this server.
	dst := filepath.Join(t.TempDir(), "c1")
	if out, err := git(t, env, "", "clone", "--quiet", a.url()+"/blog.git", dst); err == nil {
		t.Errorf("anonymous clone with AnonymousRead=false succeeded:\n%s", out)
	}
	dst = filepath.Join(t.TempDir(), "c2")
	mustGit(t, env, "", "clone", "--quiet", authURL(a, "reader", testToken), dst)

	get := func(path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", a.url()+path, nil)
		if auth {
			req.SetBasicAuth("reader", testToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/packages/hello_1.0_all.deb", false); code != 401 {
		t.Errorf("anonymous package download = %d, want 401", code)
	}
	if code, body := get("/packages/hello_1.0_all.deb", true); code != 200 || body != "deb" {
		t.Errorf("package download = %d %q", code, body)
	}
	if code, _ := get("/packages/%2e%2e/secret", true); code != 400 {
		t.Errorf("package traversal = %d, want 400", code)
	}
	if code, _ := get("/blog.git/../../secret", true); code != 400 {
		t.Errorf("git traversal = %d, want 400", code)
	}
	if code, body := get("/healthz", false); code != 200 || body != "ok" {
		t.Errorf("healthz = %d %q", code, body)
	}
}

func TestNew_RejectsBadConfig(t *testing.T) {
	requireGit(t)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no repos", func(c *Config) { c.Repos = "" }},
		{"no token", func(c *Config) { c.Token = "" }},
		{"short protect", func(c *Config) { c.Protect = []string{"main"} }},
		{"bad init", func(c *Config) { c.Init = []string{"../x.git"} }},
		{"bad peer", func(c *Config) { c.Peers = []string{"http://u:p@127.0.0.1:1"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Listen: "127.0.0.1:0", Repos: t.TempDir(), Token: "t"}
			tc.mod(&cfg)
			if s, err := New(cfg); err == nil {
				s.ln.Close()
				os.RemoveAll(s.home)
				t.Fatal("New succeeded")
			}
		})
	}
}

func TestServer_Push_RefusedWhenPeerDiverged(t *testing.T) {
	requireGit(t)
	env := gitEnv(t)
	b := startNode(t, nil, nil)
	a := startNode(t, []string{b.url()}, nil)
	wt := workTree(t, env)
	// An unprotected branch, so that only the replication's fast-forward
	// rule (not the protected-ref check) is at work.
	mustGit(t, env, wt, "push", "--quiet", authURL(a, "alice", testToken), "main:refs/heads/topic")
	x := a.revParse(t, "refs/heads/topic")

	// The peer's main moves elsewhere (as after concurrent pushes through
	// two nodes): a commit on top of x that a does not have.
	bdir := filepath.Join(b.repos, "blog.git")
	tree := mustGit(t, env, "", "--git-dir", bdir, "rev-parse", x+"^{tree}")
	q := mustGit(t, env, "", "--git-dir", bdir, "commit-tree", "-p", x, "-m", "elsewhere", tree)
	mustGit(t, env, "", "--git-dir", bdir, "update-ref", "refs/heads/topic", q, x)

	commit(t, env, wt, "index.html", "<h1>v2</h1>")
	out, err := git(t, env, wt, "push", authURL(a, "alice", testToken), "main:refs/heads/topic")
	if err == nil || !strings.Contains(out, "hactl: push refused") {
		t.Fatalf("push over a diverged peer: err=%v\n%s", err, out)
	}
	if got := b.revParse(t, "refs/heads/topic"); got != q {
		t.Errorf("peer main = %s, want its own %s kept", got, q)
	}
	if got := a.revParse(t, "refs/heads/topic"); got != x {
		t.Errorf("a main = %s, want unchanged %s", got, x)
	}
}

// TestServer_Init_RepairsRestoredRepository: a repository restored from a
// replica or a backup lacks its empty directories (data replication does
// not carry them); --init must make it a repository git recognises again,
// without touching what is there.
func TestServer_Init_RepairsRestoredRepository(t *testing.T) {
	requireGit(t)
	dir := filepath.Join(t.TempDir(), "repos")
	repo := filepath.Join(dir, "blog.git")
	cfg := Config{Listen: "127.0.0.1:0", Repos: dir, Init: []string{"blog.git"}, Token: testToken}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close()
	os.RemoveAll(s.home)
	if err := os.WriteFile(filepath.Join(repo, "description"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What a restore leaves: files only, every empty directory gone.
	for _, d := range []string{"refs/heads", "refs/tags", "refs", "objects/info", "objects/pack", "objects", "branches", "info", "hooks"} {
		if err := os.RemoveAll(filepath.Join(repo, d)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("git", "--git-dir", repo, "rev-parse", "--git-dir").CombinedOutput(); err == nil {
		t.Fatalf("git still accepts the stripped repository (%s); the test does not reproduce a restore", out)
	}
	s2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s2.ln.Close()
	os.RemoveAll(s2.home)
	if out, err := exec.Command("git", "--git-dir", repo, "rev-parse", "--git-dir").CombinedOutput(); err != nil {
		t.Fatalf("after --init the repository is still broken: %v: %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(repo, "description")); string(b) != "kept\n" {
		t.Errorf("init overwrote an existing file: description = %q", b)
	}
}
