package lb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/roles/serve"
)

// Config configures a Balancer. Zero durations and counts take the defaults
// of DefaultConfig.
type Config struct {
	// Listen is the TCP address to listen on (the role's VIP and port).
	// Ignored when Listener is set.
	Listen string
	// Listener, when set, is used instead of Listen; the Balancer owns it.
	Listener net.Listener
	// Backends are URL-or-FILE specs (see serve.List): static backend base
	// URLs and/or JSON files {"backends": [...]} re-read when they change.
	Backends []string
	// CheckInterval is the period of active health checks (GET /healthz on
	// every backend) and of backend-file re-reads.
	CheckInterval time.Duration
	// CheckTimeout bounds one health check.
	CheckTimeout time.Duration
	// Fall is the number of consecutive failed checks that eject a backend.
	Fall int
	// Rise is the number of consecutive successful checks that readmit it.
	Rise int
	// CoolDown is how long a backend stays out after a proxied request to it
	// failed to connect or answered 5xx (passive ejection).
	CoolDown time.Duration
	// Log receives ejections, readmissions and proxy errors; nil discards.
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		CheckInterval: 2 * time.Second, // a dead backend is out within Fall×2 s even without traffic
		CheckTimeout:  time.Second,     // a web node that needs longer for /healthz is not healthy
		Fall:          2,               // one lost check is noise, two are a pattern
		Rise:          2,               // avoid flapping a backend that answers every other check
		CoolDown:      10 * time.Second,
	}
}

// Balancer is the load balancer. Create it with New and start it with Run.
type Balancer struct {
	cfg       Config
	ln        net.Listener
	log       *slog.Logger
	list      *serve.List
	pool      *pool
	transport *http.Transport
	checker   *http.Client
}

var _ http.RoundTripper = (*Balancer)(nil)

// New validates cfg, reads the backend list once and opens the listener.
func New(cfg Config) (*Balancer, error) {
	def := DefaultConfig()
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = def.CheckInterval
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = def.CheckTimeout
	}
	if cfg.Fall <= 0 {
		cfg.Fall = def.Fall
	}
	if cfg.Rise <= 0 {
		cfg.Rise = def.Rise
	}
	if cfg.CoolDown <= 0 {
		cfg.CoolDown = def.CoolDown
	}
	if len(cfg.Backends) == 0 {
		return nil, errors.New("lb: at least one backend URL or backends file is required")
	}
	list, err := serve.NewList(cfg.Backends)
	if err != nil {
		return nil, fmt.Errorf("lb: backends: %w", err)
	}
	b := &Balancer{
		cfg:  cfg,
		log:  serve.Logger(cfg.Log).With("service", "lb"),
		list: list,
		pool: &pool{fall: cfg.Fall, rise: cfg.Rise, coolDown: cfg.CoolDown, now: time.Now},
	}
	b.transport = &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	b.checker = &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		Timeout:   cfg.CheckTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	b.reload()
	ln := cfg.Listener
	if ln == nil {
		if ln, err = serve.Listen(cfg.Listen); err != nil {
			return nil, fmt.Errorf("lb: %w", err)
		}
	}
	b.ln = ln
	return b, nil
}

// Addr is the address the balancer listens on.
func (b *Balancer) Addr() net.Addr { return b.ln.Addr() }

// Status returns a snapshot of the backends' health.
func (b *Balancer) Status() Status { return b.pool.status() }

// Run proxies until ctx is done, then shuts down gracefully and returns nil.
// It owns the health-check goroutine and waits for it before returning.
func (b *Balancer) Run(ctx context.Context) error {
	b.log.Info("serving", "addr", b.ln.Addr().String(), "backends", len(b.pool.all()))
	defer b.log.Info("stopped", "addr", b.ln.Addr().String())
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.checkLoop(cctx)
	}()
	err := serve.Serve(ctx, &http.Server{Handler: b.Handler()}, b.ln, b.log)
	cancel()
	wg.Wait()
	b.transport.CloseIdleConnections()
	return err
}

