package digitalocean_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

const testToken = "dop_v1_0123456789abcdefTESTTOKEN"

type env struct {
	emu *doemu.Server
	srv *httptest.Server
	p   *digitalocean.Provider
}

// newEnv starts an emulator on loopback and a provider pointed at it with
// short intervals. mod may adjust either config before they are built.
func newEnv(t *testing.T, emuCfg doemu.Config, mod func(*digitalocean.Config)) *env {
	t.Helper()
	if emuCfg.Token == "" {
		emuCfg.Token = testToken
	}
	if emuCfg.MinuteLimit == 0 {
		// Tests poll every 10 ms; DO's 250/min burst limit is tested on its
		// own (TestTransport_RateLimit_*), not hit by accident on a slow box.
		emuCfg.MinuteLimit = 1 << 30
	}
	emu := doemu.New(emuCfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	cfg := digitalocean.Config{
		Token: emuCfg.Token, Endpoint: srv.URL + "/",
		Region: "nyc3", Size: "s-1vcpu-1gb", Image: "ubuntu-24-04-x64",
		PollInterval: 10 * time.Millisecond, ConsistencyWindow: 10 * time.Second,
		OperationTimeout: 30 * time.Second, RequestTimeout: 5 * time.Second, RetryDeadline: 20 * time.Second,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxRateLimitWait: 20 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := digitalocean.NewProvider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, srv: srv, p: p}
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func req(role string, slot, gen int) providers.CreateRequest {
	return providers.CreateRequest{Cluster: "blog", Role: role, Slot: slot, Generation: gen, UserData: "#cloud-config\n"}
}

// count counts logged requests matching method and path prefix.
func (e *env) count(method, prefix string) int {
	n := 0
	for _, r := range e.emu.Requests() {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// droplets lists every droplet straight from the emulator (no provider logic).
func (e *env) droplets(t *testing.T) []map[string]any {
	t.Helper()
	var out struct {
		Droplets []map[string]any `json:"droplets"`
	}
	getJSON(t, e.srv.URL+"/v2/droplets?per_page=200", &out)
	return out.Droplets
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	r, _ := http.NewRequest("GET", url, nil)
	r.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := jsonDecode(resp, v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond for up to 30 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
