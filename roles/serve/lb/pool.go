package lb

import (
	"net/url"
	"sync"
	"time"
)

// pool is the set of backends and their health. Its mutex guards every
// field of every backend; the url of a backend never changes after creation
// and may be read without it.
type pool struct {
	fall, rise int
	coolDown   time.Duration

	mu    sync.Mutex
	order []*backend
	next  int
	now   func() time.Time
}

type backend struct {
	raw string
	url *url.URL

	healthy      bool // active health-check verdict
	fails, oks   int  // consecutive active-check results
	ejectedUntil time.Time
	requests     uint64
	errors       uint64
	lastError    string
}

// sync replaces the backend set with targets, keeping the state of the
// backends that stay. New backends start healthy: the first active check runs
// right after a change. It reports whether anything changed.
func (p *pool) sync(targets []string) (added, removed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := map[string]*backend{}
	for _, b := range p.order {
		old[b.raw] = b
	}
	var order []*backend
	for _, t := range targets {
		if b, ok := old[t]; ok {
			order = append(order, b)
			delete(old, t)
			continue
		}
		u, err := url.Parse(t)
		if err != nil {
			continue // serve.List validated it already
		}
		order = append(order, &backend{raw: t, url: u, healthy: true})
		added = append(added, t)
	}
	for t := range old {
		removed = append(removed, t)
	}
	p.order = order
	return added, removed
}

// candidates returns the backends to try for one request, in order: the
// available ones (actively healthy and not passively ejected) starting at
// the round-robin position. When none is available it falls back to the
// actively healthy ones, and then to all of them: trying a doubtful backend
// beats failing the request outright.
func (p *pool) candidates() []*backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var avail, healthy []*backend
	for _, b := range p.order {
		if b.healthy {
			healthy = append(healthy, b)
			if !now.Before(b.ejectedUntil) {
				avail = append(avail, b)
			}
		}
	}
	switch {
	case len(avail) > 0:
	case len(healthy) > 0:
		avail = healthy
	default:
		avail = append([]*backend(nil), p.order...)
	}
	if len(avail) == 0 {
		return nil
	}
	start := p.next % len(avail)
	p.next++
	out := make([]*backend, 0, len(avail))
	out = append(out, avail[start:]...)
	return append(out, avail[:start]...)
}

// passiveFail records a failed proxied request and ejects b for the
// cool-down. It returns true when b was not ejected before.
func (p *pool) passiveFail(b *backend, reason string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	b.requests++
	b.errors++
	b.lastError = reason
	was := now.Before(b.ejectedUntil)
	b.ejectedUntil = now.Add(p.coolDown)
	return !was
}

func (p *pool) passiveOK(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.requests++
}

// checked records one active check result. It returns the transition, if
// any: "ejected" or "readmitted".
func (p *pool) checked(b *backend, err error) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		b.oks = 0
		b.fails++
		b.lastError = err.Error()
		if b.healthy && b.fails >= p.fall {
			b.healthy = false
			return "ejected"
		}
		return ""
	}
	b.fails = 0
	b.oks++
	if !b.healthy && b.oks >= p.rise {
		b.healthy = true
		return "readmitted"
	}
	return ""
}

func (p *pool) all() []*backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*backend(nil), p.order...)
}

// BackendStatus is one backend's entry in Status.
type BackendStatus struct {
	URL                  string     `json:"url"`
	Healthy              bool       `json:"healthy"`
	Available            bool       `json:"available"`
	EjectedUntil         *time.Time `json:"ejected_until,omitempty"`
	ConsecutiveFailures  int        `json:"consecutive_failures"`
	ConsecutiveSuccesses int        `json:"consecutive_successes"`
	Requests             uint64     `json:"requests"`
	Errors               uint64     `json:"errors"`
	LastError            string     `json:"last_error,omitempty"`
}

// Status is the JSON document served at /lb/status.
type Status struct {
	Healthy  int             `json:"healthy"`
	Backends []BackendStatus `json:"backends"`
}

func (p *pool) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	st := Status{Backends: []BackendStatus{}}
	for _, b := range p.order {
		bs := BackendStatus{
			URL:                  b.raw,
			Healthy:              b.healthy,
			Available:            b.healthy && !now.Before(b.ejectedUntil),
			ConsecutiveFailures:  b.fails,
			ConsecutiveSuccesses: b.oks,
			Requests:             b.requests,
			Errors:               b.errors,
			LastError:            b.lastError,
		}
		if now.Before(b.ejectedUntil) {
			t := b.ejectedUntil
			bs.EjectedUntil = &t
		}
		if b.healthy {
			st.Healthy++
		}
		st.Backends = append(st.Backends, bs)
	}
	return st
}
