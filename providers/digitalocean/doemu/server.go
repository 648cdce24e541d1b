package doemu

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config tunes the emulator. The zero value is usable: any non-empty bearer
// token is accepted, everything completes at once, nothing is hidden.
type Config struct {
	// Token, when set, is the only bearer token accepted (401 otherwise).
	Token string
	// ReadOnlyToken, when set, is accepted for GET requests and answered with
	// 403 forbidden for anything else (a token without the write scope).
	ReadOnlyToken string

	// Now is the emulator's clock (default time.Now).
	Now func() time.Time

	// BootDelay is how long a created droplet stays "new" before it can
	// become "active" (it also waits for Backend.Boot to return).
	BootDelay time.Duration
	// ActionDelay is how long a droplet or reserved-IP action stays
	// in-progress, by action type ("power_off", "assign_ip", ...); absent
	// types complete synchronously.
	ActionDelay map[string]time.Duration
	// StatusLag is how long after an action completes the droplet's status
	// still shows the old value.
	StatusLag time.Duration
	// HideNewFor keeps a created droplet out of List/ListByTag/ListByName for
	// this long after the 202, while GET by id already works.
	HideNewFor time.Duration
	// GetNotFoundFor makes GET /v2/droplets/{id} answer 404 for this long
	// after the create (DO does this at times).
	GetNotFoundFor time.Duration
	// KeepDeletedFor keeps a deleted droplet in lists (status "archive") for
	// this long; GET by id is 404 at once.
	KeepDeletedFor time.Duration
	// RedundantActions selects what power_off on an "off" droplet (and
	// power_on on an "active" one) does: false = 201 and an action that
	// completes at once, true = 422.
	RedundantActions422 bool

	// DropletLimit and ReservedIPLimit are the account limits (defaults 25, 3).
	DropletLimit    int
	ReservedIPLimit int
	// HourlyLimit and MinuteLimit are the per-token rate limits (defaults
	// 5000 and 250).
	HourlyLimit int
	MinuteLimit int

	// IPv4Base is the first public address handed to droplets when the
	// Backend does not choose one (default 203.0.113.10); ReservedIPBase is
	// the first reserved IP (default 192.0.2.10).
	IPv4Base       netip.Addr
	ReservedIPBase netip.Addr

	// Backend decides what a droplet is (default NopBackend).
	Backend Backend
	// Logger receives request and lifecycle logs (default: discard).
	Logger *slog.Logger
}

// Request is one entry of the request log. It never holds the token.
type Request struct {
	Time     time.Time
	Method   string
	Path     string
	Query    string
	Body     string
	Status   int
	Fault    string // which fault answered, "" for a normal answer
	RateWait bool   // answered 429 because a rate-limit window was open
}

// Server is the emulator. Create it with New; it is safe for concurrent use.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu          sync.Mutex
	st          *state
	faults      []*Fault
	log         []Request
	hits        map[string][]time.Time // token → request times (sliding hour)
	limited     map[string]time.Time   // token → 429 until
	limitedBurs map[string]bool        // token → the open window is a burst one
	failActions map[string]int         // action type → next N end errored
	stickNew    int                    // next N creates stay "new" forever
	failCreate  int                    // next N creates end errored and vanish
	shutdownNop int                    // next N shutdowns complete but leave the droplet active
}

