package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/hactl/hactl/lang"
)

// Options builds an Agent.
type Options struct {
	Config   Config
	Identity Identity
	// Converger and Loader connect the agent to converge and lang. Required.
	Converger Converger
	Loader    Loader
	// Logger; nil discards.
	Logger *slog.Logger
	// Listener for the local API; nil listens on Identity.Address:Config.APIPort.
	Listener net.Listener
	// Members returns the cluster view for facts and /v1/members; nil means
	// the static view (this node only). The control plane provides it. It is
	// called from the loop and API goroutines and must be safe for that.
	Members func() map[string][]lang.Member
	// DryRun converges in noop mode and never moves the last good revision.
	DryRun bool
	// Control, when set, is the node's control plane: GET /v1/cluster and
	// GET /v1/events serve its status and history.
	Control ControlPlane
	// Data, when set, puts the role's data in place before every converge
	// (restore on rebuild), serves it to replicas and runs its backups;
	// /v1/status reports it. Run closes it when it stops.
	Data *DataManager
	// OnRun, when set, is called from the loop goroutine after every run
	// with the new status (e.g. to put the revision and health in gossip
	// metadata). It must not block and must not call RunOnce.
	OnRun func(Status)
}

// Agent is one node's agent. Its loop goroutine owns the pull/verify/converge
// state; the API reads a snapshot under a lock.
type Agent struct {
	cfg     Config
	id      Identity
	conv    Converger
	load    Loader
	log     *slog.Logger
	trusted TrustedKeys
	opts    Options
	met     *metrics
	pull    *puller
	notify  chan struct{}

	// Owned by the loop goroutine.
	lastGood  string
	current   *loaded
	refused   map[string]*refusal
	notified  bool
	osFamily  string
	stateFile string
	worktrees string

	mu   sync.Mutex
	st   Status       // snapshot for the API
	spec *lang.Config // last good configuration, for Spec
}

type loaded struct {
	commit string
	cfg    *lang.Config
}

type refusal struct {
	Refusal
	attempts int
	retryAt  time.Time
}

// Refusal reasons.
const (
	ReasonUnsigned  = "unsigned"
	ReasonUntrusted = "untrusted"
	ReasonBadSig    = "bad-signature"
	ReasonEvaluate  = "evaluate"
	ReasonConverge  = "converge"
)

