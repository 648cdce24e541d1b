package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hactl/hactl/lang"
)

// An apply against a live cluster is carried out by the leader's reconciler,
// never by a second executor: the CLI publishes the configuration, the
// leader's agent converges to that revision (so Config.Spec returns it), and
// WaitReconciled follows the reconciler until it has nothing left to do.

// ErrNotLeader is returned by WaitReconciled on a node that is not (or stops
// being) the raft leader with quorum.
var ErrNotLeader = errors.New("not the raft leader")

// ErrNoReconciler is returned by WaitReconciled on a node built without a
// reconciler (Config.Planner or Config.Spec nil).
var ErrNoReconciler = errors.New("this node runs no reconciler")

// plannedAt is the outcome of the reconciler's last planning pass.
type plannedAt struct {
	At    time.Time
	Spec  *lang.Config // the configuration planned against
	Steps int          // steps other than VIP moves (the log owns VIPs)
}

// Reconciles reports whether this node runs the reconciler when it leads.
func (n *Node) Reconciles() bool { return n.cfg.Planner != nil && n.cfg.Spec != nil }

// WaitReconciled blocks until the leader's reconciler has planned, after the
// call started, against a configuration current accepts (the caller's test
// that the Config.Spec value is the revision being applied) and found
// nothing left to do, with
// no rebuild planned or running. progress is called (from this goroutine)
// with every new or changed rebuild record. It fails with the rebuild's
// error when a rebuild recorded after the call started fails, with
// ErrNotLeader when leadership is lost (the next leader resumes the recorded
// rebuilds; the caller may ask it), and with ctx's error.
func (n *Node) WaitReconciled(ctx context.Context, current func(*lang.Config) bool, progress func(Rebuild)) error {
	if !n.Reconciles() {
		return ErrNoReconciler
	}
	start := time.Now()
	seen := map[string]string{} // slot → last reported fingerprint
	poll := max(n.cfg.Tick/2, 20*time.Millisecond)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		if !n.IsLeader() {
			return fmt.Errorf("node %s: %w", n.cfg.Name, ErrNotLeader)
		}
		_, f := n.raft()
		st := f.state()
		busy := false
		var changed []Rebuild
		for name, rb := range st.Rebuilds {
			if rb.Updated.Before(start) && !active(rb) {
				continue // history from before this apply
			}
			if rb.State == RebuildPlanned || rb.State == RebuildRunning {
				busy = true
			}
			fp := rebuildFingerprint(rb)
			if seen[name] != fp {
				seen[name] = fp
				changed = append(changed, rb)
			}
		}
		slices.SortFunc(changed, func(a, b Rebuild) int { return a.Updated.Compare(b.Updated) })
		for _, rb := range changed {
			if progress != nil {
				progress(rb)
			}
			if rb.State == RebuildFailed && !rb.Updated.Before(start) {
				return fmt.Errorf("rebuild of %s (generation %d) failed: %s", rb.Name, rb.Generation, rb.Error)
			}
		}
		n.mu.Lock()
		p := n.planned
		n.mu.Unlock()
		if !busy && p.At.After(start) && p.Spec != nil && current(p.Spec) && p.Steps == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stop:
			return fmt.Errorf("node %s stopped", n.cfg.Name)
		case <-t.C:
		}
	}
}

func rebuildFingerprint(rb Rebuild) string {
	done := 0
	for _, s := range rb.Steps {
		if s.Done {
			done++
		}
	}
	return fmt.Sprintf("%s/%d/%d/%d/%s", rb.State, rb.Generation, done, rb.Attempts, rb.Error)
}
