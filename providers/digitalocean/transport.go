package digitalocean

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// transport is the http.RoundTripper every godo call goes through. See the
// package documentation for the policy. One transport serves one token.
type transport struct {
	base           http.RoundTripper
	token          string
	log            *slog.Logger
	attemptTimeout time.Duration
	retryDeadline  time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	maxRateWait    time.Duration

	mu           sync.Mutex
	blockedUntil time.Time // no request leaves before this (rate limit)
}

// errRateLimited is returned when the API asks us to wait longer than
// maxRateWait.
type rateLimitError struct{ until time.Time }

func (e rateLimitError) Error() string {
	return fmt.Sprintf("digitalocean api rate limit exhausted until %s", e.until.UTC().Format(time.RFC3339))
}

// maxRateAttempts bounds how many 429s in a row one call waits out.
const maxRateAttempts = 20

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		// Every attempt sends a fresh copy; the original is only closed, as
		// the RoundTripper contract asks.
		defer req.Body.Close()
		if req.GetBody == nil {
			b, err := io.ReadAll(req.Body)
			if err != nil {
				return nil, fmt.Errorf("%s %s: reading request body: %w", req.Method, req.URL.Path, err)
			}
			req = req.Clone(req.Context())
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
	}
	ctx := req.Context()
	deadline := time.Now().Add(t.retryDeadline)
	retry := idempotent(req.Method)
	var lastErr error
	for attempt := 0; ; attempt++ {
		if err := t.waitRate(ctx); err != nil {
			return nil, err
		}
		resp, err := t.attempt(req)
		if err == nil && resp.StatusCode == http.StatusTooManyRequests {
			if attempt >= maxRateAttempts {
				return resp, nil
			}
			t.noteRateLimit(resp, attempt)
			resp.Body.Close()
			lastErr = fmt.Errorf("%s %s: 429 too many requests", req.Method, req.URL.Path)
			continue
		}
		if err == nil && !(retry && resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented) {
			return resp, nil
		}
		if err == nil {
			lastErr = fmt.Errorf("%s %s: %s", req.Method, req.URL.Path, resp.Status)
		} else {
			lastErr = err
		}
		if ctx.Err() != nil {
			if resp != nil {
				resp.Body.Close()
			}
			return nil, ctx.Err()
		}
		if !retry {
			// A POST that failed in transit may or may not have happened;
			// the caller decides how to find out.
			if resp != nil {
				return resp, nil
			}
			return nil, err
		}
		wait := t.backoff(attempt)
		if time.Now().Add(wait).After(deadline) {
			if resp != nil {
				return resp, nil // let godo turn it into an *ErrorResponse
			}
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt+1, lastErr)
		}
		if resp != nil {
			resp.Body.Close()
		}
		t.log.Debug("digitalocean api retry", "method", req.Method, "path", req.URL.Path, "attempt", attempt+1, "wait", wait, "err", lastErr)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// attempt sends one request with the token and the per-attempt timeout and
// reads the whole body, so a stalled or cut body is an attempt error that
// can be retried like a network error.
func (t *transport) attempt(req *http.Request) (*http.Response, error) {
	actx, cancel := context.WithTimeout(req.Context(), t.attemptTimeout)
	defer cancel()
	r := req.Clone(actx)
	if req.GetBody != nil {
		b, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = b
	}
	r.Header.Set("Authorization", "Bearer "+t.token)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	t.observe(resp.Header)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading response: %w", req.Method, req.URL.Path, err)
	}
	if len(body) == 0 && resp.StatusCode == http.StatusOK && req.Method == http.MethodGet {
		return nil, fmt.Errorf("%s %s: empty response body", req.Method, req.URL.Path)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	return resp, nil
}

// observe records ratelimit-remaining 0 as a window to wait out.
func (t *transport) observe(h http.Header) {
	rem, err := strconv.Atoi(h.Get("Ratelimit-Remaining"))
	if err != nil || rem > 0 {
		return
	}
	if reset := parseReset(h); !reset.IsZero() {
		t.block(reset)
	}
}

func parseReset(h http.Header) time.Time {
	sec, err := strconv.ParseInt(h.Get("Ratelimit-Reset"), 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

func (t *transport) noteRateLimit(resp *http.Response, attempt int) {
	until := parseReset(resp.Header)
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra >= 0 {
		if u := time.Now().Add(time.Duration(ra) * time.Second); u.After(until) {
			until = u
		}
	}
	if until.IsZero() || !until.After(time.Now()) {
		until = time.Now().Add(t.backoff(attempt))
	}
	t.log.Info("digitalocean api rate limited; waiting", "until", until.UTC().Format(time.RFC3339))
	t.block(until)
}

func (t *transport) block(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if until.After(t.blockedUntil) {
		t.blockedUntil = until
	}
}

func (t *transport) waitRate(ctx context.Context) error {
	t.mu.Lock()
	until := t.blockedUntil
	t.mu.Unlock()
	wait := time.Until(until)
	if wait <= 0 {
		return nil
	}
	if wait > t.maxRateWait {
		return rateLimitError{until: until}
	}
	return sleep(ctx, wait)
}

// backoff is exponential with equal jitter: half fixed, half random.
func (t *transport) backoff(attempt int) time.Duration {
	d := t.backoffMin << min(attempt, 20)
	if d > t.backoffMax || d <= 0 {
		d = t.backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