// Refusal is a commit the agent did not put in force, and why.
type Refusal struct {
	Commit string    `json:"commit"`
	Reason string    `json:"reason"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
}

// Run is the record of one loop cycle.
type Run struct {
	Started    time.Time `json:"started"`
	DurationMS float64   `json:"duration_ms"`
	Revision   string    `json:"revision,omitempty"` // what was converged
	Remote     string    `json:"remote,omitempty"`   // who served the tip
	OK         bool      `json:"ok"`
	DryRun     bool      `json:"dry_run,omitempty"`
	Error      string    `json:"error,omitempty"`
	Report     *Report   `json:"report,omitempty"`
}

// Status is what GET /v1/status returns.
type Status struct {
	Identity Identity `json:"identity"`
	Cluster  string   `json:"cluster"`
	Healthy  bool     `json:"healthy"`
	// Revision is the commit converged by the last run.
	Revision string `json:"revision,omitempty"`
	// LastGood is the last commit that was verified, evaluated and converged.
	LastGood string `json:"last_good,omitempty"`
	// Tip is the branch tip last fetched, and PullError the last fetch error.
	Tip       string    `json:"tip,omitempty"`
	PullError string    `json:"pull_error,omitempty"`
	LastRun   *Run      `json:"last_run,omitempty"`
	Runs      int       `json:"runs"`
	Refused   []Refusal `json:"refused"`
	// Data is the role's data: where it was restored from, replication
	// and backups (DataManager); DataEvents its recent events.
	Data       []DataStatus `json:"data,omitempty"`
	DataEvents []DataEvent  `json:"data_events,omitempty"`
}

// New checks the options and builds an agent. It reads the state file and,
// on a local node (root other than "/"), creates the skeleton of a machine's
// filesystem under the root (LocalSkeleton) so role files written for
// machines find /srv, /var/log, /etc ... as they would there.
func New(o Options) (*Agent, error) {
	cfg := o.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if o.Converger == nil || o.Loader == nil {
		return nil, errors.New("agent: Converger and Loader are required")
	}
	if o.Identity.Root == "" || o.Identity.Role == "" {
		return nil, errors.New("agent: identity needs a role and a root")
	}
	tk, err := ParseTrustedKeys(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", o.Identity.Name)
	state := filepath.Join(o.Identity.Root, "var/lib/hactl")
	a := &Agent{
		cfg: cfg, id: o.Identity, conv: o.Converger, load: o.Loader, log: log, trusted: tk, opts: o,
		met:       newMetrics(o.Identity),
		notify:    make(chan struct{}, 1),
		refused:   map[string]*refusal{},
		osFamily:  osFamily(),
		stateFile: filepath.Join(state, "state.json"),
		worktrees: filepath.Join(state, "worktrees"),
	}
	a.pull = &puller{
		dir: filepath.Join(state, "repo"), remotes: cfg.Remotes, branch: cfg.Branch,
		timeout: cfg.FetchTimeout.D(), log: log,
		onFail: func(remote string, err error) {
			a.met.pullFailures.WithLabelValues(redactURL(remote)).Inc()
		},
	}
	if o.Identity.Root != "/" {
		for _, d := range LocalSkeleton {
			if err := os.MkdirAll(filepath.Join(o.Identity.Root, d), 0o755); err != nil {
				return nil, fmt.Errorf("agent: node root %s: %w", o.Identity.Root, err)
			}
		}
	}
	if o.Data != nil && o.Control != nil && o.Data.LeaderAPI == nil {
		// A follower's data events reach the history through the leader.
		o.Data.LeaderAPI = func() string { return leaderAPIURL(o.Control, cfg.APIPort) }
	}
	if rl, ok := o.Control.(RunnerLog); ok && o.Data != nil && o.Data.Log == nil {
		o.Data.Log = rl // the log names each role's backup runner
	}
	if o.Data != nil && o.Data.Retry == nil {
		o.Data.Retry = a.Notify
	}
	a.readState()
	a.st = Status{Identity: a.id, Cluster: cfg.Cluster, LastGood: a.lastGood, Refused: []Refusal{}}
	return a, nil
}

// LocalSkeleton lists the directories a local node's root gets, like a
// freshly installed Debian machine (only the ones roles are likely to use).
var LocalSkeleton = []string{"etc", "home", "opt", "run", "srv", "tmp", "usr/local/bin", "var/lib", "var/log", "var/www"}

// persisted is state.json.
type persisted struct {
	LastGood   string    `json:"last_good"`
	LastGoodAt time.Time `json:"last_good_at"`
	Refused    []Refusal `json:"refused,omitempty"`
}

func (a *Agent) readState() {
	b, err := os.ReadFile(a.stateFile)
	if err != nil {
		return
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		a.log.Warn("state file unreadable, starting without a last good revision", "file", a.stateFile, "err", err)
		return
	}
	a.lastGood = p.LastGood
}

func (a *Agent) writeState() {
	p := persisted{LastGood: a.lastGood, LastGoodAt: time.Now().UTC()}
	a.mu.Lock()
	p.Refused = append(p.Refused, a.st.Refused...)
	a.mu.Unlock()
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := writeFileAtomic(a.stateFile, append(b, '\n'), 0o644); err != nil {
		a.log.Error("cannot record the last good revision", "file", a.stateFile, "err", err)
	}
}

// Notify asks for a run at once (a new revision exists). It never blocks;
// notifications while a run is pending coalesce.
func (a *Agent) Notify() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// Spec returns the evaluated configuration in force (the last good
// revision), or nil before the first good run. The Config is shared and must
// not be modified. Safe to call from any goroutine (cluster.Config.Spec).
func (a *Agent) Spec() *lang.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.spec
}

// Status returns a copy of the current status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.st
	s.Refused = append([]Refusal{}, a.st.Refused...)
	if s.LastRun != nil {
		r := *s.LastRun
		s.LastRun = &r
	}
	if a.opts.Data != nil {
		s.Data, s.DataEvents = a.opts.Data.Status(), a.opts.Data.Events()
	}
	return s
}

// Run serves the local API and runs the converge loop until ctx is done. It
// runs once at start, then every interval plus a random splay, and at once
// after Notify. It returns after every goroutine it started has stopped.
func (a *Agent) Run(ctx context.Context) error {
	ln := a.opts.Listener
	if ln == nil {
		addr := net.JoinHostPort(a.id.Address, strconv.Itoa(a.cfg.APIPort))
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("agent %s: local API: %w", a.id.Name, err)
		}
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("local API stopped", "err", err)
		}
	}()
	a.log.Info("agent started", "role", a.id.Role, "slot", a.id.Slot, "generation", a.id.Generation,
		"address", a.id.Address, "api", ln.Addr().String(), "root", a.id.Root, "last_good", a.lastGood)

	a.loop(ctx)

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-served
	if c, ok := a.conv.(io.Closer); ok {
		if err := c.Close(); err != nil {
			a.log.Warn("converger close", "err", err)
		}
	}
	if a.opts.Data != nil {
		a.opts.Data.Close()
	}
	a.log.Info("agent stopped")
	return nil
}

func (a *Agent) loop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.notify:
			a.notified = true
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
		a.RunOnce(ctx)
		t.Reset(a.nextDelay())
	}
}

func (a *Agent) nextDelay() time.Duration {
	d := a.cfg.Interval.D()
	if s := a.cfg.Splay.D(); s > 0 {
		d += rand.N(s)
	}
	return d
}

// RunOnce performs one cycle: fetch the tip, and if it is new, verify,
// evaluate and converge it; otherwise (or when it is refused or fails)
// converge the last good revision. It must not be called concurrently with
// itself or with Run's loop.
func (a *Agent) RunOnce(ctx context.Context) Run {
	start := time.Now()
	notified := a.notified
	a.notified = false
	tip, remote, perr := a.pull.fetch(ctx)
	if ctx.Err() != nil {
		return Run{Started: start, Error: "stopped: " + ctx.Err().Error()} // shutting down: record nothing
	}
	a.mu.Lock()
	if perr != nil {
		a.st.PullError = perr.Error()
	} else {
		a.st.PullError = ""
		a.st.Tip = tip.String()
	}
	a.mu.Unlock()
	if perr != nil {
		a.log.Warn("cannot fetch the configuration; keeping the last good revision", "last_good", a.lastGood, "err", perr)
	}
	if perr == nil && tip.String() != a.lastGood && a.shouldTry(tip.String(), notified, start) {
		if run, ok := a.tryCommit(ctx, tip, remote, start); ok {
			return run
		}
	}
	if a.lastGood == "" {
		err := errors.New("no trusted configuration yet")
		if perr != nil {
			err = fmt.Errorf("no trusted configuration yet: %w", perr)
		} else if r, ok := a.refused[tip.String()]; ok {
			err = fmt.Errorf("no trusted configuration yet: commit %s refused (%s): %s", short(r.Commit), r.Reason, r.Error)
		}
		return a.finish(Run{Started: start, Error: err.Error()}, "none")
	}
	run := Run{Started: start, Revision: a.lastGood, Remote: redactURL(remote)}
	lc, err := a.loadLastGood()
	if err != nil {
		run.Error = err.Error()
		return a.finish(run, "failed")
	}
	rep, err := a.converge(ctx, lc)
	run.Report = &rep
	if err == nil && rep.Failed > 0 {
		err = failedErr(rep)
	}
	if err != nil && ctx.Err() != nil {
		return Run{Started: start, Revision: a.lastGood, Error: "stopped: " + ctx.Err().Error()}
	}
	if err != nil {
		run.Error = fmt.Sprintf("converge %s: %v", short(a.lastGood), err)
		return a.finish(run, "failed")
	}
	run.OK = true
	return a.finish(run, "ok")
}

func (a *Agent) shouldTry(commit string, notified bool, now time.Time) bool {
	r, ok := a.refused[commit]
	if !ok {
		return true
	}
	if r.Reason != ReasonConverge {
		return false // signatures and evaluation are deterministic
	}
	return a.lastGood == "" || notified || !now.Before(r.retryAt)
}

// tryCommit verifies, evaluates and converges a new tip. It returns true when
// the commit is now the last good one.
func (a *Agent) tryCommit(ctx context.Context, tip plumbing.Hash, remote string, start time.Time) (Run, bool) {
	commit := tip.String()
	c, err := a.pull.commit(tip)
	if err != nil {
		a.log.Error("fetched commit unreadable", "commit", commit, "err", err)
		return Run{}, false
	}
	signer, err := VerifyCommit(c, a.trusted)
	if err != nil {
		reason := ReasonBadSig
		switch {
		case errors.Is(err, ErrUnsigned):
			reason = ReasonUnsigned
		case errors.Is(err, ErrUntrusted):
			reason = ReasonUntrusted
		}
		a.refuse(commit, reason, err, start)
		return Run{}, false
	}
	a.log.Info("commit signature verified", "commit", commit, "key", signer, "remote", redactURL(remote))
	dir := filepath.Join(a.worktrees, commit)
	if err := checkout(c, dir); err != nil {
		a.refuse(commit, ReasonEvaluate, fmt.Errorf("checkout: %w", err), start)
		return Run{}, false
	}
	lc, err := a.evaluate(dir)
	if err != nil {
		a.refuse(commit, ReasonEvaluate, err, start)
		return Run{}, false
	}
	run := Run{Started: start, Revision: commit, Remote: redactURL(remote)}
	rep, err := a.converge(ctx, lc)
	run.Report = &rep
	if err == nil && rep.Failed > 0 {
		err = failedErr(rep)
	}
	if err != nil && ctx.Err() != nil {
		return Run{Started: start, Revision: commit, Error: "stopped: " + ctx.Err().Error()}, true // not the commit's fault
	}
	if errors.Is(err, ErrDataNotReady) {
		// Not the commit's fault either: try it again soon.
		run.Error = fmt.Sprintf("converge %s: %v", short(commit), err)
		return a.finish(run, "failed"), true
	}
	if err != nil {
		run.Error = fmt.Sprintf("converge %s: %v", short(commit), err)
		a.refuse(commit, ReasonConverge, err, start)
		if a.lastGood == "" {
			return a.finish(run, "failed"), true // nothing to fall back to
		}
		a.log.Warn("rolling back to the last good revision", "last_good", a.lastGood)
		return Run{}, false
	}
	run.OK = true
	if a.opts.DryRun {
		return a.finish(run, "ok"), true
	}
	prev := a.lastGood
	a.lastGood = commit
	a.current = &loaded{commit: commit, cfg: lc}
	delete(a.refused, commit)
	a.writeState()
	a.pruneWorktrees(commit, prev)
	a.log.Info("new revision in force", "commit", commit, "previous", prev, "changed", rep.Changed)
	return a.finish(run, "ok"), true
}

func (a *Agent) evaluate(dir string) (*lang.Config, error) {
	cfgDir := filepath.Join(dir, filepath.FromSlash(a.cfg.Path))
	lc, err := a.load(cfgDir)
	if err != nil {
		return nil, err
	}
	if lc == nil {
		return nil, errors.New("loader returned no configuration")
	}
	if lc.Cluster != nil && lc.Cluster.Name != "" && lc.Cluster.Name != a.cfg.Cluster {
		return nil, fmt.Errorf("configuration is for cluster %q, this node belongs to %q", lc.Cluster.Name, a.cfg.Cluster)
	}
	if lc.Role(a.id.Role) == nil {
		return nil, fmt.Errorf("configuration declares no role %q", a.id.Role)
	}
	return lc, nil
}

// loadLastGood returns the evaluated last good configuration, reloading it
// from its worktree (checking it out again, re-verified, when the worktree is
// gone) after a restart.
func (a *Agent) loadLastGood() (*lang.Config, error) {
	if a.current != nil && a.current.commit == a.lastGood {
		return a.current.cfg, nil
	}
	dir := filepath.Join(a.worktrees, a.lastGood)
	if _, err := os.Stat(dir); err != nil {
		c, err := a.pull.commit(plumbing.NewHash(a.lastGood))
		if err == nil {
			_, err = VerifyCommit(c, a.trusted)
		}
		if err == nil {
			err = checkout(c, dir)
		}
		if err != nil {
			lost := a.lastGood
			a.lastGood = ""
			a.writeState()
			return nil, fmt.Errorf("last good revision %s is no longer available: %w", short(lost), err)
		}
	}
	lc, err := a.evaluate(dir)
	if err != nil {
		return nil, fmt.Errorf("last good revision %s: %w", short(a.lastGood), err)
	}
	a.current = &loaded{commit: a.lastGood, cfg: lc}
	return lc, nil
}

func (a *Agent) converge(ctx context.Context, lc *lang.Config) (Report, error) {
	if a.opts.Data != nil && !a.opts.DryRun {
		// Restore before the role's services start; never from nothing.
		if err := a.opts.Data.Prepare(ctx, lc, a.members()); err != nil {
			if errors.Is(err, ErrDataNotReady) {
				time.AfterFunc(dataRetry, a.Notify)
			}
			return Report{}, err
		}
	}
	rep, err := a.conv.Converge(ctx, lc, a.id.Role, a.facts(), a.opts.DryRun)
	a.met.changed.Add(float64(rep.Changed))
	a.met.failed.Add(float64(rep.Failed))
	return rep, err
}

func (a *Agent) facts() *lang.NodeFacts {
	return &lang.NodeFacts{
		Name: a.id.Name, Role: a.id.Role, Slot: a.id.Slot, Generation: a.id.Generation,
		Address: a.id.Address, Dir: a.id.Root, OSFamily: a.osFamily, Cluster: a.cfg.Cluster,
		Members: a.members(),
	}
}

func (a *Agent) members() map[string][]lang.Member {
	if a.opts.Members != nil {
		return a.opts.Members()
	}
	return map[string][]lang.Member{a.id.Role: {{Name: a.id.Name, Address: a.id.Address, Slot: a.id.Slot}}}
}

const maxRefusals = 20

func (a *Agent) refuse(commit, reason string, err error, now time.Time) {
	r := a.refused[commit]
	if r == nil {
		r = &refusal{}
		a.refused[commit] = r
	}
	r.Refusal = Refusal{Commit: commit, Reason: reason, Error: err.Error(), At: now.UTC()}
	r.attempts++
	backoff := a.cfg.Interval.D() << min(r.attempts, 6)
	r.retryAt = now.Add(min(backoff, 30*time.Minute))
	a.met.refused.WithLabelValues(reason).Inc()
	a.log.Error("commit refused; the last good configuration stays in force",
		"commit", commit, "reason", reason, "last_good", a.lastGood, "err", err)
	a.mu.Lock()
	a.st.Refused = append(a.st.Refused, r.Refusal)
	if n := len(a.st.Refused); n > maxRefusals {
		a.st.Refused = append([]Refusal{}, a.st.Refused[n-maxRefusals:]...)
	}
	a.mu.Unlock()
}

func (a *Agent) finish(run Run, result string) Run {
	run.DryRun = a.opts.DryRun
	d := time.Since(run.Started)
	run.DurationMS = float64(d.Microseconds()) / 1000
	a.met.runDuration.WithLabelValues(result).Observe(d.Seconds())
	if !a.opts.DryRun {
		a.met.setRevision(a.lastGood)
	}
	a.mu.Lock()
	if a.current != nil && a.current.commit == a.lastGood {
		a.spec = a.current.cfg
	}
	a.st.LastRun = &run
	a.st.Runs++
	a.st.Revision = run.Revision
	a.st.LastGood = a.lastGood
	a.st.Healthy = run.OK || (a.lastGood != "" && a.current != nil && a.current.commit == a.lastGood)
	healthy := a.st.Healthy
	a.mu.Unlock()
	if healthy {
		a.met.healthy.Set(1)
	} else {
		a.met.healthy.Set(0)
	}
	if a.opts.OnRun != nil {
		a.opts.OnRun(a.Status())
	}
	if run.OK {
		a.log.Debug("run finished", "revision", run.Revision, "duration_ms", run.DurationMS)
	} else {
		a.log.Warn("run failed", "revision", run.Revision, "err", run.Error)
	}
	return run
}

// pruneWorktrees removes checked-out trees other than the one in force and
// the previous one (services started from the previous revision may still
// read it until they are restarted).
func (a *Agent) pruneWorktrees(keep, prev string) {
	ents, err := os.ReadDir(a.worktrees)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Name() != keep && e.Name() != prev {
			_ = os.RemoveAll(filepath.Join(a.worktrees, e.Name()))
		}
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func failedErr(rep Report) error {
	if len(rep.Failures) == 0 {
		return fmt.Errorf("%d resources failed", rep.Failed)
	}
	return fmt.Errorf("%d resources failed: %s", rep.Failed, strings.Join(rep.Failures, "; "))
}
