package cluster

import (
	"slices"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// VoterSlots returns the names of the slots that form the raft voter set of
// cfg, the same on every node and in the CLI (so one user-data fits every
// node): N is cluster.voters, or, when 0, the largest odd number of nodes up
// to 5; the slots are taken slot 1 of every role (roles by name), then slot 2
// of every role, and so on, until N are chosen. The voters are thereby spread
// over roles, and a role's lowest slots vote. A rebuilt slot keeps its vote
// (a new generation of the same name). A witness is not chosen here.
func VoterSlots(cfg *lang.Config) []string {
	if cfg == nil {
		return nil
	}
	roles := slices.Clone(cfg.Roles)
	slices.SortFunc(roles, func(a, b *lang.Role) int { return cmpStr(a.Name, b.Name) })
	total, most := 0, 0
	for _, r := range roles {
		total += max(r.Count, 0)
		most = max(most, r.Count)
	}
	n := 0
	if cfg.Cluster != nil {
		n = cfg.Cluster.Voters
	}
	if n <= 0 {
		n = min(5, total)
		if n%2 == 0 && n > 0 {
			n--
		}
	}
	var out []string
	for slot := 1; slot <= most && len(out) < n; slot++ {
		for _, r := range roles {
			if r.Count >= slot && len(out) < n {
				out = append(out, providers.NodeName(r.Name, slot))
			}
		}
	}
	return out
}
