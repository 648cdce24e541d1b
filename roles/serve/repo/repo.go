package repo

import (
	"context"
	"encoding/base64"
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
	"strconv"
	"strings"
	"time"

	"github.com/hactl/hactl/roles/serve"
)

// ReplicaUser is the basic-auth user name a server uses when it pushes a
// replica to its peers. A push by this user skips the replication step of
// the hook (it is the replication) but not the protected-ref checks.
const ReplicaUser = "hactl-replica"

// Config configures a Server. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// Listen is the HTTP address; ignored when Listener is set.
	Listen   string
	Listener net.Listener
	// Repos is the directory holding the bare repositories, served at
	// /<path below Repos>, e.g. http://host/blog.git.
	Repos string
	// Packages, when set, is a directory served read-only at /packages/.
	Packages string
	// Init names repositories (paths below Repos) to create, bare, with
	// branch main, when they do not exist yet.
	Init []string
	// Peers are URL-or-FILE specs (see serve.List) of the other repository
	// servers, e.g. http://127.0.3.2:8080.
	Peers []string
	// MinAcks is how many peers must accept a push before it succeeds.
	MinAcks int
	// PushTimeout bounds one replication push to one peer.
	PushTimeout time.Duration
	// Protect lists refs that may be neither deleted nor force-updated.
	Protect []string
	// Token is the cluster token: the password pushes must present, and
	// the one this server presents to its peers. Required.
	Token string
	// AnonymousRead lets clients clone, fetch and download packages
	// without the token.
	AnonymousRead bool
	// MaxBody bounds a chunked request body (a large push), which is
	// spooled to disk before git sees it.
	MaxBody int64
	// Git is the git executable; default: "git" from PATH.
	Git string
	// Log receives refusals and pushes; nil discards. The token is never
	// logged.
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MinAcks:       1,                           // two replicas: this node and one peer
		PushTimeout:   30 * time.Second,            // per peer; a hung peer costs at most this
		Protect:       []string{"refs/heads/main"}, // the branch the agents deploy from
		AnonymousRead: true,                        // the blog and its packages are public
		MaxBody:       1 << 30,                     // 1 GiB: a push larger than that is not a blog's
	}
}

// Server serves git and packages. Create it with New and start it with Run.
type Server struct {
	cfg     Config
	ln      net.Listener
	log     *slog.Logger
	peers   *serve.List
	home    string // HOME for git and parent of hooks: a directory this server owns
	hooks   string
	gitPath string
}