// New returns an emulator with the default catalogue (regions, sizes,
// distribution images) and an empty account.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DropletLimit == 0 {
		cfg.DropletLimit = 25
	}
	if cfg.ReservedIPLimit == 0 {
		cfg.ReservedIPLimit = 3
	}
	if cfg.HourlyLimit == 0 {
		cfg.HourlyLimit = 5000
	}
	if cfg.MinuteLimit == 0 {
		cfg.MinuteLimit = 250
	}
	if !cfg.IPv4Base.IsValid() {
		cfg.IPv4Base = netip.MustParseAddr("203.0.113.10")
	}
	if !cfg.ReservedIPBase.IsValid() {
		cfg.ReservedIPBase = netip.MustParseAddr("192.0.2.10")
	}
	if cfg.Backend == nil {
		cfg.Backend = NopBackend{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:         cfg,
		st:          newState(cfg),
		hits:        map[string][]time.Time{},
		limited:     map[string]time.Time{},
		limitedBurs: map[string]bool{},
		failActions: map[string]int{},
	}
	s.routes()
	return s
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ResetLog empties the request log.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// FailActions makes the next n actions of type typ ("power_off", "shutdown",
// "power_on", "snapshot", "assign_ip", "create") end "errored". For create,
// the droplet then vanishes (failed placement: GET gives 404).
func (s *Server) FailActions(typ string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if typ == "create" {
		s.failCreate += n
		return
	}
	s.failActions[typ] += n
}

// StickNew makes the next n created droplets stay "new" forever, with their
// create action in-progress (every other action on them gets 422).
func (s *Server) StickNew(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stickNew += n
}

// IgnoreShutdown makes the next n shutdown actions complete while the
// droplet stays active (graceful shutdown is best effort on DO).
func (s *Server) IgnoreShutdown(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdownNop += n
}

// SetHideNewFor changes Config.HideNewFor for droplets created from now on.
func (s *Server) SetHideNewFor(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.cfg.HideNewFor = d
}

// SetDropletLimit changes the account's droplet limit.
func (s *Server) SetDropletLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.cfg.DropletLimit = n
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	var body []byte
	if r.Body != nil {
		body, _ = readAllLimit(r.Body, 1<<20)
	}
	r.Body = http.NoBody
	entry := Request{Time: now, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body)}

	if strings.HasPrefix(r.URL.Path, "/_emu/") {
		s.serveAdmin(w, r, body)
		return
	}

	tok, ok := bearer(r)
	status, errID, msg := 0, "", ""
	switch {
	case !ok || (s.cfg.Token != "" && tok != s.cfg.Token && tok != s.cfg.ReadOnlyToken):
		status, errID, msg = http.StatusUnauthorized, "unauthorized", "Unable to authenticate you."
	case s.cfg.ReadOnlyToken != "" && tok == s.cfg.ReadOnlyToken && r.Method != http.MethodGet && r.Method != http.MethodHead:
		status, errID, msg = http.StatusForbidden, "forbidden", "You do not have access for the attempted action."
	}

	s.mu.Lock()
	hdr := s.rateLimit(tok, now, &entry)
	if status == 0 && entry.RateWait {
		status, errID, msg = http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded."
	}
	var f *Fault
	if status == 0 {
		f = s.matchFault(r)
		if f != nil {
			entry.Fault = f.String()
			if f.Status == http.StatusTooManyRequests {
				reset := f.ResetAfter
				if reset <= 0 {
					reset = time.Second
				}
				s.limited[tok] = now.Add(reset)
				s.limitedBurs[tok] = f.RetryAfter > 0
				hdr = s.rateHeaders(tok, now)
			}
		}
	}
	s.mu.Unlock()

	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Request-Id", newRequestID())

	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}

	var resp response
	switch {
	case status != 0:
		resp = errResp(status, errID, msg)
	case f != nil && f.Status != 0 && !f.AfterCommit:
		resp = f.response()
	default:
		resp = s.dispatch(r, body)
		if f != nil && f.Status != 0 && f.AfterCommit {
			resp = f.response()
		}
	}
	entry.Status = resp.status
	s.mu.Lock()
	s.log = append(s.log, entry)
	s.mu.Unlock()

	if f != nil && f.Status == http.StatusTooManyRequests && f.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
	}
	if entry.RateWait {
		s.mu.Lock()
		until, burst := s.limited[tok], s.limitedBurs[tok]
		s.mu.Unlock()
		if burst {
			w.Header().Set("Retry-After", strconv.Itoa(int(until.Sub(now).Seconds()+0.999)))
		}
	}
	s.write(w, resp, f, r.Context().Done())
}