// Handler returns the balancer's HTTP handler: /healthz and /lb/status are
// answered locally, everything else is proxied.
func (b *Balancer) Handler() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport:    b,
		ErrorLog:     slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		ErrorHandler: b.proxyError,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			b.healthz(w, r)
		case "/lb/status":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(b.pool.status())
		default:
			rp.ServeHTTP(w, r)
		}
	})
}

func (b *Balancer) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if n := b.pool.status().Healthy; n == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "no healthy backend")
		return
	}
	fmt.Fprint(w, "ok")
}

var errNoBackends = errors.New("no backends configured")

func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	code := http.StatusBadGateway
	if errors.Is(err, errNoBackends) {
		code = http.StatusServiceUnavailable
	}
	b.log.Warn("proxy request failed", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	http.Error(w, http.StatusText(code), code)
}

// retryable reports whether req may be sent to another backend after a
// failure: an idempotent method and no body that the first attempt could
// have consumed.
func retryable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	return req.Body == nil || req.Body == http.NoBody
}

// RoundTrip sends req to a backend. A connection error or a 5xx answer
// ejects the backend for the cool-down; a retryable request then goes to the
// next candidate, until one answers below 500 or every candidate was tried.
// It is called by the reverse proxy for every request, concurrently.
func (b *Balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	cands := b.pool.candidates()
	if len(cands) == 0 {
		return nil, errNoBackends
	}
	again := retryable(req)
	var lastErr error
	for i, be := range cands {
		if i > 0 && !again {
			break
		}
		out := req.Clone(req.Context())
		out.URL.Scheme = be.url.Scheme
		out.URL.Host = be.url.Host
		if p := strings.TrimSuffix(be.url.Path, "/"); p != "" {
			out.URL.Path = p + out.URL.Path
			out.URL.RawPath = ""
		}
		resp, err := b.transport.RoundTrip(out)
		if err != nil {
			if req.Context().Err() != nil {
				return nil, err // the client gave up; not the backend's fault
			}
			b.eject(be, err.Error())
			lastErr = fmt.Errorf("backend %s: %w", be.raw, err)
			continue
		}
		if resp.StatusCode >= 500 {
			b.eject(be, fmt.Sprintf("answered %s", resp.Status))
			if again && i < len(cands)-1 {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				continue
			}
			return resp, nil
		}
		b.pool.passiveOK(be)
		return resp, nil
	}
	return nil, lastErr
}

func (b *Balancer) eject(be *backend, reason string) {
	if b.pool.passiveFail(be, reason) {
		b.log.Warn("backend ejected passively", "backend", be.raw, "reason", reason, "cool_down", b.cfg.CoolDown)
	}
}

// reload re-reads the backend list and syncs the pool.
func (b *Balancer) reload() bool {
	targets, err := b.list.Targets()
	if err != nil {
		b.log.Error("read backends, keeping the last good list", "err", err)
	}
	added, removed := b.pool.sync(targets)
	for _, t := range added {
		b.log.Info("backend added", "backend", t)
	}
	for _, t := range removed {
		b.log.Info("backend removed", "backend", t)
	}
	return len(added) > 0 || len(removed) > 0
}

func (b *Balancer) checkLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.CheckInterval)
	defer t.Stop()
	for {
		b.reload()
		b.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkAll checks every backend concurrently and waits for all checks.
func (b *Balancer) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, be := range b.pool.all() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := b.check(ctx, be)
			if ctx.Err() != nil {
				return
			}
			switch b.pool.checked(be, err) {
			case "ejected":
				b.log.Warn("backend ejected by health check", "backend", be.raw, "err", err)
			case "readmitted":
				b.log.Info("backend readmitted by health check", "backend", be.raw)
			}
		}()
	}
	wg.Wait()
}

func (b *Balancer) check(ctx context.Context, be *backend) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, be.raw+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := b.checker.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check answered %s", resp.Status)
	}
	return nil
}
