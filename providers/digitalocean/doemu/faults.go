package doemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Fault is one programmed misbehaviour. It matches requests by method and
// path prefix and answers the next Times of them (0 means once, negative
// means every matching request until ClearFaults).
//
// What it does, combinable:
//   - Delay: wait before answering (the request context still ends it).
//   - Status 429: open a rate-limit window of ResetAfter (default 1 s): this
//     and every request of the same token until then get 429 with
//     ratelimit-remaining 0 and ratelimit-reset at the window's end; with
//     RetryAfter > 0 it is a burst 429 that also carries retry-after.
//   - Status other than 429: answer it with Body (default: the JSON error
//     envelope for that status). With AfterCommit the request is carried out
//     first (the droplet is created, the action started) and the answer is
//     replaced afterwards: the case that makes retried POSTs duplicate work.
//   - Truncate: send the headers and half of the body, then end the
//     connection (the client reads "unexpected EOF"); StallBody waits between
//     the two halves.
//   - EmptyBody: send the status and no body (godo then fails with "EOF").
//   - CloseConn: close the connection without answering.
type Fault struct {
	Method      string        `json:"method,omitempty"`
	Path        string        `json:"path,omitempty"`
	Times       int           `json:"times,omitempty"`
	Status      int           `json:"status,omitempty"`
	Body        string        `json:"body,omitempty"`
	AfterCommit bool          `json:"after_commit,omitempty"`
	ResetAfter  time.Duration `json:"reset_after,omitempty"`
	RetryAfter  int           `json:"retry_after,omitempty"`
	Delay       time.Duration `json:"delay,omitempty"`
	Truncate    bool          `json:"truncate,omitempty"`
	StallBody   time.Duration `json:"stall_body,omitempty"`
	EmptyBody   bool          `json:"empty_body,omitempty"`
	CloseConn   bool          `json:"close_conn,omitempty"`

	left int
}

// UnmarshalJSON accepts durations as Go duration strings ("2s") or as
// integers (nanoseconds), so the HTTP admin API is usable by hand.
func (f *Fault) UnmarshalJSON(b []byte) error {
	type plain Fault
	var aux struct {
		plain
		ResetAfter json.RawMessage `json:"reset_after,omitempty"`
		Delay      json.RawMessage `json:"delay,omitempty"`
		StallBody  json.RawMessage `json:"stall_body,omitempty"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*f = Fault(aux.plain)
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"reset_after", aux.ResetAfter, &f.ResetAfter}, {"delay", aux.Delay, &f.Delay}, {"stall_body", aux.StallBody, &f.StallBody}} {
		if len(d.raw) == 0 {
			continue
		}
		var s string
		if json.Unmarshal(d.raw, &s) == nil {
			v, err := time.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
			*d.dst = v
			continue
		}
		var n int64
		if err := json.Unmarshal(d.raw, &n); err != nil {
			return fmt.Errorf("%s: want a duration string or nanoseconds", d.name)
		}
		*d.dst = time.Duration(n)
	}
	return nil
}

// Inject programs a fault; faults are matched in the order injected.
func (s *Server) Inject(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.left = f.Times
	if f.left == 0 {
		f.left = 1
	}
	s.faults = append(s.faults, &f)
}

// ClearFaults removes every programmed fault and closes rate-limit windows.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	clear(s.limited)
	clear(s.limitedBurs)
}

// matchFault consumes and returns the first matching fault. Callers hold s.mu.
func (s *Server) matchFault(r *http.Request) *Fault {
	for i, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if f.Path != "" && !strings.HasPrefix(r.URL.Path, f.Path) {
			continue
		}
		if f.left > 0 {
			f.left--
			if f.left == 0 {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			}
		}
		c := *f
		return &c
	}
	return nil
}

func (f *Fault) response() response {
	if f.Body != "" {
		return response{status: f.Status, body: []byte(f.Body)}
	}
	switch f.Status {
	case 429:
		return errResp(429, "too_many_requests", "API Rate limit exceeded.")
	case 500:
		return errResp(500, "server_error", "Server Error")
	case 502, 504:
		return response{status: f.Status, body: []byte("<html><body><h1>" + http.StatusText(f.Status) + "</h1></body></html>\n")}
	case 503:
		return response{status: 503, body: []byte("Service Unavailable\n")}
	default:
		id := strings.ToLower(strings.ReplaceAll(http.StatusText(f.Status), " ", "_"))
		return errResp(f.Status, id, http.StatusText(f.Status))
	}
}

// String names the fault for the request log.
func (f *Fault) String() string {
	var parts []string
	if f.Status != 0 {
		parts = append(parts, fmt.Sprint(f.Status))
	}
	if f.AfterCommit {
		parts = append(parts, "after-commit")
	}
	if f.Delay > 0 {
		parts = append(parts, "delay="+f.Delay.String())
	}
	if f.Truncate {
		parts = append(parts, "truncate")
	}
	if f.EmptyBody {
		parts = append(parts, "empty")
	}
	if f.CloseConn {
		parts = append(parts, "close")
	}
	return strings.Join(parts, ",")
}

// serveAdmin is the HTTP face of fault injection, for hactl emulate users:
//
//	POST   /_emu/faults     body: a Fault as JSON (durations as "2s" or nanoseconds)
//	DELETE /_emu/faults     clear faults
//	POST   /_emu/knobs      {"fail_actions":{"power_off":1},"stick_new":1,"hide_new_for":"5s","droplet_limit":3}
//	GET    /_emu/requests   the request log
//
// It needs the same bearer token as the API.
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if tok, ok := bearer(r); !ok || (s.cfg.Token != "" && tok != s.cfg.Token) {
		s.write(w, errResp(401, "unauthorized", "Unable to authenticate you."), nil, nil)
		return
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /_emu/faults":
		var f Fault
		if err := json.Unmarshal(body, &f); err != nil {
			s.write(w, badRequest("fault: "+err.Error()), nil, nil)
			return
		}
		s.Inject(f)
		s.write(w, response{status: 204}, nil, nil)
	case "DELETE /_emu/faults":
		s.ClearFaults()
		s.write(w, response{status: 204}, nil, nil)
	case "POST /_emu/knobs":
		var k struct {
			FailActions  map[string]int `json:"fail_actions"`
			StickNew     int            `json:"stick_new"`
			HideNewFor   string         `json:"hide_new_for"`
			DropletLimit int            `json:"droplet_limit"`
		}
		if err := json.Unmarshal(body, &k); err != nil {
			s.write(w, badRequest("knobs: "+err.Error()), nil, nil)
			return
		}
		for t, n := range k.FailActions {
			s.FailActions(t, n)
		}
		if k.StickNew > 0 {
			s.StickNew(k.StickNew)
		}
		if k.HideNewFor != "" {
			d, err := time.ParseDuration(k.HideNewFor)
			if err != nil {
				s.write(w, badRequest("knobs: hide_new_for: "+err.Error()), nil, nil)
				return
			}
			s.SetHideNewFor(d)
		}
		if k.DropletLimit > 0 {
			s.SetDropletLimit(k.DropletLimit)
		}
		s.write(w, response{status: 204}, nil, nil)
	case "GET /_emu/requests":
		s.write(w, jsonResp(200, map[string]any{"requests": s.Requests()}), nil, nil)
	default:
		s.write(w, notFound(), nil, nil)
	}
}
