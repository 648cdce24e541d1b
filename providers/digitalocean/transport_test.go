package digitalocean_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

// A 429 with a reset time: the provider waits for the reset instead of
// re-sending. The emulator answers 429 to every request inside the window,
// so a single 429 in the log proves nothing was sent before the reset.
func TestTransport_RateLimit_WaitsForReset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault doemu.Fault
	}{
		{"hourly", doemu.Fault{Method: "GET", Path: "/v2/droplets", Status: 429, ResetAfter: 1500 * time.Millisecond}},
		{"burst retry-after", doemu.Fault{Method: "GET", Path: "/v2/droplets", Status: 429, ResetAfter: time.Second, RetryAfter: 1}},
		{"on POST", doemu.Fault{Method: "POST", Path: "/v2/droplets", Status: 429, ResetAfter: time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, doemu.Config{}, nil)
			e.emu.Inject(tc.fault)
			ctx := ctxT(t)
			if _, err := e.p.Create(ctx, req("web", 1, 1)); err != nil {
				t.Fatal(err)
			}
			var n429, inWindow int
			for _, r := range e.emu.Requests() {
				if r.Status == 429 {
					n429++
				}
				if r.RateWait {
					inWindow++
				}
			}
			if n429 != 1 || inWindow != 0 {
				t.Fatalf("%d answers were 429 (%d inside the reset window); want exactly the injected one", n429, inWindow)
			}
			if n := len(e.droplets(t)); n != 1 {
				t.Fatalf("%d droplets, want 1", n)
			}
		})
	}
}

// When ratelimit-remaining reaches 0 the provider stops before the API has
// to say 429, and fails fast when the reset is further than it may wait.
func TestTransport_RateLimit_RemainingZero(t *testing.T) {
	e := newEnv(t, doemu.Config{HourlyLimit: 3}, func(c *digitalocean.Config) { c.MaxRateLimitWait = time.Second })
	ctx := ctxT(t)
	var err error
	for range 5 {
		if _, err = e.p.List(ctx, "blog"); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Fatalf("err = %v, want a rate-limit error", err)
	}
	if got := len(e.emu.Requests()); got != 3 {
		t.Fatalf("%d requests sent with an hourly budget of 3; want 3 (no hammering)", got)
	}
}

func TestTransport_Retries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault doemu.Fault
		sends int
	}{
		{"500", doemu.Fault{Method: "GET", Status: 500, Times: 2}, 3},
		{"502 html", doemu.Fault{Method: "GET", Status: 502}, 2},
		{"503 text", doemu.Fault{Method: "GET", Status: 503}, 2},
		{"504", doemu.Fault{Method: "GET", Status: 504}, 2},
		{"truncated body", doemu.Fault{Method: "GET", Truncate: true}, 2},
		{"stalled body", doemu.Fault{Method: "GET", Truncate: true, StallBody: 2 * time.Second}, 2},
		{"empty body", doemu.Fault{Method: "GET", EmptyBody: true}, 2},
		{"closed connection", doemu.Fault{Method: "GET", CloseConn: true}, 2},
		{"slow answer", doemu.Fault{Method: "GET", Delay: 2 * time.Second}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, doemu.Config{}, func(c *digitalocean.Config) { c.RequestTimeout = 500 * time.Millisecond })
			e.emu.Inject(tc.fault)
			if _, err := e.p.List(ctxT(t), "blog"); err != nil {
				t.Fatal(err)
			}
			if n := e.count("GET", "/v2/droplets"); n != tc.sends {
				t.Errorf("GET sent %d times, want %d", n, tc.sends)
			}
		})
	}
	t.Run("4xx is not retried", func(t *testing.T) {
		e := newEnv(t, doemu.Config{}, nil)
		e.emu.Inject(doemu.Fault{Method: "GET", Status: 404})
		if _, err := e.p.List(ctxT(t), "blog"); err == nil {
			t.Fatal("List succeeded through a 404")
		}
		if n := e.count("GET", "/v2/droplets"); n != 1 {
			t.Errorf("GET sent %d times, want 1", n)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		e := newEnv(t, doemu.Config{}, func(c *digitalocean.Config) { c.RetryDeadline = 300 * time.Millisecond })
		e.emu.Inject(doemu.Fault{Method: "GET", Status: 500, Times: -1})
		_, err := e.p.List(ctxT(t), "blog")
		if err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("List against a dead API = %v, want the 500", err)
		}
	})
}
