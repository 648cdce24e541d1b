package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrRefused is returned (wrapped) when the outage check refuses a round.
var ErrRefused = errors.New("chaos refused")

// Options shape a run.
type Options struct {
	Stage  int
	Rounds int       // 0 = 1
	Fault  FaultKind // "" = destroy
	Seed   uint64
	// Interval is the pause between one round's recovery and the next round.
	Interval    time.Duration
	Roles       []string
	BlastRadius int
	// Exclude names nodes that are never victims: the node hosting the run
	// (a scheduled run on the leader). Stage 2 keeps Exclude[0] as its
	// survivor when it exists.
	Exclude []string
	// Leashed only reports which victims it would have chosen.
	Leashed bool
	// PauseFor is how long pause faults hold the process stopped (0 = 10 s).
	PauseFor time.Duration
	// Poll is how often the cluster is observed (0 = 500 ms).
	Poll time.Duration
	// RoundTimeout bounds a round from fault to recovery and marker
	// read-back, and the wait for the cluster to be whole again before the
	// next round (0 = 10 min).
	RoundTimeout time.Duration
	// ProbeInterval is the probes' sampling interval (0 = 1 s).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one check, fail-over included (0 = max(ProbeInterval, 5 s)).
	ProbeTimeout time.Duration
	// MarkerGrace is how long markers are retried after recovery before
	// they count as lost (0 = 30 s).
	MarkerGrace time.Duration
	// Baseline is how long probes and observation run before the first
	// fault, so the report shows the service before it was broken (0 = none).
	Baseline time.Duration
}

// Runner runs chaos rounds against a cluster. A Runner is used for one Run.
type Runner struct {
	Spec     Spec
	Cluster  Cluster
	Injector *Injector
	Probes   []Probe
	Markers  []Marker
	Options  Options
	Logger   *slog.Logger
	// Paused is the kill switch, checked before every round (nil = never paused).
	Paused func() (bool, string)

	rep     *Report
	written []written // markers acknowledged and read back in their round
	roles   *Roles
	// control: some observation carried the control plane's view, so
	// detection is measured by what the cluster noticed, never by the
	// provider's inventory alone.
	control  bool
	sampler  *Sampler
	timeline map[string]*NodeSeries
	order    []string
}

func (r *Runner) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// Run runs the rounds and returns the report. The error is non-nil when the
// run could not be carried out (refused, cluster unobservable, ctx done);
// the report is returned even then, judged (Evaluate) and ready to write.
// Objectives missed are not an error: see Report.Pass.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	o := r.Options
	o.Rounds = max(o.Rounds, 1)
	o.Fault = FaultKind(cmpOr(string(o.Fault), string(FaultDestroy)))
	o.PauseFor = cmpDur(o.PauseFor, 10*time.Second)
	o.Poll = cmpDur(o.Poll, 500*time.Millisecond)
	o.RoundTimeout = cmpDur(o.RoundTimeout, 10*time.Minute)
	r.Options = o
	r.rep = &Report{Cluster: r.Spec.Cluster, Stage: o.Stage, Fault: o.Fault, Seed: o.Seed, Leashed: o.Leashed,
		Started: time.Now(), Objectives: objectivesSpec(r.Spec.Objectives), Rounds: []Round{}}
	for _, m := range r.Markers {
		r.rep.Markers = append(r.rep.Markers, m.Name())
	}
	r.timeline = map[string]*NodeSeries{}
	r.roles = &Roles{}
	for _, p := range r.Probes {
		if ra, ok := p.(RoleAware); ok {
			ra.SetRoles(r.roles)
		}
	}
	for _, m := range r.Markers {
		if ra, ok := m.(RoleAware); ok {
			ra.SetRoles(r.roles)
		}
	}
	r.sampler = &Sampler{Probes: r.Probes, Interval: o.ProbeInterval, Timeout: o.ProbeTimeout}

	err := r.rounds(ctx)
	if err == nil && !o.Leashed {
		r.readBackAll(ctx)
	}
	r.sampler.Stop()
	r.finish()
	return r.rep, err
}

