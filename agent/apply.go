package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/lang"
)

// Reconciler is what POST /v1/apply needs of the control plane beyond
// ControlPlane (*cluster.Node): whether it reconciles, and a way to follow
// its reconciler until a configuration is carried out.
type Reconciler interface {
	Reconciles() bool
	WaitReconciled(ctx context.Context, current func(*lang.Config) bool, progress func(cluster.Rebuild)) error
}

// ApplyRequest is the body of POST /v1/apply.
type ApplyRequest struct {
	// Revision is the published commit the leader must converge to and plan against.
	Revision string `json:"revision"`
}

// ApplyEvent is one line of POST /v1/apply's newline-delimited JSON stream.
// Kind is "accepted" (the leader took the apply), "revision" (the revision
// is in force on the leader), "rebuild" (a slot's recorded rebuild changed),
// "done" (the reconciler has nothing left to do) or "error" (last line).
type ApplyEvent struct {
	Time       time.Time   `json:"time"`
	Kind       string      `json:"kind"`
	Leader     string      `json:"leader"`
	Slot       string      `json:"slot,omitempty"`
	Generation int         `json:"generation,omitempty"`
	State      string      `json:"state,omitempty"`
	Steps      []ApplyStep `json:"steps,omitempty"`
	Message    string      `json:"message,omitempty"`
}

// ApplyStep is one recorded step of a rebuild.
type ApplyStep struct {
	Action  string `json:"action"`
	Name    string `json:"name"`
	Machine string `json:"machine,omitempty"`
	Done    bool   `json:"done"`
}

// NotLeader is the 421 answer of POST /v1/apply on a node that does not lead.
type NotLeader struct {
	Error  string `json:"error"`
	Leader string `json:"leader"` // server id "name@generation", "" when unknown
}

// applyTimeout bounds one apply on the leader (a rebuild times out after 10m).
const applyTimeout = 15 * time.Minute

// serveApply is POST /v1/apply: on the leader, converge to the revision and
// stream the reconciler's progress until it has nothing left to do. Other
// nodes answer 421 with the leader's id; a node without a reconciler 501.
func (a *Agent) serveApply(w http.ResponseWriter, r *http.Request) {
	if a.opts.Control == nil {
		http.Error(w, "this node runs without the control plane", http.StatusNotFound)
		return
	}
	rc, ok := a.opts.Control.(Reconciler)
	if !ok || !rc.Reconciles() {
		http.Error(w, "this node's control plane does not reconcile (its provider cannot be driven from the nodes)", http.StatusNotImplemented)
		return
	}
	var req ApplyRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.Revision == "" {
		http.Error(w, "body must be {\"revision\": COMMIT}", http.StatusBadRequest)
		return
	}
	st := a.opts.Control.Status()
	if !st.IsLeader || !st.Quorum {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMisdirectedRequest)
		_ = json.NewEncoder(w).Encode(NotLeader{Error: "not the leader with quorum", Leader: st.Leader})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), applyTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	emit := func(ev ApplyEvent) {
		ev.Time, ev.Leader = time.Now().UTC(), st.Name
		_ = enc.Encode(ev)
		if fl != nil {
			fl.Flush()
		}
	}
	a.log.Info("apply through the leader", "revision", req.Revision)
	emit(ApplyEvent{Kind: "accepted", Message: "the leader carries out revision " + req.Revision})
	if err := a.waitRevision(ctx, req.Revision); err != nil {
		emit(ApplyEvent{Kind: "error", Message: err.Error()})
		return
	}
	emit(ApplyEvent{Kind: "revision", Message: "revision " + req.Revision + " is in force on the leader"})
	current := func(c *lang.Config) bool { return c == a.Spec() && a.Status().LastGood == req.Revision }
	err := rc.WaitReconciled(ctx, current, func(rb cluster.Rebuild) {
		ev := ApplyEvent{Kind: "rebuild", Slot: rb.Name, Generation: rb.Generation, State: rb.State, Message: rb.Error}
		for _, s := range rb.Steps {
			ev.Steps = append(ev.Steps, ApplyStep{Action: string(s.Step.Action), Name: s.Step.Name, Machine: string(s.Step.Machine), Done: s.Done})
		}
		emit(ev)
	})
	if err != nil {
		emit(ApplyEvent{Kind: "error", Message: err.Error()})
		return
	}
	emit(ApplyEvent{Kind: "done", Message: "the reconciler has nothing left to do for revision " + req.Revision})
}

// waitRevision pulls until rev is the last good revision, asking again
// every two seconds.
func (a *Agent) waitRevision(ctx context.Context, rev string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Time{}
	for {
		s := a.Status()
		if s.LastGood == rev {
			return nil
		}
		for _, rf := range s.Refused {
			if rf.Commit == rev {
				return fmt.Errorf("revision %s refused on the leader: %s: %s", rev, rf.Reason, rf.Error)
			}
		}
		if time.Since(last) >= 2*time.Second {
			a.Notify()
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("revision %s not in force on the leader in time (last good %s, pull error %q)", rev, s.LastGood, s.PullError)
			}
			return err
		case <-t.C:
		}
	}
}
