package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAgent_RunOnce_FirstBootConverges(t *testing.T) {
	f := newFixture(t)
	commit := f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)

	run := n.a.RunOnce(t.Context())
	if !run.OK {
		t.Fatalf("first run failed: %s", run.Error)
	}
	if got := readFile(t, filepath.Join(root, "srv/www/index.html")); got != "v1" {
		t.Errorf("index.html = %q, want v1", got)
	}
	st := n.a.Status()
	if st.LastGood != commit || st.Revision != commit || !st.Healthy {
		t.Errorf("status last_good=%s revision=%s healthy=%v, want %s healthy", st.LastGood, st.Revision, st.Healthy, commit)
	}
	if sp := n.a.Spec(); sp == nil || sp.Role("web") == nil {
		t.Errorf("Spec() = %v, want the configuration in force", sp)
	}
	// The last good commit is recorded on disk and checked out.
	if s := readFile(t, filepath.Join(root, "var/lib/hactl/state.json")); !strings.Contains(s, commit) {
		t.Errorf("state.json does not record %s: %s", commit, s)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/hactl/worktrees", commit, "main.hcl")); err != nil {
		t.Errorf("worktree of the last good commit: %v", err)
	}
	// A second run with nothing new changes nothing.
	run = n.a.RunOnce(t.Context())
	if !run.OK || run.Report.Changed != 0 || run.Report.Unchanged != 1 {
		t.Errorf("no-change run = %+v, want ok with 1 unchanged", run)
	}
}

