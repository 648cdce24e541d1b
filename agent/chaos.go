package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/hactl/hactl/cluster"
)

// ChaosLog is what the chaos schedule needs of the control plane
// (*cluster.Node): the chaos part of the log, and writers that work on the
// leader only (cluster.ErrNotLeader elsewhere).
type ChaosLog interface {
	IsLeader() bool
	ServerID() string
	Chaos() cluster.ChaosState
	SetChaosSchedule(*cluster.ChaosSchedule) error
	SetChaosPaused(paused bool, reason string) error
	RecordChaosRun(cluster.ChaosRun) error
}

// ChaosScheduleRequest is the body of POST /v1/chaos/schedule.
type ChaosScheduleRequest struct {
	Spec    string          `json:"spec"`
	Options json.RawMessage `json:"options,omitempty"`
}

// ChaosPauseRequest is the body of POST /v1/chaos/pause.
type ChaosPauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// chaosLog returns the control plane as a ChaosLog, writing the error
// answer when it is none.
func (a *Agent) chaosLog(w http.ResponseWriter) (ChaosLog, bool) {
	if a.opts.Control == nil {
		http.Error(w, "this node runs without the control plane", http.StatusNotFound)
		return nil, false
	}
	cl, ok := a.opts.Control.(ChaosLog)
	if !ok {
		http.Error(w, "this node's control plane keeps no chaos schedule", http.StatusNotImplemented)
		return nil, false
	}
	return cl, true
}

// chaosWrite answers a chaos log write: 200 with the new chaos state, 421
// NotLeader on a node that does not lead.
func (a *Agent) chaosWrite(w http.ResponseWriter, cl ChaosLog, err error) {
	if errors.Is(err, cluster.ErrNotLeader) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMisdirectedRequest)
		_ = json.NewEncoder(w).Encode(NotLeader{Error: "not the leader with quorum", Leader: a.opts.Control.Status().Leader})
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, cl.Chaos())
}

func (a *Agent) serveChaos(w http.ResponseWriter, r *http.Request) {
	if cl, ok := a.chaosLog(w); ok {
		writeJSON(w, cl.Chaos())
	}
}

func (a *Agent) serveChaosSchedule(w http.ResponseWriter, r *http.Request) {
	cl, ok := a.chaosLog(w)
	if !ok {
		return
	}
	var req ChaosScheduleRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Spec == "" {
		http.Error(w, `body must be {"spec": CRON, "options": {...}}`, http.StatusBadRequest)
		return
	}
	if _, err := cron.ParseStandard(req.Spec); err != nil {
		http.Error(w, fmt.Sprintf("schedule %q: %v", req.Spec, err), http.StatusBadRequest)
		return
	}
	a.chaosWrite(w, cl, cl.SetChaosSchedule(&cluster.ChaosSchedule{Spec: req.Spec, Options: req.Options, By: a.id.Name}))
}

func (a *Agent) serveChaosUnschedule(w http.ResponseWriter, r *http.Request) {
	if cl, ok := a.chaosLog(w); ok {
		a.chaosWrite(w, cl, cl.SetChaosSchedule(nil))
	}
}

func (a *Agent) serveChaosPause(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cl, ok := a.chaosLog(w)
		if !ok {
			return
		}
		var req ChaosPauseRequest
		if pause && r.ContentLength != 0 {
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
				http.Error(w, `body must be {"reason": TEXT}`, http.StatusBadRequest)
				return
			}
		}
		a.chaosWrite(w, cl, cl.SetChaosPaused(pause, req.Reason))
	}
}

// ChaosRunFunc performs one scheduled chaos run with the schedule's options
// and returns its outcome (Stage, Seed, Rounds, Pass, Skipped, Error,
// Report; the host fills the rest). paused reports the kill switch as the
// log has it now: the run must check it before every round. ctx is
// cancelled when the host stops leading.
type ChaosRunFunc func(ctx context.Context, s cluster.ChaosSchedule, paused func() (bool, string)) cluster.ChaosRun