// New validates cfg, creates the repositories to initialise, installs the
// hook and opens the listener.
func New(cfg Config) (*Server, error) {
	def := DefaultConfig()
	if cfg.MinAcks <= 0 {
		cfg.MinAcks = def.MinAcks
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = def.PushTimeout
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = def.MaxBody
	}
	if cfg.Protect == nil {
		cfg.Protect = def.Protect
	}
	if cfg.Repos == "" {
		return nil, errors.New("repo: repositories directory is required")
	}
	if cfg.Token == "" {
		return nil, errors.New("repo: a cluster token is required (pushes and replication)")
	}
	for _, p := range cfg.Protect {
		if !strings.HasPrefix(p, "refs/") || strings.ContainsAny(p, " \t\n") {
			return nil, fmt.Errorf("repo: protected ref %q: want a full ref name such as refs/heads/main", p)
		}
	}
	repos, err := filepath.Abs(cfg.Repos)
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	cfg.Repos = repos
	if err := os.MkdirAll(cfg.Repos, 0o755); err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	git := cfg.Git
	if git == "" {
		git = "git"
	}
	gitPath, err := exec.LookPath(git)
	if err != nil {
		return nil, fmt.Errorf("repo: git executable: %w", err)
	}
	peers, err := serve.NewList(cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("repo: peers: %w", err)
	}
	home, err := os.MkdirTemp("", "hactl-repo-")
	if err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	s, err := newServer(cfg, home, peers, gitPath)
	if err != nil {
		os.RemoveAll(home)
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config, home string, peers *serve.List, gitPath string) (*Server, error) {
	s := &Server{cfg: cfg, log: serve.Logger(cfg.Log).With("service", "repo"), peers: peers, gitPath: gitPath, home: home}
	var err error
	s.hooks = filepath.Join(s.home, "hooks")
	if err := os.Mkdir(s.hooks, 0o700); err != nil {
		return nil, fmt.Errorf("repo: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.hooks, "pre-receive"), []byte(preReceive), 0o700); err != nil {
		return nil, fmt.Errorf("repo: install hook: %w", err)
	}
	for _, name := range cfg.Init {
		if err := s.initRepo(name); err != nil {
			return nil, err
		}
	}
	if s.ln = cfg.Listener; s.ln == nil {
		if s.ln, err = serve.Listen(cfg.Listen); err != nil {
			return nil, fmt.Errorf("repo: %w", err)
		}
	}
	return s, nil
}

func (s *Server) initRepo(name string) error {
	rel, ok := serve.CleanRequestPath(name)
	if !ok || rel == "." {
		return fmt.Errorf("repo: init %q: not a path below the repositories directory", name)
	}
	dir := filepath.Join(s.cfg.Repos, filepath.FromSlash(rel))
	_, statErr := os.Stat(filepath.Join(dir, "HEAD"))
	// git init on an existing repository is safe (it overwrites nothing)
	// and recreates what is missing: a repository restored from a replica
	// or a backup comes without its empty directories (refs/heads,
	// objects/pack...), and git does not recognise it without them.
	out, err := exec.Command(s.gitPath, "init", "--quiet", "--bare", "--initial-branch=main", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("repo: init %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	if statErr != nil {
		s.log.Info("repository created", "repo", rel)
	}
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done, then shuts down gracefully, removes its
// hook directory and returns.
func (s *Server) Run(ctx context.Context) error {
	defer os.RemoveAll(s.home)
	s.log.Info("serving", "addr", s.ln.Addr().String(), "repos", s.cfg.Repos, "packages", s.cfg.Packages)
	defer s.log.Info("stopped", "addr", s.ln.Addr().String())
	return serve.Serve(ctx, &http.Server{Handler: s.Handler()}, s.ln, s.log)
}

// Handler returns the HTTP handler: /healthz, /packages/ and git.
func (s *Server) Handler() http.Handler {
	var pkgs http.Handler = http.NotFoundHandler()
	if s.cfg.Packages != "" {
		pkgs = &serve.Static{Dir: s.cfg.Packages, Prefix: "/packages/", Log: s.log}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			s.healthz(w)
		case r.URL.Path == "/packages" || strings.HasPrefix(r.URL.Path, "/packages/"):
			if !s.cfg.AnonymousRead && !s.authorized(r) {
				s.unauthorized(w, r, "read")
				return
			}
			pkgs.ServeHTTP(w, r)
		default:
			s.serveGit(w, r)
		}
	})
}

func (s *Server) healthz(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	if st, err := os.Stat(s.cfg.Repos); err != nil || !st.IsDir() {
		http.Error(w, "repositories directory missing", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprint(w, "ok")
}

func (s *Server) authorized(r *http.Request) bool {
	_, pass, ok := r.BasicAuth()
	return ok && serve.TokenEqual(pass, s.cfg.Token)
}

// unauthorized answers 401. A request without credentials is git's normal
// first try before it sends them, so only bad credentials log a warning.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, what string) {
	lvl := slog.LevelInfo
	if _, _, ok := r.BasicAuth(); ok {
		lvl = slog.LevelWarn
	}
	s.log.Log(r.Context(), lvl, "refused unauthenticated "+what, "path", r.URL.Path, "remote", r.RemoteAddr)
	w.Header().Set("WWW-Authenticate", `Basic realm="hactl git", charset="UTF-8"`)
	http.Error(w, "authentication required", http.StatusUnauthorized)
}

func isPush(r *http.Request) bool {
	return r.URL.Query().Get("service") == "git-receive-pack" || strings.HasSuffix(r.URL.Path, "/git-receive-pack")
}

func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	if _, ok := serve.CleanRequestPath(r.URL.Path); !ok {
		s.log.Warn("refused request path", "path", r.URL.EscapedPath(), "remote", r.RemoteAddr)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	push := isPush(r)
	user, _, hasAuth := r.BasicAuth()
	authed := s.authorized(r)
	switch {
	case push && !authed, hasAuth && !authed, !s.cfg.AnonymousRead && !authed:
		what := "read"
		if push {
			what = "push"
		}
		s.unauthorized(w, r, what)
		return
	}
	if user == "" {
		user = "hactl"
	}
	cfgs := [][2]string{{"core.hooksPath", s.hooks}, {"http.receivepack", strconv.FormatBool(authed)}, {"uploadpack.allowFilter", "true"}}
	env := []string{
		"GIT_PROJECT_ROOT=" + s.cfg.Repos,
		"GIT_HTTP_EXPORT_ALL=1",
		"HOME=" + s.home,
		"GIT_CONFIG_COUNT=" + strconv.Itoa(len(cfgs)),
	}
	for i, kv := range cfgs {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	if authed {
		env = append(env, "REMOTE_USER="+user)
	}
	if push && strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
		peers, err := s.peers.Targets()
		if err != nil {
			s.log.Error("read peers", "err", err)
		}
		repo := strings.TrimPrefix(strings.TrimSuffix(r.URL.Path, "/git-receive-pack"), "/")
		replica := user == ReplicaUser
		env = append(env,
			"HACTL_PROTECT="+strings.Join(s.cfg.Protect, " "),
			"HACTL_PEERS="+strings.Join(peers, " "),
			"HACTL_REPO="+repo,
			"HACTL_MIN_ACKS="+strconv.Itoa(s.cfg.MinAcks),
			"HACTL_PEER_AUTH="+base64.StdEncoding.EncodeToString([]byte(ReplicaUser+":"+s.cfg.Token)),
			"HACTL_PUSH_TIMEOUT="+strconv.Itoa(max(1, int(s.cfg.PushTimeout.Seconds()+0.5))),
		)
		if replica {
			env = append(env, "HACTL_REPLICA=1")
		}
		s.log.Info("push", "repo", repo, "remote", r.RemoteAddr, "replica", replica, "peers", len(peers))
	}
	if len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked" {
		// git sends pushes above http.postBuffer chunked, and CGI needs a
		// CONTENT_LENGTH: spool the body to a file first.
		body, n, err := s.spool(w, r)
		if err != nil {
			s.log.Warn("refused request body", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		defer body.Close()
		r = r.Clone(r.Context())
		r.Body, r.ContentLength, r.TransferEncoding = body, n, nil
	}
	h := &cgi.Handler{
		Path:   s.gitPath,
		Args:   []string{"http-backend"},
		Root:   "/",
		Dir:    s.cfg.Repos,
		Env:    env,
		Stderr: logWriter{s.log},
	}
	h.ServeHTTP(w, r)
}

// spool copies r's body, at most MaxBody bytes, to an unlinked temporary
// file and returns it rewound, with its size.
func (s *Server) spool(w http.ResponseWriter, r *http.Request) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.home, "body-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // gone when closed
	n, err := io.Copy(f, http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// logWriter turns git's stderr into log lines.
type logWriter struct{ l *slog.Logger }

func (lw logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line != "" {
			lw.l.Warn("git http-backend", "stderr", line)
		}
	}
	return len(p), nil
}
