package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// AgentPort is the port of the agent's local API (agent.DefaultAPIPort).
const AgentPort = 7480

// Health of a node as chaos sees it.
const (
	HealthPassing     = "passing"     // /healthz answered 200
	HealthFailing     = "failing"     // /healthz answered something else
	HealthUnreachable = "unreachable" // no answer from the agent
	HealthOff         = "off"         // the provider says the machine is not running
)

// Node is one machine of the cluster at one observation. Values are copies.
type Node struct {
	Name        string `json:"name"` // "<role>-<slot>"
	ClusterName string `json:"cluster"`
	Role        string `json:"role"`
	Slot        int    `json:"slot"`
	Generation  int    `json:"generation"`
	// Provider is the provider's name in the configuration; ProviderType its type (local, digitalocean, ...).
	Provider     string               `json:"provider"`
	ProviderType string               `json:"provider_type"`
	Machine      providers.MachineID  `json:"machine"`
	Address      string               `json:"address"`
	State        providers.PowerState `json:"state"`
	Health       string               `json:"health"`
	// Voter is true when the control plane reports the node as a raft voter
	// (meaningful only when Snapshot.VotersKnown).
	Voter bool `json:"voter,omitempty"`
}

// Cluster returns the node's cluster name.
func (n Node) Cluster() string { return n.ClusterName }

// Healthy reports whether the node is on and its agent answers healthy.
func (n Node) Healthy() bool { return n.State == providers.PowerOn && n.Health == HealthPassing }

// Snapshot is one observation of the cluster.
type Snapshot struct {
	Time  time.Time `json:"time"`
	Nodes []Node    `json:"nodes"` // every generation, sorted by name then generation
	// Recovering names the nodes with a recovery in flight (a rebuild the
	// control plane has planned or started, or a machine still booting).
	Recovering []string `json:"recovering,omitempty"`
	// VotersKnown is true when Node.Voter comes from the control plane. When
	// it is false, the outage check assumes every victim is a voter.
	VotersKnown bool `json:"voters_known"`
	// Control is the control plane's own view (nil when no node answered
	// GET /v1/cluster): what the cluster itself has noticed.
	Control *ControlView `json:"control,omitempty"`
}

// ControlView is the part of a node's GET /v1/cluster that chaos uses.
type ControlView struct {
	From     string           `json:"from"` // node that answered
	Leader   string           `json:"leader"`
	Quorum   bool             `json:"quorum"`
	Voters   []string         `json:"voters"` // "name@generation"
	Members  []ControlMember  `json:"members"`
	Rebuilds []ControlRebuild `json:"rebuilds"` // in flight
}

// ControlMember is one gossip member as the control plane sees it.
type ControlMember struct {
	Name       string `json:"name"`
	Generation int    `json:"generation"`
	State      string `json:"state"` // alive, suspect, dead, left
}

// ControlRebuild is a rebuild the control plane has in flight.
type ControlRebuild struct {
	Name       string    `json:"name"`
	Generation int       `json:"generation"`
	State      string    `json:"state"` // planned, running, waiting
	Started    time.Time `json:"started"`
}

// alive reports whether the view has the member name@gen alive.
func (c *ControlView) alive(name string, gen int) bool {
	if c == nil {
		return false
	}
	for _, m := range c.Members {
		if m.Name == name && m.Generation == gen && m.State == "alive" {
			return true
		}
	}
	return false
}

// noticed returns when the control plane shows that it noticed the loss of
// victim v (generation gen): a rebuild of the slot to a newer generation
// (at its recorded start when that is within [since, at]), or the victim's
// member no longer alive, or a newer generation already a member.
func (c *ControlView) noticed(name string, gen int, since, at time.Time) (time.Time, bool) {
	if c == nil {
		return time.Time{}, false
	}
	for _, rb := range c.Rebuilds {
		if rb.Name == name && rb.Generation > gen {
			if !rb.Started.Before(since) && rb.Started.Before(at) {
				return rb.Started, true
			}
			return at, true
		}
	}
	for _, m := range c.Members {
		if m.Name == name && (m.Generation > gen || (m.Generation == gen && m.State != "alive")) {
			return at, true
		}
	}
	return time.Time{}, false
}

