package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/spf13/cobra"
)

func newEventsCmd(g *globals) *cobra.Command {
	var pf planFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "events [DIR]",
		Short: "Show the cluster's history: elections, fences, rebuilds, VIP moves",
		Long: `Events asks the raft leader of the cluster in DIR (default "."), else the
first healthy node that answers, for the control plane's history: the replicated log's events (bootstrap, leader
changes, voter changes, fences, rebuilds, VIP owners) merged with that node's
own decisions taken without the log (self-fence, refusals), oldest first.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := pf.workspace(g, dirArg(args))
			if err != nil {
				return err
			}
			obs, err := w.observe(cmd.Context())
			if err != nil {
				return err
			}
			from, evs, err := clusterEvents(cmd.Context(), obs)
			if err != nil {
				return err
			}
			if limit > 0 && len(evs) > limit {
				evs = evs[len(evs)-limit:]
			}
			if g.jsonOut {
				b, err := json.MarshalIndent(map[string]any{"node": from, "events": evs}, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(g.stdout, string(b))
				return err
			}
			fmt.Fprintf(g.stdout, "Cluster %s history, as %s sees it:\n\n", w.cfg.Cluster.Name, from)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tKIND\tNODE\tMESSAGE")
			for _, e := range evs {
				kind := e.Kind
				if e.Local {
					kind += " (local)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.UTC().Format("15:04:05.000"), kind, e.Node, e.Message)
			}
			return tw.Flush()
		},
	}
	pf.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "show only the last N events (0 = all)")
	return cmd
}

// clusterEvents asks the raft leader's agent for /v1/events first (its log
// is complete; a node rebuilt a moment ago may not have caught up yet), then
// the agents of the other passing nodes, in order.
func clusterEvents(ctx context.Context, obs []plan.Observed) (string, []agent.ClusterEvent, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	if _, cs := controlStatus(ctx, obs); cs != nil && cs.Leader != "" {
		if addr := leaderAddress(obs, cs.Leader); addr != "" {
			name, _, _ := strings.Cut(cs.Leader, "@")
			obs = append([]plan.Observed{{Machine: providers.Machine{Name: name, Address: addr}, Health: plan.HealthPassing}}, obs...)
		}
	}
	for _, o := range obs {
		if o.Health != plan.HealthPassing || o.Machine.Address == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL(o.Machine.Address, "/v1/events"), nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var body struct {
			Events []agent.ClusterEvent `json:"events"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && err == nil {
			return o.Machine.Name, body.Events, nil
		}
	}
	return "", nil, fmt.Errorf("no healthy node of the cluster answered /v1/events (is the cluster up? see hactl status)")
}