func (s *Server) write(w http.ResponseWriter, resp response, f *Fault, done <-chan struct{}) {
	switch {
	case f != nil && f.CloseConn:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusInternalServerError)
		return
	case f != nil && f.EmptyBody:
		w.WriteHeader(resp.status)
		return
	case f != nil && f.Truncate:
		w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
		w.WriteHeader(resp.status)
		w.Write(resp.body[:len(resp.body)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		if f.StallBody > 0 {
			t := time.NewTimer(f.StallBody)
			defer t.Stop()
			select {
			case <-t.C:
			case <-done:
			}
		}
		return
	}
	if resp.status == http.StatusNoContent {
		w.Header().Del("Content-Type")
		w.WriteHeader(resp.status)
		return
	}
	w.WriteHeader(resp.status)
	w.Write(resp.body)
}

// rateLimit counts the request against tok's sliding windows and decides
// whether a 429 window is open. Callers hold s.mu.
func (s *Server) rateLimit(tok string, now time.Time, e *Request) http.Header {
	hits := s.hits[tok]
	i := 0
	for i < len(hits) && now.Sub(hits[i]) >= time.Hour {
		i++
	}
	hits = append(hits[i:], now)
	s.hits[tok] = hits
	if until, ok := s.limited[tok]; ok {
		if now.Before(until) {
			e.RateWait = true
		} else {
			delete(s.limited, tok)
			delete(s.limitedBurs, tok)
		}
	}
	if !e.RateWait {
		minute := 0
		for _, h := range hits {
			if now.Sub(h) < time.Minute {
				minute++
			}
		}
		switch {
		case len(hits) > s.cfg.HourlyLimit:
			s.limited[tok] = hits[0].Add(time.Hour)
			e.RateWait = true
		case minute > s.cfg.MinuteLimit:
			s.limited[tok] = now.Add(time.Minute)
			s.limitedBurs[tok] = true
			e.RateWait = true
		}
	}
	return s.rateHeaders(tok, now)
}

func (s *Server) rateHeaders(tok string, now time.Time) http.Header {
	hits := s.hits[tok]
	remaining := s.cfg.HourlyLimit - len(hits)
	reset := now.Add(time.Hour)
	if len(hits) > 0 {
		reset = hits[0].Add(time.Hour)
	}
	if until, ok := s.limited[tok]; ok && now.Before(until) {
		remaining = 0
		reset = until
	}
	if remaining < 0 {
		remaining = 0
	}
	h := http.Header{}
	h.Set("Ratelimit-Limit", strconv.Itoa(s.cfg.HourlyLimit))
	h.Set("Ratelimit-Remaining", strconv.Itoa(remaining))
	// Round up so a client waiting until the advertised second never
	// arrives before the window closes.
	sec := reset.Unix()
	if reset.Nanosecond() > 0 {
		sec++
	}
	h.Set("Ratelimit-Reset", strconv.FormatInt(sec, 10))
	return h
}

func bearer(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(a, "Bearer ")
	tok = strings.TrimSpace(tok)
	return tok, ok && tok != ""
}

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// response is a fully rendered answer, so faults can replace or cut it.
type response struct {
	status int
	body   []byte
}

func jsonResp(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		return errResp(500, "server_error", "emulator: "+err.Error())
	}
	return response{status: status, body: append(b, '\n')}
}

func errResp(status int, id, msg string) response {
	return jsonResp(status, map[string]string{"id": id, "message": msg, "request_id": newRequestID()})
}

func notFound() response {
	return errResp(404, "not_found", "The resource you were accessing could not be found.")
}

func unprocessable(msg string) response { return errResp(422, "unprocessable_entity", msg) }

func badRequest(msg string) response { return errResp(400, "bad_request", msg) }

func readAllLimit(r interface{ Read([]byte) (int, error) }, n int) ([]byte, error) {
	var buf bytes.Buffer
	b := make([]byte, 32*1024)
	for buf.Len() < n {
		k, err := r.Read(b)
		buf.Write(b[:k])
		if err != nil {
			break
		}
	}
	return buf.Bytes(), nil
}

func (s *Server) logf(msg string, args ...any) { s.cfg.Logger.Info(msg, args...) }
