package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/spf13/cobra"
)

// statusNode is one machine in hactl status.
type statusNode struct {
	Name       string `json:"name"`
	Role       string `json:"role"`
	Slot       int    `json:"slot"`
	Generation int    `json:"generation"`
	Provider   string `json:"provider"`
	Machine    string `json:"machine"`
	Address    string `json:"address"`
	State      string `json:"state"`
	Health     string `json:"health"`
}

type statusRole struct {
	Role    string `json:"role"`
	Count   int    `json:"count"`
	Healthy int    `json:"healthy"`
	CanLose int    `json:"can_lose"`
	VIP     string `json:"vip,omitempty"`
}

type statusReport struct {
	Cluster string         `json:"cluster"`
	Nodes   []statusNode   `json:"nodes"`
	Roles   []statusRole   `json:"roles"`
	Missing []string       `json:"missing"`
	Pending []plan.Step    `json:"pending"`
	Quorum  plan.Quorum    `json:"quorum"`
	Time    time.Time      `json:"time"`
	Warn    []plan.Warning `json:"warnings"`
	// Control is the control plane as the first node that answered
	// /v1/cluster sees it (nil when none did).
	Control *agent.ClusterStatus `json:"control,omitempty"`
	// ControlFrom is the node that answered.
	ControlFrom string `json:"control_from,omitempty"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "status [DIR]",
		Short: "List the cluster's nodes, their health, and what is missing",
		Long: `Status lists every machine of the cluster (role, slot, generation,
provider, address, power state, agent health), each role's healthy count
against its declared count and failure tolerance, and the actions a plan
would take now (what is missing against the configuration).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			rep, err := w.status(cmd.Context())
			if err != nil {
				return err
			}
			if g.jsonOut {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			renderStatus(g, rep)
			return nil
		},
	}
	pf.register(cmd)
	return cmd
}

func (w *workspace) status(ctx context.Context) (statusReport, error) {
	obs, err := w.observe(ctx)
	if err != nil {
		return statusReport{}, err
	}
	res := plan.Plan(w.planInput(obs))
	rep := statusReport{Cluster: w.cfg.Cluster.Name, Quorum: res.Quorum, Time: time.Now().UTC(), Warn: res.Warnings, Pending: res.Steps}
	for _, o := range obs {
		m := o.Machine
		h := string(o.Health)
		if h == "" {
			h = "-"
		}
		rep.Nodes = append(rep.Nodes, statusNode{Name: m.Name, Role: m.Role, Slot: m.Slot, Generation: m.Generation,
			Provider: o.Provider, Machine: string(m.ID), Address: m.Address, State: string(m.State), Health: h})
	}
	sort.Slice(rep.Nodes, func(i, j int) bool {
		a, b := rep.Nodes[i], rep.Nodes[j]
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		return a.Generation < b.Generation
	})
	rep.ControlFrom, rep.Control = controlStatus(ctx, obs)
	vips := w.vipHolders(ctx)
	for _, t := range res.Tolerance {
		rep.Roles = append(rep.Roles, statusRole{Role: t.Role, Count: t.Count, Healthy: t.Healthy, CanLose: t.CanLose, VIP: vips[t.Role]})
	}
	for _, s := range res.Steps {
		if s.Action == plan.ActionCreate {
			rep.Missing = append(rep.Missing, s.Name)
		}
	}
	return rep, nil
}

// vipHolders reports, per role with a VIP, "address → holder" where the
// provider can tell.
func (w *workspace) vipHolders(ctx context.Context) map[string]string {
	out := map[string]string{}
	var mu sync.Mutex
	for _, r := range w.cfg.Roles {
		name := plan.VIPName(r)
		if name == "" {
			continue
		}
		p := w.provs[r.Provider]
		va, ok := p.(providers.VIPAssigner)
		if !ok {
			continue
		}
		id, err := va.VIPHolder(ctx, name)
		mu.Lock()
		switch {
		case err != nil:
			out[r.Name] = name + " (holder unknown: " + err.Error() + ")"
		case id == "":
			out[r.Name] = name + " (unassigned)"
		default:
			out[r.Name] = name + " → " + string(id)
		}
		mu.Unlock()
	}
	return out
}

// controlStatus asks the agents of passing nodes, in order, for
// /v1/cluster and returns the first answer that names a leader with quorum,
// else the first answer. A node started a moment ago (a slot just rebuilt)
// knows no leader and has no log yet; its view is the cluster's only when
// no other node knows better.
func controlStatus(ctx context.Context, obs []plan.Observed) (string, *agent.ClusterStatus) {
	client := &http.Client{Timeout: 2 * time.Second}
	var firstFrom string
	var first *agent.ClusterStatus
	for _, o := range obs {
		if o.Health != plan.HealthPassing || o.Machine.Address == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL(o.Machine.Address, "/v1/cluster"), nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var cs agent.ClusterStatus
		err = json.NewDecoder(resp.Body).Decode(&cs)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			continue
		}
		if cs.Leader != "" && cs.Quorum {
			return o.Machine.Name, &cs
		}
		if first == nil {
			firstFrom, first = o.Machine.Name, &cs
		}
	}
	return firstFrom, first
}

func renderControl(out io.Writer, from string, cs *agent.ClusterStatus) {
	if cs == nil {
		fmt.Fprintln(out, "Control plane: no node answered /v1/cluster.")
		return
	}
	leader := cs.Leader
	if leader == "" {
		leader = "none"
	}
	quorum := "no quorum"
	if cs.Quorum {
		quorum = "quorum"
	}
	fmt.Fprintf(out, "Control plane (as %s sees it): leader %s, %s, voters %s.\n", from, leader, quorum, strings.Join(cs.Voters, " "))
	var vips []string
	for v := range cs.VIPs {
		vips = append(vips, v)
	}
	sort.Strings(vips)
	for _, v := range vips {
		h := cs.VIPs[v]
		if h == "" {
			h = "(unassigned)"
		}
		fmt.Fprintf(out, "  VIP %s held by %s\n", v, h)
	}
	for _, r := range cs.Rebuilds {
		fmt.Fprintf(out, "  rebuild %s generation %d: %s since %s\n", r.Name, r.Generation, r.State, r.Started.Format(time.RFC3339))
	}
}

func renderStatus(g *globals, rep statusReport) {
	out := g.stdout
	fmt.Fprintf(out, "Cluster %s\n\n", rep.Cluster)
	if len(rep.Nodes) == 0 {
		fmt.Fprintln(out, "No machines.")
	} else {
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tROLE\tGEN\tPROVIDER\tADDRESS\tSTATE\tHEALTH")
		for _, n := range rep.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Generation, n.Provider, n.Address, n.State, n.Health)
		}
		tw.Flush()
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tHEALTHY\tCAN LOSE\tVIP")
	for _, r := range rep.Roles {
		fmt.Fprintf(tw, "%s\t%d/%d\t%d\t%s\n", r.Role, r.Healthy, r.Count, r.CanLose, r.VIP)
	}
	tw.Flush()
	q := rep.Quorum
	fmt.Fprintf(out, "\nVoters: %d, quorum %d, may lose %d.\n", q.Voters, q.Quorum, q.CanFail)
	renderControl(out, rep.ControlFrom, rep.Control)
	if len(rep.Pending) == 0 {
		fmt.Fprintln(out, "Nothing missing: the cluster matches the configuration.")
		return
	}
	fmt.Fprintf(out, "\n%d action(s) pending (run hactl apply):\n", len(rep.Pending))
	for _, s := range rep.Pending {
		fmt.Fprintf(out, "  %s %s (%s)\n", s.Action, s.Name, s.Reason)
	}
}