// Current returns the newest generation of every node name, sorted by name.
func (s Snapshot) Current() []Node {
	by := map[string]Node{}
	for _, n := range s.Nodes {
		if o, ok := by[n.Name]; !ok || n.Generation > o.Generation {
			by[n.Name] = n
		}
	}
	out := make([]Node, 0, len(by))
	for _, n := range by {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Cluster is chaos's view of the cluster.
//
// Snapshot must return a fresh observation each call (no caching across
// calls), may block on the network until ctx is done, and is called from one
// goroutine at a time. An error means the cluster could not be observed at
// all; a node that does not answer is a node with HealthUnreachable, not an
// error.
type Cluster interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// RoleSpec is what the configuration declares about one role, as far as
// chaos cares.
type RoleSpec struct {
	Name         string `json:"name"`
	Count        int    `json:"count"`
	CanLose      int    `json:"can_lose"`
	Provider     string `json:"provider"`
	ProviderType string `json:"provider_type"`
}

// Spec is the declared shape of the cluster: roles, tolerance, quorum and
// objectives.
type Spec struct {
	Cluster    string          `json:"cluster"`
	Roles      []RoleSpec      `json:"roles"`
	Voters     int             `json:"voters"`
	Quorum     int             `json:"quorum"`
	Objectives lang.Objectives `json:"-"`
}

// Role returns the spec of the named role.
func (s Spec) Role(name string) (RoleSpec, bool) {
	for _, r := range s.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return RoleSpec{}, false
}

// ProviderType returns the type of a provider named in cfg ("local" is implicit).
func ProviderType(cfg *lang.Config, name string) string {
	if p, ok := cfg.Providers[name]; ok && p.Type != "" {
		return p.Type
	}
	return name
}

// SpecFromConfig derives the spec from a configuration; tolerance and
// quorum come from the planner, so chaos and plan agree on them.
func SpecFromConfig(cfg *lang.Config) Spec {
	res := plan.Plan(plan.Input{Config: cfg, Now: time.Unix(0, 0)})
	s := Spec{Voters: res.Quorum.Voters, Quorum: res.Quorum.Quorum}
	if cfg.Cluster != nil {
		s.Cluster, s.Objectives = cfg.Cluster.Name, cfg.Cluster.Objectives
	}
	for _, t := range res.Tolerance {
		r := cfg.Role(t.Role)
		if r == nil {
			continue
		}
		s.Roles = append(s.Roles, RoleSpec{Name: r.Name, Count: r.Count, CanLose: t.CanLose,
			Provider: r.Provider, ProviderType: ProviderType(cfg, r.Provider)})
	}
	return s
}

// ProviderCluster observes the cluster through each provider's List and
// each running node's GET /healthz and GET /v1/status on AgentPort. It is
// what exists before the control plane is wired into the agent: it reports
// a recovery in flight when a machine is still starting or when a slot has
// more than one generation (a rebuild half-way), and it does not know the
// voters.
type ProviderCluster struct {
	Name string // cluster name
	// Providers by their name in the configuration, with their types.
	Providers     map[string]providers.Provider
	ProviderTypes map[string]string
	// Client is used for health requests (nil = 2 s timeout client).
	Client *http.Client
	// Port overrides AgentPort (tests).
	Port int
}

// Snapshot implements Cluster.
func (pc *ProviderCluster) Snapshot(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Time: time.Now()}
	names := make([]string, 0, len(pc.Providers))
	for n := range pc.Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, pn := range names {
		ms, err := pc.Providers[pn].List(ctx, pc.Name)
		if err != nil {
			return Snapshot{}, fmt.Errorf("list machines of cluster %s on provider %q: %w", pc.Name, pn, err)
		}
		for _, m := range ms {
			snap.Nodes = append(snap.Nodes, Node{Name: m.Name, ClusterName: pc.Name, Role: m.Role, Slot: m.Slot, Generation: m.Generation,
				Provider: pn, ProviderType: cmp.Or(pc.ProviderTypes[pn], pn), Machine: m.ID, Address: m.Address, State: m.State})
		}
	}
	client := pc.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	port := cmp.Or(pc.Port, AgentPort)
	var wg sync.WaitGroup
	for i := range snap.Nodes {
		n := &snap.Nodes[i]
		if n.State != providers.PowerOn || n.Address == "" {
			n.Health = HealthOff
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.Health = healthOf(ctx, client, "http://"+net.JoinHostPort(n.Address, strconv.Itoa(port))+"/healthz")
		}()
	}
	wg.Wait()
	slices.SortFunc(snap.Nodes, func(a, b Node) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Generation, b.Generation))
	})
	gens := map[string]int{}
	for _, n := range snap.Nodes {
		gens[n.Name]++
		if n.State == providers.PowerStarting {
			snap.Recovering = append(snap.Recovering, n.Name)
		}
	}
	for name, c := range gens {
		if c > 1 && !slices.Contains(snap.Recovering, name) {
			snap.Recovering = append(snap.Recovering, name)
		}
	}
	if c := pc.control(ctx, client, port, snap.Nodes); c != nil {
		snap.Control, snap.VotersKnown = c, true
		for i := range snap.Nodes {
			n := &snap.Nodes[i]
			n.Voter = slices.Contains(c.Voters, n.Name+"@"+strconv.Itoa(n.Generation))
		}
		for _, rb := range c.Rebuilds {
			if !slices.Contains(snap.Recovering, rb.Name) {
				snap.Recovering = append(snap.Recovering, rb.Name)
			}
		}
	}
	slices.Sort(snap.Recovering)
	return snap, nil
}

// control asks the healthy nodes, in order, for GET /v1/cluster and returns
// the first answer from a node that has quorum (nil when none has).
func (pc *ProviderCluster) control(ctx context.Context, client *http.Client, port int, nodes []Node) *ControlView {
	for _, n := range nodes {
		if !n.Healthy() {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(n.Address, strconv.Itoa(port))+"/v1/cluster", nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var c ControlView
		err = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&c)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !c.Quorum {
			continue
		}
		c.From = n.Name
		return &c
	}
	return nil
}

func healthOf(ctx context.Context, client *http.Client, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return HealthUnreachable
	}
	resp, err := client.Do(req)
	if err != nil {
		return HealthUnreachable
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK {
		return HealthPassing
	}
	return HealthFailing
}