func (r *Runner) rounds(ctx context.Context) error {
	o := r.Options
	if o.Stage == 3 {
		r.rep.Refused = ErrStage3.Error()
		return fmt.Errorf("%w: %w", ErrRefused, ErrStage3)
	}
	r.log().Info("chaos run", "cluster", r.Spec.Cluster, "stage", o.Stage, "seed", o.Seed, "rounds", o.Rounds, "fault", o.Fault)
	if !o.Leashed {
		// Probes of {role} targets need the nodes before their first check.
		if _, err := r.observe(ctx); err != nil {
			r.log().Warn("observe cluster", "err", err)
		}
		r.sampler.Start(ctx)
	}
	if o.Baseline > 0 && !o.Leashed {
		r.watch(ctx, time.Now().Add(o.Baseline), func(Snapshot) bool { return false })
	}
	for n := 1; n <= o.Rounds; n++ {
		if r.Paused != nil {
			if p, why := r.Paused(); p {
				r.rep.Paused = why
				r.log().Warn("chaos paused by the kill switch", "reason", why)
				return nil
			}
		}
		rd := Round{N: n, Fault: o.Fault, Started: time.Now()}
		sel, err := r.selectRound(ctx, n, n == 1 || o.Leashed)
		if err != nil {
			rd.Skipped, rd.Ended = err.Error(), time.Now()
			r.rep.Rounds = append(r.rep.Rounds, rd)
			if errors.Is(err, ErrRefused) {
				r.rep.Refused = fmt.Sprintf("round %d: %s", n, strings.TrimPrefix(err.Error(), ErrRefused.Error()+": "))
			}
			return err
		}
		rd.Survivor, rd.Intent = sel.Survivor, sel.Intent
		for _, v := range sel.Victims {
			rd.Victims = append(rd.Victims, Victim{Node: v})
		}
		if o.Leashed {
			rd.Skipped, rd.Ended = "leashed: victims chosen, no fault injected", time.Now()
			r.rep.Rounds = append(r.rep.Rounds, rd)
			r.log().Info("leashed round", "round", n, "victims", sel.Names(), "survivor", sel.Survivor)
			continue
		}
		r.round(ctx, &rd)
		r.rep.Rounds = append(r.rep.Rounds, rd)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n < o.Rounds && o.Interval > 0 {
			r.watch(ctx, time.Now().Add(o.Interval), func(Snapshot) bool { return false })
		}
	}
	return ctx.Err()
}

