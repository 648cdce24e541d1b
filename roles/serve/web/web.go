package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/hactl/hactl/roles/serve"
)

// Config configures a Server.
type Config struct {
	// Root is the content directory; it must hold index.html to be healthy.
	Root string
	// Listen is the TCP address to listen on, e.g. "127.0.1.1:8080".
	// Ignored when Listener is set.
	Listen string
	// Listener, when set, is used instead of listening on Listen (tests,
	// socket activation). The Server takes ownership of it.
	Listener net.Listener
	// Log receives request refusals and lifecycle events; nil discards.
	Log *slog.Logger
}

// Server serves static content. Create it with New and start it with Run.
type Server struct {
	cfg Config
	ln  net.Listener
	log *slog.Logger
}

// New validates cfg and opens the listener, so that Addr is known before Run.
func New(cfg Config) (*Server, error) {
	if cfg.Root == "" {
		return nil, errors.New("web: content root is required")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("web: content root: %w", err)
	}
	cfg.Root = root
	ln := cfg.Listener
	if ln == nil {
		if ln, err = serve.Listen(cfg.Listen); err != nil {
			return nil, fmt.Errorf("web: %w", err)
		}
	}
	return &Server{cfg: cfg, ln: ln, log: serve.Logger(cfg.Log).With("service", "web")}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handler returns the HTTP handler: /healthz and the static content.
func (s *Server) Handler() http.Handler {
	st := &serve.Static{Dir: s.cfg.Root, Log: s.log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("/", st)
	// The mux would answer paths with ".." segments with a redirect to the
	// cleaned path; refuse them instead, before the mux sees them.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			mux.ServeHTTP(w, r)
			return
		}
		st.ServeHTTP(w, r)
	})
}

// Healthy reports whether the content root exists and holds index.html.
func (s *Server) Healthy() error {
	st, err := os.Stat(filepath.Join(s.cfg.Root, "index.html"))
	if err != nil {
		return fmt.Errorf("content: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("content: %s/index.html is not a regular file", s.cfg.Root)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.Healthy(); err != nil {
		s.log.Debug("unhealthy", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "unhealthy:", err)
		return
	}
	fmt.Fprint(w, "ok")
}

// Run serves until ctx is done, then shuts down gracefully and returns nil.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("serving", "addr", s.ln.Addr().String(), "root", s.cfg.Root)
	defer s.log.Info("stopped", "addr", s.ln.Addr().String())
	return serve.Serve(ctx, &http.Server{Handler: s.Handler()}, s.ln, s.log)
}
