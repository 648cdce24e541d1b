package agent

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/hactl/hactl/cluster"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the local API:
//
//	GET  /healthz     200 "ok" when the last run succeeded or a last good
//	                  configuration is in force, else 503 with the reason
//	GET  /v1/status   Status as JSON
//	POST /v1/notify   run at once (a new revision exists); 202
//	GET  /v1/members  the members this node knows, by role
//	GET  /v1/cluster  the control plane as this node sees it (ClusterStatus);
//	                  404 when the node runs without one
//	GET  /v1/events   the cluster's history (ClusterEvent list)
//	POST /v1/events   on the leader: append a data event another node
//	                  forwards (EventPost; data-*/backup-* kinds only);
//	                  421 elsewhere
//	POST /v1/backup-runner  on the leader: name a node as a role's backup
//	                  runner in the log (RunnerClaim) unless another live
//	                  node of a lower or equal slot is named (409); 421
//	                  elsewhere
//	POST /v1/apply    on the leader: converge to {"revision"} and stream the
//	                  reconciler's progress as ApplyEvent lines (NDJSON);
//	                  421 NotLeader elsewhere, 501 without a reconciler
//	GET  /v1/chaos    the chaos schedule, kill switch and runs in the log
//	                  (cluster.ChaosState), from any node
//	POST /v1/chaos/schedule, DELETE /v1/chaos/schedule,
//	POST /v1/chaos/pause, POST /v1/chaos/resume
//	                  on the leader: change them in the log (chaos.go);
//	                  421 NotLeader elsewhere
//	GET  /metrics     Prometheus metrics
//
// The API is unauthenticated and must only listen on the node's private
// address: notify can only trigger a pull of signed configuration, status
// carries no secrets, POST /v1/events can only add data events to the
// history, and POST /v1/backup-runner can only move a role's backups away
// from a named node that is dead or of a higher slot.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s := a.Status()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if s.Healthy {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		msg := "no run yet"
		if s.LastRun != nil && s.LastRun.Error != "" {
			msg = s.LastRun.Error
		}
		_, _ = w.Write([]byte("unhealthy: " + msg + "\n"))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status())
	})
	mux.HandleFunc("POST /v1/notify", func(w http.ResponseWriter, r *http.Request) {
		a.Notify()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte("{\"queued\":true}\n"))
	})
	mux.HandleFunc("GET /v1/members", func(w http.ResponseWriter, r *http.Request) {
		type member struct {
			Name    string `json:"name"`
			Role    string `json:"role"`
			Slot    int    `json:"slot"`
			Address string `json:"address"`
		}
		out := []member{}
		for role, ms := range a.members() {
			for _, m := range ms {
				out = append(out, member{Name: m.Name, Role: role, Slot: m.Slot, Address: m.Address})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeJSON(w, map[string]any{"members": out})
	})
	mux.HandleFunc("GET /v1/cluster", func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Control == nil {
			http.Error(w, "this node runs without the control plane", http.StatusNotFound)
			return
		}
		writeJSON(w, NewClusterStatus(a.opts.Control.Status()))
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Control == nil {
			http.Error(w, "this node runs without the control plane", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"events": NewClusterEvents(a.opts.Control.Events())})
	})
	mux.HandleFunc("POST /v1/events", serveRecordEvent(a.opts.Control))
	mux.HandleFunc("POST /v1/backup-runner", serveClaimRunner(a.opts.Control))
	mux.HandleFunc("POST /v1/apply", a.serveApply)
	mux.HandleFunc("GET /v1/chaos", a.serveChaos)
	mux.HandleFunc("POST /v1/chaos/schedule", a.serveChaosSchedule)
	mux.HandleFunc("DELETE /v1/chaos/schedule", a.serveChaosUnschedule)
	mux.HandleFunc("POST /v1/chaos/pause", a.serveChaosPause(true))
	mux.HandleFunc("POST /v1/chaos/resume", a.serveChaosPause(false))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.met.reg, promhttp.HandlerOpts{}))
	return mux
}