// selectRound draws the round's victims from a generator seeded with the
// run's seed and the round number, so the same seed and cluster give the
// same victims however long a round waited. The first round is refused at
// once when the outage check fails; later rounds wait (observing) up to
// RoundTimeout for the cluster to be whole again.
func (r *Runner) selectRound(ctx context.Context, n int, first bool) (Selection, error) {
	deadline := time.Now().Add(r.Options.RoundTimeout)
	for {
		snap, err := r.observe(ctx)
		if err != nil {
			return Selection{}, err
		}
		sel, err := Select(RoundRand(r.Options.Seed, n), r.Spec, snap, SelectOptions{Stage: r.Options.Stage, Roles: r.Options.Roles, BlastRadius: r.Options.BlastRadius, Exclude: r.Options.Exclude})
		if err == nil {
			return sel, nil
		}
		if first || time.Now().After(deadline) || errors.Is(err, ErrStage3) {
			return Selection{}, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		if !sleepCtx(ctx, r.Options.Poll) {
			return Selection{}, ctx.Err()
		}
	}
}

// round injects the fault and watches the cluster until every victim has
// recovered and the markers are read back, or RoundTimeout.
func (r *Runner) round(ctx context.Context, rd *Round) {
	o := r.Options
	var marks []written
	for i, m := range r.Markers {
		id := fmt.Sprintf("s%d-r%d-m%d-%s", o.Seed, rd.N, i, randomID())
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.Write(wctx, id)
		cancel()
		if err != nil {
			rd.Errors = append(rd.Errors, fmt.Sprintf("marker %s not acknowledged before the fault: %v", m.Name(), err))
			continue
		}
		marks = append(marks, written{m: m, id: id, at: time.Now()})
	}
	rd.MarkersWritten = len(marks)
	for i := range marks {
		marks[i].round = rd.N
	}
	defer func() {
		for _, w := range marks {
			if !slices.Contains(rd.Lost, w.m.Name()+" "+w.id) {
				r.written = append(r.written, w)
			}
		}
	}()

	rd.FaultAt = time.Now()
	var undo []func() error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range rd.Victims {
		v := &rd.Victims[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			inj, err := r.Injector.Inject(ctx, rd.Fault, v.Node)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rd.Errors = append(rd.Errors, err.Error())
				return
			}
			v.Detail, v.back = inj.Detail, inj.Back
			if inj.Undo != nil {
				undo = append(undo, inj.Undo)
			}
		}()
	}
	wg.Wait()
	r.log().Info("fault injected", "round", rd.N, "fault", rd.Fault, "victims", victimNames(rd.Victims))
	undoAt := rd.FaultAt.Add(o.PauseFor)
	resume := func() {
		for _, u := range undo {
			if err := u(); err != nil {
				rd.Errors = append(rd.Errors, err.Error())
			}
		}
		undo = nil
	}
	defer resume() // never leave a process stopped

	deadline := rd.FaultAt.Add(o.RoundTimeout)
	r.watch(ctx, deadline, func(s Snapshot) bool {
		if len(undo) > 0 && !s.Time.Before(undoAt) {
			resume()
		}
		done := true
		for i := range rd.Victims {
			v := &rd.Victims[i]
			if v.DetectionSeconds == nil {
				if at, ok := detected(s, v.Node, rd.FaultAt, r.control); ok {
					v.DetectionSeconds = secs(at.Sub(rd.FaultAt))
				}
			}
			if v.RecoverySeconds == nil {
				if rep, ok := recovered(s, v, rd.Fault, r.control); ok {
					v.RecoverySeconds, v.Replacement = secs(s.Time.Sub(rd.FaultAt)), string(rep.Machine)
				}
			}
			done = done && v.RecoverySeconds != nil
		}
		return done && len(undo) == 0
	})
	rd.Recovered = true
	for _, v := range rd.Victims {
		if v.DetectionSeconds != nil && (rd.DetectionSeconds == nil || *v.DetectionSeconds > *rd.DetectionSeconds) {
			rd.DetectionSeconds = v.DetectionSeconds
		}
		if v.RecoverySeconds == nil {
			rd.Recovered = false
		} else if rd.RecoverySeconds == nil || *v.RecoverySeconds > *rd.RecoverySeconds {
			rd.RecoverySeconds = v.RecoverySeconds
		}
	}
	if !rd.Recovered {
		rd.RecoverySeconds = nil
	}

	// Read the markers back, retrying for up to MarkerGrace after recovery
	// (or after the round timed out), so a replica catching up is not loss.
	readDeadline := time.Now().Add(cmpDur(o.MarkerGrace, 30*time.Second))
	for _, w := range marks {
		found := false
		var lastErr error
		for try := 0; !found && (try == 0 || time.Now().Before(readDeadline)) && ctx.Err() == nil; try++ { // every marker is read at least once
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			found, lastErr = w.m.Read(rctx, w.id)
			cancel()
			if !found && !sleepCtx(ctx, time.Second) {
				break
			}
		}
		if !found {
			rd.MarkersLost++
			rd.Lost = append(rd.Lost, w.m.Name()+" "+w.id)
			rd.LossWindowSeconds = max(rd.LossWindowSeconds, rd.FaultAt.Sub(w.at).Seconds())
			if lastErr != nil {
				rd.Errors = append(rd.Errors, fmt.Sprintf("marker %s %s: %v", w.m.Name(), w.id, lastErr))
			}
		}
	}
	rd.Ended = time.Now()
	rd.Requests, rd.RequestsFailed, rd.RequestsDeferred = r.sampler.Between(rd.Started, rd.Ended)
	rd.Availability = ratio(rd.Requests, rd.RequestsFailed)
	r.log().Info("round done", "round", rd.N, "recovered", rd.Recovered, "recovery", fsec(rd.RecoverySeconds),
		"requests_failed", rd.RequestsFailed, "markers_lost", rd.MarkersLost)
}

// written is one acknowledged marker.
type written struct {
	m     Marker
	id    string
	at    time.Time
	round int
}

// readBackAll reads every marker that was read back in its own round once
// more at the end of the run: a later round may have destroyed the last
// node that held it (a rebuilt replica that never got the data), which is
// lost acknowledged data too.
func (r *Runner) readBackAll(ctx context.Context) {
	if len(r.written) == 0 {
		return
	}
	deadline := time.Now().Add(cmpDur(r.Options.MarkerGrace, 30*time.Second))
	for _, w := range r.written {
		found := false
		var lastErr error
		for try := 0; !found && (try == 0 || time.Now().Before(deadline)) && ctx.Err() == nil; try++ { // every marker is read at least once
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			found, lastErr = w.m.Read(rctx, w.id)
			cancel()
			if !found && !sleepCtx(ctx, time.Second) {
				break
			}
		}
		r.rep.MarkersCheckedAtEnd++
		if !found {
			why := ""
			if lastErr != nil {
				why = ": " + lastErr.Error()
			}
			r.rep.LostAtEnd = append(r.rep.LostAtEnd, fmt.Sprintf("%s %s (round %d)%s", w.m.Name(), w.id, w.round, why))
			r.log().Warn("acknowledged marker lost by a later round", "marker", w.m.Name(), "id", w.id, "round", w.round)
		}
	}
}

func ratio(total, failed int) float64 {
	if total == 0 {
		return -1
	}
	return float64(total-failed) / float64(total)
}

