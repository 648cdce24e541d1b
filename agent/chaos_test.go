package agent

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/cluster"
)

// memChaosLog is a ChaosLog in memory whose leadership the test flips.
type memChaosLog struct {
	leader atomic.Bool
	mu     sync.Mutex
	st     cluster.ChaosState
	writes []cluster.ChaosRun
}

func (l *memChaosLog) IsLeader() bool   { return l.leader.Load() }
func (l *memChaosLog) ServerID() string { return "db-1@1" }
func (l *memChaosLog) Chaos() cluster.ChaosState {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.st
	c.Runs = slices.Clone(l.st.Runs)
	return c
}
func (l *memChaosLog) SetChaosSchedule(s *cluster.ChaosSchedule) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Schedule = s
	return nil
}
func (l *memChaosLog) SetChaosPaused(p bool, why string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.st.Paused, l.st.PauseReason = p, why
	return nil
}
func (l *memChaosLog) RecordChaosRun(r cluster.ChaosRun) error {
	if !l.IsLeader() {
		return cluster.ErrNotLeader
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, r)
	if i := slices.IndexFunc(l.st.Runs, func(x cluster.ChaosRun) bool { return x.ID == r.ID }); i >= 0 {
		l.st.Runs[i] = r
	} else {
		l.st.Runs = append(l.st.Runs, r)
	}
	return nil
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countState(st cluster.ChaosState, state string) int {
	n := 0
	for _, r := range st.Runs {
		if r.State == state {
			n++
		}
	}
	return n
}

// TestChaosHost_Serve_LeaderRunsPauseSkipsTakeoverInterrupts: only a
// leader runs the schedule; each run is recorded running, then done with
// the outcome; a due run while paused is recorded skipped and never runs;
// a run cut off by the loss of leadership is cancelled and not recorded
// done, and the next leader records it as interrupted.
func TestChaosHost_Serve_LeaderRunsPauseSkipsTakeoverInterrupts(t *testing.T) {
	l := &memChaosLog{}
	l.st.Schedule = &cluster.ChaosSchedule{Spec: "@every 1s", Set: time.Now()}
	var runs atomic.Int32
	block := make(chan struct{}) // closed: runs return at once
	var cancelled atomic.Bool
	h := &ChaosHost{Log: l, Tick: 20 * time.Millisecond,
		Run: func(ctx context.Context, s cluster.ChaosSchedule, paused func() (bool, string)) cluster.ChaosRun {
			runs.Add(1)
			select {
			case <-block:
			case <-ctx.Done():
				cancelled.Store(true)
			}
			return cluster.ChaosRun{Stage: 1, Seed: 7, Rounds: 1, Pass: true}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	time.Sleep(1500 * time.Millisecond) // a due time passes while not leading (not a timing assertion)
	if n := runs.Load(); n != 0 {
		t.Fatalf("%d runs while not leading", n)
	}
	l.leader.Store(true)
	waitCond(t, "a run in flight", func() bool { return countState(l.Chaos(), cluster.ChaosRunning) == 1 })
	l.leader.Store(false) // leadership lost mid-run
	waitCond(t, "the run cancelled", cancelled.Load)
	if st := l.Chaos(); countState(st, cluster.ChaosDone) != 0 {
		t.Fatalf("a cut-off run was recorded done: %+v", st.Runs)
	}
	close(block)
	l.leader.Store(true) // leading again: the leftover is interrupted
	waitCond(t, "the leftover interrupted and a run done", func() bool {
		st := l.Chaos()
		return countState(st, cluster.ChaosInterrupted) == 1 && countState(st, cluster.ChaosDone) >= 1
	})
	for _, r := range l.Chaos().Runs {
		if r.State == cluster.ChaosDone && (!r.Pass || r.Seed != 7 || r.Leader != "db-1@1" || r.Schedule != "@every 1s" || r.Finished.IsZero()) {
			t.Errorf("done run %+v; want the outcome with leader, schedule and finish time", r)
		}
	}
	_ = l.SetChaosPaused(true, "stop")
	before := runs.Load()
	waitCond(t, "a skipped run", func() bool { return countState(l.Chaos(), cluster.ChaosSkipped) >= 1 })
	if after := runs.Load(); after > before+1 { // one may have been due just before the pause
		t.Errorf("%d runs while paused", after-before)
	}
	for _, r := range l.Chaos().Runs {
		if r.State == cluster.ChaosSkipped && (!strings.HasPrefix(r.Skipped, "kill switch: paused at ") || !strings.HasSuffix(r.Skipped, ": stop")) {
			t.Errorf("skipped run %+v; want the kill switch and its reason", r)
		}
	}
}