func TestAgent_Run_NotifyPicksUpNewCommit(t *testing.T) {
	f := newFixture(t)
	f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, f.config(), root)
	n.a.opts.Listener = ln
	api := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	index := filepath.Join(root, "srv/www/index.html")
	waitFor(t, "first boot to converge v1", func() bool { return readFile(t, index) == "v1" })
	waitFor(t, "healthz 200", func() bool { return httpStatus(t, api+"/healthz") == 200 })

	c2 := f.publish(fileRole("v2"), f.key)
	// The interval is an hour: only the notification can bring v2 in.
	resp, err := http.Post(api+"/v1/notify", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("notify status %d, want 202", resp.StatusCode)
	}
	waitFor(t, "v2 after notify", func() bool { return readFile(t, index) == "v2" })
	waitFor(t, "status to show the new revision", func() bool { return n.a.Status().LastGood == c2 })

	metrics := httpBody(t, api+"/metrics")
	for _, want := range []string{
		`hactl_agent_revision_info{node="web-1",revision="` + c2 + `"} 1`,
		`hactl_agent_run_duration_seconds_count{node="web-1",result="ok"}`,
		`hactl_agent_resources_changed_total{node="web-1"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if body := httpBody(t, api+"/v1/members"); !strings.Contains(body, `"name": "web-1"`) {
		t.Errorf("members = %s, want this node", body)
	}
	if code := httpStatus(t, api+"/v1/notify"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/notify = %d, want 405", code)
	}
}

func TestAgent_RunOnce_RefusesUnsignedAndUntrusted(t *testing.T) {
	f := newFixture(t)
	good := f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)
	index := filepath.Join(root, "srv/www/index.html")
	if run := n.a.RunOnce(t.Context()); !run.OK {
		t.Fatalf("first run: %s", run.Error)
	}

	other, err := GenerateSigningKey(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		signer Signer
		reason string
	}{
		{"unsigned", nil, ReasonUnsigned},
		{"unknown key", other, ReasonUntrusted},
		{"trusted key over other content", wrongContentSigner{f.key}, ReasonBadSig},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := f.publish(fileRole("evil"+tc.name), tc.signer)
			run := n.a.RunOnce(t.Context())
			if !run.OK || run.Revision != good {
				t.Errorf("run = %+v, want ok on the last good %s", run, good)
			}
			if got := readFile(t, index); got != "v1" {
				t.Errorf("index.html = %q after a refused commit, want v1", got)
			}
			st := n.a.Status()
			if len(st.Refused) != i+1 {
				t.Fatalf("refused = %+v, want %d entries", st.Refused, i+1)
			}
			r := st.Refused[i]
			if diff := cmp.Diff([]string{bad, tc.reason}, []string{r.Commit, r.Reason}); diff != "" {
				t.Errorf("refusal (-want +got):\n%s", diff)
			}
			if st.LastGood != good || st.Tip != bad || !st.Healthy {
				t.Errorf("status last_good=%s tip=%s healthy=%v", st.LastGood, st.Tip, st.Healthy)
			}
			// Nothing of the refused commit was evaluated or checked out.
			if _, err := os.Stat(filepath.Join(root, "var/lib/hactl/worktrees", bad)); !os.IsNotExist(err) {
				t.Errorf("refused commit was checked out: %v", err)
			}
		})
	}
	// Refusals are counted once per commit, not once per run.
	n.a.RunOnce(t.Context())
	if got := len(n.a.Status().Refused); got != len(cases) {
		t.Errorf("refusals after a repeat run = %d, want %d", got, len(cases))
	}
	metrics := httpRecorder(n.a.Handler(), "/metrics")
	for _, tc := range cases {
		want := `hactl_agent_refused_commits_total{node="web-1",reason="` + tc.reason + `"} 1`
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// wrongContentSigner signs something other than the commit it is asked to
// sign, with a trusted key: the signature is well-formed but does not match.
type wrongContentSigner struct{ s Signer }

func (w wrongContentSigner) Sign(message io.Reader) ([]byte, error) {
	b, _ := io.ReadAll(message)
	return w.s.Sign(strings.NewReader(string(b) + "tampered"))
}

// TestAgent_Run_IntervalCorrectsDrift: without any notification, the timer
// alone brings drifted state back.
func TestAgent_Run_IntervalCorrectsDrift(t *testing.T) {
	f := newFixture(t)
	f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	cfg := f.config()
	cfg.Interval, cfg.Splay = Duration(100*time.Millisecond), Duration(50*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, cfg, root)
	n.a.opts.Listener = ln
	var runs atomic.Int32
	n.a.opts.OnRun = func(Status) { runs.Add(1) }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	index := filepath.Join(root, "srv/www/index.html")
	waitFor(t, "first run", func() bool { return readFile(t, index) == "v1" })
	if err := os.WriteFile(index, []byte("drifted"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the timer to correct drift", func() bool { return readFile(t, index) == "v1" })
	waitFor(t, "several runs", func() bool { return runs.Load() >= 3 })
}

func TestAgent_RunOnce_RepositoryGoneKeepsLastGood(t *testing.T) {
	f := newFixture(t)
	good := f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)
	if run := n.a.RunOnce(t.Context()); !run.OK {
		t.Fatalf("first run: %s", run.Error)
	}
	f.gs.stop()
	index := filepath.Join(root, "srv/www/index.html")
	if err := os.Remove(index); err != nil { // drift while the repo is away
		t.Fatal(err)
	}
	run := n.a.RunOnce(t.Context())
	if !run.OK || run.Revision != good {
		t.Fatalf("run with the repository gone = %+v, want ok on %s", run, good)
	}
	if got := readFile(t, index); got != "v1" {
		t.Errorf("index.html = %q, want v1 restored from the last good revision", got)
	}
	st := n.a.Status()
	if st.PullError == "" || !st.Healthy {
		t.Errorf("status pull_error=%q healthy=%v, want an error and healthy", st.PullError, st.Healthy)
	}

	// A restarted agent with the repository still gone converges from the
	// recorded last good revision.
	n2 := newTestNode(t, f.config(), root)
	os.Remove(index)
	run = n2.a.RunOnce(t.Context())
	if !run.OK || run.Revision != good || readFile(t, index) != "v1" {
		t.Errorf("restarted agent run = %+v, index %q; want ok on %s", run, readFile(t, index), good)
	}
}

func TestAgent_RunOnce_BrokenHCLRefusedServiceKeepsServing(t *testing.T) {
	f := newFixture(t)
	role := fileRole("v1") + "  resource \"http\" \"svc\" {\n    body = \"hello v1\"\n  }\n"
	good := f.publish(role, f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)
	if run := n.a.RunOnce(t.Context()); !run.OK {
		t.Fatalf("first run: %s", run.Error)
	}
	svc := "http://" + n.conv.serviceAddr()
	if got := httpBody(t, svc); got != "hello v1" {
		t.Fatalf("service = %q", got)
	}
	bad := f.publish(fileRole("v2")+"  resource \"file\" {{{ broken\n", f.key)
	run := n.a.RunOnce(t.Context())
	if !run.OK || run.Revision != good {
		t.Errorf("run = %+v, want ok on %s", run, good)
	}
	st := n.a.Status()
	if len(st.Refused) != 1 || st.Refused[0].Commit != bad || st.Refused[0].Reason != ReasonEvaluate {
		t.Errorf("refused = %+v, want %s for evaluate", st.Refused, bad)
	}
	if !strings.Contains(st.Refused[0].Error, "main.hcl") {
		t.Errorf("refusal error %q does not name the file", st.Refused[0].Error)
	}
	if got := httpBody(t, svc); got != "hello v1" {
		t.Errorf("service after refused commit = %q, want it still serving", got)
	}
	if got := readFile(t, filepath.Join(root, "srv/www/index.html")); got != "v1" {
		t.Errorf("index.html = %q, want v1", got)
	}
}

func TestAgent_RunOnce_ConvergeFailureRollsBack(t *testing.T) {
	f := newFixture(t)
	good := f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)
	if run := n.a.RunOnce(t.Context()); !run.OK {
		t.Fatalf("first run: %s", run.Error)
	}
	bad := f.publish(fileRole("v2")+"  resource \"fail\" \"boom\" {}\n", f.key)
	run := n.a.RunOnce(t.Context())
	if !run.OK || run.Revision != good {
		t.Errorf("run = %+v, want the last good %s converged again", run, good)
	}
	if got := readFile(t, filepath.Join(root, "srv/www/index.html")); got != "v1" {
		t.Errorf("index.html = %q, want v1 (rolled back)", got)
	}
	st := n.a.Status()
	if len(st.Refused) != 1 || st.Refused[0].Commit != bad || st.Refused[0].Reason != ReasonConverge {
		t.Errorf("refused = %+v, want %s for converge", st.Refused, bad)
	}
	// The failed commit is not retried on the next timer run (backoff)...
	before := n.conv.runs
	n.a.RunOnce(t.Context())
	if n.conv.runs != before+1 {
		t.Errorf("converger runs %d → %d, want one (last good only)", before, n.conv.runs)
	}
	// ...but a fixed commit is taken at once.
	fixed := f.publish(fileRole("v3"), f.key)
	if run := n.a.RunOnce(t.Context()); !run.OK || run.Revision != fixed {
		t.Errorf("run after fix = %+v, want ok on %s", run, fixed)
	}
}

func TestAgent_RunOnce_WipedDiskConvergesFromScratch(t *testing.T) {
	f := newFixture(t)
	f.publish(fileRole("v1"), f.key)
	c2 := f.publish(fileRole("v2"), f.key)
	root := t.TempDir()
	n := newTestNode(t, f.config(), root)
	if run := n.a.RunOnce(t.Context()); !run.OK || run.Revision != c2 {
		t.Fatalf("first run: %+v", run)
	}
	// The disk is wiped (a rebuilt machine); the agent starts afresh.
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	n2 := newTestNode(t, f.config(), root)
	if st := n2.a.Status(); st.LastGood != "" {
		t.Fatalf("wiped node remembers %s", st.LastGood)
	}
	run := n2.a.RunOnce(t.Context())
	if !run.OK || run.Revision != c2 || readFile(t, filepath.Join(root, "srv/www/index.html")) != "v2" {
		t.Errorf("run after wipe = %+v, want ok on %s with v2", run, c2)
	}
	// Wiping under a running agent works too.
	os.RemoveAll(filepath.Join(root, "var"))
	os.RemoveAll(filepath.Join(root, "srv"))
	if run := n2.a.RunOnce(t.Context()); !run.OK || readFile(t, filepath.Join(root, "srv/www/index.html")) != "v2" {
		t.Errorf("run after a live wipe = %+v", run)
	}
}

func TestAgent_RunOnce_FailsOverPastHungAndDeadRemotes(t *testing.T) {
	f := newFixture(t)
	commit := f.publish(fileRole("v1"), f.key)
	root := t.TempDir()
	dead := deadURL(t)
	// A hung remote: accepts connections and never answers.
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	cfg := f.config("http://"+hung.Addr().String()+"/config.git", dead, f.url())
	cfg.FetchTimeout = Duration(time.Second)
	n := newTestNode(t, cfg, root)
	run := n.a.RunOnce(t.Context())
	if !run.OK || run.Revision != commit || run.Remote != f.url() {
		t.Fatalf("run = %+v, want ok on %s from %s", run, commit, f.url())
	}
	// The failure of the first remote is counted.
	rec := httpRecorder(n.a.Handler(), "/metrics")
	want := `hactl_agent_pull_failures_total{node="web-1",remote="` + dead + `"} 1`
	if !strings.Contains(rec, want) {
		t.Errorf("metrics lack %q", want)
	}
}

func TestAgent_RunOnce_NoConfigurationIsUnhealthy(t *testing.T) {
	f := newFixture(t)
	f.publish(fileRole("v1"), nil) // only an unsigned commit exists
	n := newTestNode(t, f.config(), t.TempDir())
	run := n.a.RunOnce(t.Context())
	if run.OK {
		t.Fatalf("run on an unsigned-only repository succeeded")
	}
	if got := httpRecorder(n.a.Handler(), "/healthz"); !strings.HasPrefix(got, "unhealthy") || !strings.Contains(got, "unsigned") {
		t.Errorf("healthz = %q, want unhealthy", got)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func httpRecorder(h http.Handler, path string) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Body.String()
}