func victimNames(vs []Victim) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

// detected returns when the loss of victim v was detected: when the
// cluster has a control plane (control), when it noticed the loss itself
// (ControlView.noticed; an observation without its view tells nothing);
// without one, the first observation that shows v gone.
func detected(s Snapshot, v Node, faultAt time.Time, control bool) (time.Time, bool) {
	if control {
		return s.Control.noticed(v.Name, v.Generation, faultAt, s.Time)
	}
	if gone(s, v) {
		return s.Time, true
	}
	return time.Time{}, false
}

// gone reports whether the snapshot no longer shows the victim's machine
// live and healthy.
func gone(s Snapshot, v Node) bool {
	for _, n := range s.Nodes {
		if n.Machine == v.Machine {
			return !n.Healthy()
		}
	}
	return true
}

// recovered returns the node that recovers victim v: for destroy, a newer
// generation of the slot (or another machine), healthy; for power-off, the
// slot healthy again; for process faults, the node healthy with the killed
// or paused processes running again.
//
// With a control plane (control), the node must also be an alive member in
// its view: recovered means the cluster counts the node again (membership
// drives the lb backends and mail peers), not only that its agent answers.
func recovered(s Snapshot, v *Victim, k FaultKind, control bool) (Node, bool) {
	for _, n := range s.Nodes {
		if n.Name != v.Name || !n.Healthy() {
			continue
		}
		if control && !s.Control.alive(n.Name, n.Generation) {
			continue
		}
		switch {
		case k == FaultDestroy:
			if n.Generation > v.Generation || n.Machine != v.Machine {
				return n, true
			}
		case isProcessFault(k) && n.Machine == v.Machine:
			if v.back == nil || v.back() {
				return n, true
			}
		default:
			return n, true
		}
	}
	return Node{}, false
}

// watch observes the cluster every Poll until done returns true, the
// deadline passes, or ctx is done.
func (r *Runner) watch(ctx context.Context, deadline time.Time, done func(Snapshot) bool) {
	for {
		snap, err := r.observe(ctx)
		if err == nil && done(snap) {
			return
		}
		if err != nil {
			r.log().Warn("observe cluster", "err", err)
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, r.Options.Poll) {
			return
		}
	}
}

// observe takes a snapshot and adds it to the timeline.
func (r *Runner) observe(ctx context.Context) (Snapshot, error) {
	snap, err := r.Cluster.Snapshot(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("observe cluster %s: %w", r.Spec.Cluster, err)
	}
	if snap.Time.IsZero() {
		snap.Time = time.Now()
	}
	if r.roles != nil {
		r.roles.Update(snap)
	}
	r.control = r.control || snap.Control != nil
	cur := map[string]Node{}
	for _, n := range snap.Current() {
		cur[n.Name] = n
	}
	names := slices.Clone(r.order)
	for name := range cur {
		if r.timeline[name] == nil {
			r.timeline[name] = &NodeSeries{Name: name}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	r.order = names
	for _, name := range r.order {
		st, gen := "missing", 0
		if n, ok := cur[name]; ok {
			gen = n.Generation
			switch {
			case n.Healthy():
				st = "healthy"
			case n.State == "on" || n.State == "starting":
				st = "unhealthy"
			default:
				st = "off"
			}
		}
		ns := r.timeline[name]
		if k := len(ns.Spans); k > 0 && ns.Spans[k-1].State == st && ns.Spans[k-1].Generation == gen {
			ns.Spans[k-1].To = snap.Time
			continue
		}
		if k := len(ns.Spans); k > 0 {
			ns.Spans[k-1].To = snap.Time
		}
		ns.Spans = append(ns.Spans, Span{From: snap.Time, To: snap.Time, State: st, Generation: gen})
	}
	return snap, nil
}

func (r *Runner) finish() {
	rep := r.rep
	rep.Finished = time.Now()
	for _, name := range r.order {
		ns := *r.timeline[name]
		if k := len(ns.Spans); k > 0 && ns.Spans[k-1].To.Before(rep.Finished) {
			ns.Spans[k-1].To = rep.Finished
		}
		rep.Timeline = append(rep.Timeline, ns)
	}
	total, failed := 0, 0
	for _, p := range r.Probes {
		ss := r.sampler.Samples(p.Name())
		rep.Probes = append(rep.Probes, ProbeSeries{Name: p.Name(), Samples: ss})
		for _, s := range ss {
			total++
			if !s.OK && !s.Deferred {
				failed++
			}
		}
	}
	rep.Availability = ratio(total, failed)
	rep.Evaluate()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
