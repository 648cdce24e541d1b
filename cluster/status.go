package cluster

import "slices"

// Status is a point-in-time summary of the node and the cluster as this
// node sees it. Values are copies.
type Status struct {
	Name     string
	IsLeader bool
	Leader   string // leader's server id ("web-1@1"), "" when unknown
	Quorum   bool
	// SelfFenced is true while the watchdog holds exclusive services down.
	SelfFenced bool
	Voters     []string // server ids
	Members    []Member
	// VIPHolders maps each VIP to its holder in the applied log ("" = none).
	VIPHolders map[string]string
	// VIPsHeld are the VIPs bound on this node.
	VIPsHeld []string
	Rebuilds []Rebuild // in flight (planned, running, waiting)
	Fences   []FenceRecord
}

// Status reports quorum, leader, voters, members, VIP holders and rebuilds
// in flight. It may block briefly on raft.
func (n *Node) Status() Status {
	r, f := n.raft()
	st := f.state()
	s := Status{Name: n.cfg.Name, Members: n.ms.Members(), VIPHolders: map[string]string{}}
	n.mu.Lock()
	s.Quorum, s.SelfFenced = n.quorum, n.fenced
	for v := range n.held {
		s.VIPsHeld = append(s.VIPsHeld, v)
	}
	n.mu.Unlock()
	slices.Sort(s.VIPsHeld)
	if r != nil {
		_, id := r.LeaderWithID()
		s.Leader = string(id)
		s.IsLeader = s.Leader == string(serverID(n.cfg.Name, n.cfg.Generation))
		if vs, err := voters(r); err == nil {
			for _, v := range vs {
				s.Voters = append(s.Voters, string(v.ID))
			}
		}
	}
	for _, o := range st.VIPs {
		s.VIPHolders[o.VIP] = o.Holder
	}
	for _, rb := range st.Rebuilds {
		if active(rb) {
			s.Rebuilds = append(s.Rebuilds, rb)
		}
	}
	slices.SortFunc(s.Rebuilds, func(a, b Rebuild) int { return cmpStr(a.Name, b.Name) })
	for _, fr := range st.Fences {
		s.Fences = append(s.Fences, fr)
	}
	slices.SortFunc(s.Fences, func(a, b FenceRecord) int { return a.At.Compare(b.At) })
	return s
}

// Events returns the cluster history from the applied log merged with this
// node's local decisions (self-fence, refusals), oldest first.
func (n *Node) Events() []Event {
	_, f := n.raft()
	out := f.state().History
	n.mu.Lock()
	out = append(out, n.local...)
	n.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Event) int { return a.Time.Compare(b.Time) })
	return out
}

// LogState returns a copy of the replicated state as applied on this node.
func (n *Node) LogState() State {
	_, f := n.raft()
	return f.state()
}