// ControlPlane is what the API needs of the node's control plane
// (*cluster.Node). Both methods return copies and are safe for concurrent use.
type ControlPlane interface {
	Status() cluster.Status
	Events() []cluster.Event
}

// ClusterStatus is GET /v1/cluster: quorum, leader, voters, VIP holders,
// rebuilds in flight and members, as this node sees them.
type ClusterStatus struct {
	Node       string            `json:"node"`
	Leader     string            `json:"leader"` // server id "name@generation"; "" when unknown
	IsLeader   bool              `json:"is_leader"`
	Quorum     bool              `json:"quorum"`
	SelfFenced bool              `json:"self_fenced"`
	Voters     []string          `json:"voters"`
	VIPs       map[string]string `json:"vips"` // VIP → holder in the log ("" = none)
	VIPsHeld   []string          `json:"vips_held"`
	Rebuilds   []ClusterRebuild  `json:"rebuilds"`
	Fences     []ClusterFence    `json:"fences"`
	Members    []ClusterMember   `json:"members"`
}

// ClusterRebuild is a rebuild in flight.
type ClusterRebuild struct {
	Name       string    `json:"name"`
	Generation int       `json:"generation"`
	State      string    `json:"state"`
	Started    time.Time `json:"started"`
	Attempts   int       `json:"attempts,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// ClusterFence is a confirmed fence.
type ClusterFence struct {
	Name       string    `json:"name"`
	Generation int       `json:"generation"`
	Machine    string    `json:"machine,omitempty"`
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
}

// ClusterMember is one gossip member.
type ClusterMember struct {
	Name       string   `json:"name"`
	Role       string   `json:"role"`
	Slot       int      `json:"slot"`
	Generation int      `json:"generation"`
	Address    string   `json:"address"`
	State      string   `json:"state"`
	Health     string   `json:"health,omitempty"`
	Revision   string   `json:"revision,omitempty"`
	Voter      bool     `json:"voter,omitempty"`
	VIPs       []string `json:"vips,omitempty"`
}

// ClusterEvent is one entry of the cluster's history.
type ClusterEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Node    string    `json:"node,omitempty"`
	Message string    `json:"message"`
	Local   bool      `json:"local,omitempty"` // decided without the log
	Index   uint64    `json:"index,omitempty"`
}

// NewClusterStatus converts the control plane's status to its API form.
func NewClusterStatus(s cluster.Status) ClusterStatus {
	out := ClusterStatus{Node: s.Name, Leader: s.Leader, IsLeader: s.IsLeader, Quorum: s.Quorum, SelfFenced: s.SelfFenced,
		Voters: append([]string{}, s.Voters...), VIPs: map[string]string{}, VIPsHeld: append([]string{}, s.VIPsHeld...),
		Rebuilds: []ClusterRebuild{}, Fences: []ClusterFence{}, Members: []ClusterMember{}}
	for v, h := range s.VIPHolders {
		out.VIPs[v] = h
	}
	for _, r := range s.Rebuilds {
		out.Rebuilds = append(out.Rebuilds, ClusterRebuild{Name: r.Name, Generation: r.Generation, State: r.State, Started: r.Started, Attempts: r.Attempts, Error: r.Error})
	}
	for _, f := range s.Fences {
		out.Fences = append(out.Fences, ClusterFence{Name: f.Name, Generation: f.Generation, Machine: f.Machine, At: f.At, Reason: f.Reason})
	}
	for _, m := range s.Members {
		addr := ""
		if m.Addr.IsValid() {
			addr = m.Addr.Addr().String()
		}
		out.Members = append(out.Members, ClusterMember{Name: m.Name, Role: m.Role, Slot: m.Slot, Generation: m.Generation,
			Address: addr, State: m.State.String(), Health: string(m.Health), Revision: m.Revision, Voter: m.Voter, VIPs: m.VIPs})
	}
	return out
}

// NewClusterEvents converts the control plane's history to its API form.
func NewClusterEvents(evs []cluster.Event) []ClusterEvent {
	out := make([]ClusterEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, ClusterEvent{Time: e.Time, Kind: e.Kind, Node: e.Node, Message: e.Message, Local: e.Local, Index: e.Index})
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
