package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/lang"
)

// TestNode_NonVoter_AppliesLogAndHoldsVIP: a member that is not voter-eligible
// is added to raft as a non-voter, so it applies the log, sees the leader
// (quorum), and binds a VIP the leader assigns to it; it never votes.
func TestNode_NonVoter_AppliesLogAndHoldsVIP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const vip = "127.0.0.78"
	spec := []VIPSpec{{Address: vip, Role: "lb"}}
	voters := e.startCluster("db", 3, func(c *Config) { c.VIPs = spec })
	c := e.fastConfig("lb-1", "lb", 1, 1)
	c.Voter, c.VIPs = false, spec
	bound := make(chan string, 4)
	c.VIPChanged = func(v string, held bool) error {
		if held {
			bound <- v
		}
		return nil
	}
	lb := e.start(c)
	all := append(slices.Clone(voters), lb)
	l := waitLeader(t, all)
	eventually(t, "lb-1 to apply the log and hold the VIP", func() bool { return lb.isHeld(vip) })
	if got := <-bound; got != vip {
		t.Fatalf("VIPChanged bound %q, want %q", got, vip)
	}
	st := lb.Status()
	if !st.Quorum || st.Leader == "" {
		t.Errorf("non-voter status: quorum %v, leader %q; want quorum and the leader", st.Quorum, st.Leader)
	}
	if diff := cmp.Diff([]string{"db-1@1", "db-2@1", "db-3@1"}, sortedCopy(l.Status().Voters)); diff != "" {
		t.Errorf("voters (-want +got):\n%s", diff)
	}
	if h := lb.LogState().VIPs[vip].Holder; h != "lb-1" {
		t.Errorf("non-voter's applied log names holder %q, want lb-1", h)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestVoterSlots_SpreadOverRoles: voter slots are taken slot by slot over
// roles sorted by name, N from cluster.voters or automatic (odd, ≤ 5).
func TestVoterSlots_SpreadOverRoles(t *testing.T) {
	roles := func(counts map[string]int) []*lang.Role {
		var out []*lang.Role
		for n, c := range counts {
			out = append(out, &lang.Role{Name: n, Count: c})
		}
		return out
	}
	blog := map[string]int{"web": 2, "lb": 2, "mail": 2, "repo": 2}
	for _, tc := range []struct {
		name   string
		voters int
		counts map[string]int
		want   []string
	}{
		{"declared three", 3, blog, []string{"lb-1", "mail-1", "repo-1"}},
		{"automatic five", 0, blog, []string{"lb-1", "mail-1", "repo-1", "web-1", "lb-2"}},
		{"automatic odd from two", 0, map[string]int{"web": 2}, []string{"web-1"}},
		{"one role three", 0, map[string]int{"db": 3}, []string{"db-1", "db-2", "db-3"}},
		{"no roles", 0, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &lang.Config{Cluster: &lang.Cluster{Name: "c", Voters: tc.voters}, Roles: roles(tc.counts)}
			if diff := cmp.Diff(tc.want, VoterSlots(cfg)); diff != "" {
				t.Errorf("VoterSlots (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNode_NonVoter_PacedHeartbeats: the leader holds a non-voter's
// heartbeats to NonvoterHeartbeat (its last contact ages well past the
// voters' 120-240 ms heartbeat period), and the non-voter, running with a
// raft heartbeat timeout of twice that, keeps its leader and quorum.
func TestNode_NonVoter_PacedHeartbeats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const every = time.Second
	paced := func(c *Config) { c.NonvoterHeartbeat = every }
	voters := e.startCluster("db", 3, paced)
	c := e.fastConfig("web-1", "web", 1, 1)
	c.Voter = false
	paced(&c)
	w := e.start(c)
	waitLeader(t, append(slices.Clone(voters), w))
	eventually(t, "web-1 to follow as a paced non-voter", func() bool {
		r, _ := w.raft()
		return r.ReloadableConfig().HeartbeatTimeout == 2*every && w.Status().Quorum
	})
	var oldest time.Duration
	for end := time.Now().Add(3 * every); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		r, _ := w.raft()
		oldest = max(oldest, time.Since(r.LastContact()))
	}
	if oldest < every/2 {
		t.Errorf("web-1's last contact was at most %s old over %s: its heartbeats were not paced to %s", oldest, 3*every, every)
	}
	eventually(t, "web-1 to keep its leader and quorum", func() bool { st := w.Status(); return st.Quorum && st.Leader != "" })
}