// ChaosHost runs the cluster's chaos schedule while its node leads. It
// reads the schedule and the kill switch from the log, fires at the
// schedule's times (robfig/cron/v3), records each run as running before it
// starts and with its outcome when it ends, and records a run that is due
// while the kill switch is set as skipped. A node that becomes leader first
// records every run still marked running as interrupted: its leader died or
// lost leadership before finishing it (this host cancels its own run when it
// stops leading, so a running record is never its live run). One goroutine
// (Run) owns it.
type ChaosHost struct {
	Log ChaosLog
	Run ChaosRunFunc
	// Tick is how often leadership and the schedule are checked (1s).
	Tick   time.Duration
	Logger *slog.Logger
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

func (h *ChaosHost) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Serve runs the host until ctx is done.
func (h *ChaosHost) Serve(ctx context.Context) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := h.Tick
	if tick <= 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	leading := false
	var cur *cluster.ChaosSchedule
	var sched cron.Schedule
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !h.Log.IsLeader() {
			leading, cur = false, nil
			continue
		}
		st := h.Log.Chaos()
		if !leading {
			if h.interruptLeftovers(st, log) != nil {
				continue // not leading after all: try again next tick
			}
			leading = true
		}
		if st.Schedule == nil {
			cur = nil
			continue
		}
		now := h.now()
		if cur == nil || cur.Spec != st.Schedule.Spec || !cur.Set.Equal(st.Schedule.Set) {
			s, err := cron.ParseStandard(st.Schedule.Spec)
			if err != nil {
				log.Error("chaos schedule in the log is invalid", "schedule", st.Schedule.Spec, "err", err)
				cur, sched = st.Schedule, nil
				continue
			}
			cur, sched, next = st.Schedule, s, s.Next(now)
			log.Info("chaos schedule hosted by the leader", "schedule", cur.Spec, "next", next)
		}
		if sched == nil || now.Before(next) {
			continue
		}
		next = sched.Next(now)
		h.fire(ctx, *st.Schedule, st, log)
	}
}

// interruptLeftovers records every run still marked running as interrupted.
func (h *ChaosHost) interruptLeftovers(st cluster.ChaosState, log *slog.Logger) error {
	for _, r := range st.Runs {
		if r.State != cluster.ChaosRunning {
			continue
		}
		r.State, r.Finished, r.Pass = cluster.ChaosInterrupted, h.now().UTC(), false
		r.Error = fmt.Sprintf("its leader %s stopped leading before the run finished; %s took over", r.Leader, h.Log.ServerID())
		if err := h.Log.RecordChaosRun(r); err != nil {
			return err
		}
		log.Warn("chaos run interrupted by a change of leader", "run", r.ID, "leader", r.Leader)
	}
	return nil
}

// fire performs one due run.
func (h *ChaosHost) fire(ctx context.Context, s cluster.ChaosSchedule, st cluster.ChaosState, log *slog.Logger) {
	started := h.now().UTC()
	run := cluster.ChaosRun{ID: started.Format("20060102T150405.000Z"), Schedule: s.Spec, Leader: h.Log.ServerID(), Started: started}
	if st.Paused {
		run.State, run.Finished, run.Skipped = cluster.ChaosSkipped, started, "kill switch: "+pauseWhy(st)
		if err := h.Log.RecordChaosRun(run); err != nil {
			log.Warn("record skipped chaos run", "err", err)
		}
		log.Info("scheduled chaos skipped", "reason", run.Skipped)
		return
	}
	run.State = cluster.ChaosRunning
	if err := h.Log.RecordChaosRun(run); err != nil {
		log.Warn("scheduled chaos not started: its start could not be recorded", "err", err)
		return
	}
	log.Info("scheduled chaos run started", "run", run.ID, "schedule", s.Spec)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	go func() { // cancel the run when this node stops leading
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if !h.Log.IsLeader() {
					close(lost)
					cancel()
					return
				}
			}
		}
	}()
	paused := func() (bool, string) {
		c := h.Log.Chaos()
		return c.Paused, pauseWhy(c)
	}
	out := h.Run(rctx, s, paused)
	cancel()
	select {
	case <-lost:
		log.Warn("scheduled chaos run cut off: this node stopped leading", "run", run.ID)
		return // the next leader records it as interrupted
	default:
	}
	out.ID, out.Schedule, out.Leader, out.Started = run.ID, run.Schedule, run.Leader, run.Started
	out.State, out.Finished = cluster.ChaosDone, h.now().UTC()
	if err := h.Log.RecordChaosRun(out); err != nil {
		log.Warn("record chaos run outcome", "run", run.ID, "err", err)
	}
	log.Info("scheduled chaos run finished", "run", run.ID, "pass", out.Pass, "skipped", out.Skipped, "error", out.Error)
}

func pauseWhy(c cluster.ChaosState) string {
	if !c.Paused {
		return ""
	}
	why := "paused at " + c.PausedAt.UTC().Format(time.RFC3339)
	if c.PauseReason != "" {
		why += ": " + c.PauseReason
	}
	return why
}
