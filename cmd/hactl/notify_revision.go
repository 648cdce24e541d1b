package main

import (
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// notifyRevision tells one running agent that a new revision was published
// when apply has nothing to execute (no leader hand-off pulls it then). The
// agent pulls at once, and every other live node pulls as soon as it sees
// the new revision in that agent's gossip metadata (agent.FollowMembers).
// Best effort: nodes that hear nothing pull it at their interval. It
// returns the node it told, "" when none answered.
func notifyRevision(obs []plan.Observed) string {
	for _, o := range obs {
		m := o.Machine
		if m.State != providers.PowerOn || m.Address == "" {
			continue
		}
		if err := postNotify(agentURL(m.Address, "/v1/notify")); err == nil {
			return m.Name
		}
	}
	return ""
}
