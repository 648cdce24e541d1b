package lb

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/roles/serve/web"
)

// TestMain doubles as a web backend process: with HACTL_LB_TEST_WEB_ROOT set
// it runs the real web server on 127.0.0.1:0, prints its address and serves
// until killed. The tests kill these processes with SIGKILL.
func TestMain(m *testing.M) {
	if root := os.Getenv("HACTL_LB_TEST_WEB_ROOT"); root != "" {
		s, err := web.New(web.Config{Root: root, Listen: "127.0.0.1:0"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(s.Addr().String())
		if err := s.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startWebProcess starts a web backend as a child process and returns its
// base URL and the process.
func startWebProcess(t *testing.T, root string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HACTL_LB_TEST_WEB_ROOT="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("backend process did not report its address: %v", err)
	}
	return "http://" + strings.TrimSpace(line), cmd
}

// fakeBackend is an in-process backend whose health and answers the test
// controls.
type fakeBackend struct {
	url      string
	name     string
	healthy  atomic.Bool
	fail5xx  atomic.Bool
	requests atomic.Int64
}

func startFake(t *testing.T, name string) *fakeBackend {
	t.Helper()
	f := &fakeBackend{name: name}
	f.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !f.healthy.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, "ok")
			return
		}
		f.requests.Add(1)
		if f.fail5xx.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, f.name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.url = "http://" + ln.Addr().String()
	return f
}

func startLB(t *testing.T, cfg Config) *Balancer {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func backendStatus(b *Balancer, url string) BackendStatus {
	for _, s := range b.Status().Backends {
		if s.URL == url {
			return s
		}
	}
	return BackendStatus{}
}

func get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestBalancer_RoundTrip_NoFailureWhenBackendKilled(t *testing.T) {
	root := t.TempDir()
	const page = "<h1>the blog</h1>"
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	var urls []string
	var procs []*exec.Cmd
	for range 3 {
		u, p := startWebProcess(t, root)
		urls = append(urls, u)
		procs = append(procs, p)
	}
	b := startLB(t, Config{Backends: urls, CheckInterval: 200 * time.Millisecond, CoolDown: 2 * time.Second})
	base := "http://" + b.Addr().String()

	const total, workers, killAt = 500, 8, 100
	var done, failures atomic.Int64
	var mu sync.Mutex
	var failMsgs []string
	jobs := make(chan int)
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				code, body, err := get(client, base+"/")
				if err != nil || code != 200 || body != page {
					failures.Add(1)
					mu.Lock()
					failMsgs = append(failMsgs, fmt.Sprintf("code=%d err=%v body=%q", code, err, body))
					mu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	killed := false
	for i := range total {
		if i == killAt {
			// Kill a backend while requests are in flight on every worker.
			if err := procs[1].Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if !killed || done.Load() != total {
		t.Fatalf("ran %d requests, killed=%v", done.Load(), killed)
	}
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d client requests failed after killing a backend: %v", n, total, failMsgs)
	}
	waitFor(t, "killed backend ejected by health checks", func() bool {
		return !backendStatus(b, urls[1]).Healthy
	})
	if st := b.Status(); st.Healthy != 2 {
		t.Errorf("healthy backends = %d, want 2: %+v", st.Healthy, st)
	}
	if code, _, err := get(client, base+"/healthz"); err != nil || code != 200 {
		t.Errorf("lb healthz = %d %v, want 200", code, err)
	}
}

func TestBalancer_ActiveCheck_EjectsAndReadmits(t *testing.T) {
	a, c := startFake(t, "a"), startFake(t, "c")
	b := startLB(t, Config{Backends: []string{a.url, c.url}, CheckInterval: 50 * time.Millisecond, Fall: 3, Rise: 2})
	base := "http://" + b.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}

	a.healthy.Store(false)
	waitFor(t, "a ejected", func() bool { return !backendStatus(b, a.url).Healthy })
	if st := backendStatus(b, a.url); st.ConsecutiveFailures < 3 {
		t.Errorf("ejected after %d failures, want ≥ 3", st.ConsecutiveFailures)
	}
	before := a.requests.Load()
	for range 20 {
		if code, body, err := get(client, base+"/"); err != nil || code != 200 || body != "c" {
			t.Fatalf("GET = %d %q %v, want 200 from c", code, body, err)
		}
	}
	if got := a.requests.Load(); got != before {
		t.Errorf("ejected backend got %d requests", got-before)
	}

	// Both unhealthy: the balancer's own health fails.
	c.healthy.Store(false)
	waitFor(t, "c ejected", func() bool { return !backendStatus(b, c.url).Healthy })
	if code, _, _ := get(client, base+"/healthz"); code != 503 {
		t.Errorf("lb healthz with no healthy backend = %d, want 503", code)
	}

	a.healthy.Store(true)
	waitFor(t, "a readmitted", func() bool { return backendStatus(b, a.url).Healthy })
	if st := backendStatus(b, a.url); st.ConsecutiveSuccesses < 2 {
		t.Errorf("readmitted after %d successes, want ≥ 2", st.ConsecutiveSuccesses)
	}
	if code, _, _ := get(client, base+"/healthz"); code != 200 {
		t.Errorf("lb healthz after readmission = %d, want 200", code)
	}
	for range 10 {
		if code, body, err := get(client, base+"/"); err != nil || code != 200 || body != "a" {
			t.Fatalf("GET = %d %q %v, want 200 from a", code, body, err)
		}
	}
}

func TestBalancer_RoundTrip_PassiveEjection(t *testing.T) {
	a, c := startFake(t, "a"), startFake(t, "c")
	// Long interval: only passive ejection acts during the test.
	b := startLB(t, Config{Backends: []string{a.url, c.url}, CheckInterval: time.Hour, CoolDown: time.Hour})
	base := "http://" + b.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}

	a.fail5xx.Store(true)
	for range 20 {
		if code, body, err := get(client, base+"/"); err != nil || code != 200 || body != "c" {
			t.Fatalf("GET = %d %q %v, want 200 from c (5xx retried elsewhere)", code, body, err)
		}
	}
	if got := a.requests.Load(); got != 1 {
		t.Errorf("5xx backend got %d requests, want exactly 1 before its ejection", got)
	}
	st := backendStatus(b, a.url)
	if st.Available || st.EjectedUntil == nil || !st.Healthy {
		t.Errorf("status of 5xx backend = %+v, want healthy but not available", st)
	}
	// A POST is not retried: it reaches one backend only. With a ejected,
	// it goes to c.
	resp, err := client.Post(base+"/", "text/plain", strings.NewReader("body"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST = %d, want 200", resp.StatusCode)
	}

	var sb strings.Builder
	resp, err = client.Get(base + "/lb/status")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(&sb, resp.Body)
	resp.Body.Close()
	var doc Status
	if err := json.Unmarshal([]byte(sb.String()), &doc); err != nil || len(doc.Backends) != 2 {
		t.Fatalf("/lb/status = %q (%v)", sb.String(), err)
	}
}

func TestBalancer_RoundTrip_ConnectionErrorEjects(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String()
	dead.Close() // nothing listens there any more
	c := startFake(t, "c")
	b := startLB(t, Config{Backends: []string{deadURL, c.url}, CheckInterval: time.Hour, CoolDown: time.Hour})
	client := &http.Client{Timeout: 30 * time.Second}
	for range 4 {
		if code, body, err := get(client, "http://"+b.Addr().String()+"/x"); err != nil || code != 200 || body != "c" {
			t.Fatalf("GET = %d %q %v, want 200 from c", code, body, err)
		}
	}
	st := backendStatus(b, deadURL)
	if st.Errors != 1 || st.Available {
		t.Errorf("dead backend status = %+v, want 1 error and not available", st)
	}
}

func TestBalancer_Reload_BackendsFile(t *testing.T) {
	a, c := startFake(t, "a"), startFake(t, "c")
	file := filepath.Join(t.TempDir(), "backends.json")
	write := func(urls ...string) {
		t.Helper()
		b, _ := json.Marshal(map[string][]string{"backends": urls})
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write(a.url)
	b := startLB(t, Config{Backends: []string{file}, CheckInterval: 50 * time.Millisecond})
	client := &http.Client{Timeout: 30 * time.Second}
	if code, body, err := get(client, "http://"+b.Addr().String()+"/"); err != nil || code != 200 || body != "a" {
		t.Fatalf("GET = %d %q %v, want 200 from a", code, body, err)
	}
	write(c.url)
	waitFor(t, "backend file re-read", func() bool {
		st := b.Status()
		return len(st.Backends) == 1 && st.Backends[0].URL == c.url
	})
	if code, body, err := get(client, "http://"+b.Addr().String()+"/"); err != nil || code != 200 || body != "c" {
		t.Fatalf("GET = %d %q %v, want 200 from c", code, body, err)
	}
	// A broken file keeps the last good list.
	if err := os.WriteFile(file, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // several check intervals; nothing to poll for
	if st := b.Status(); len(st.Backends) != 1 || st.Backends[0].URL != c.url {
		t.Errorf("after a broken file, backends = %+v, want the last good list", st.Backends)
	}
}

func TestNew_RejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends []string
	}{
		{"none", nil},
		{"bad scheme", []string{"ftp://x"}},
		{"credentials", []string{"http://u:p@127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(Config{Listen: "127.0.0.1:0", Backends: tc.backends}); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

// BenchmarkBalancer_Proxy measures one GET through the balancer to an
// in-process backend over loopback, keep-alive on both legs.
func BenchmarkBalancer_Proxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })}
	go srv.Serve(ln)
	defer srv.Close()
	bal, err := New(Config{Listen: "127.0.0.1:0", Backends: []string{"http://" + ln.Addr().String()}, CheckInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bal.Run(ctx) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := "http://" + bal.Addr().String() + "/"
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if code, _, err := get(client, url); err != nil || code != 200 {
				b.Errorf("GET = %d %v", code, err)
				return
			}
		}
	})
}
