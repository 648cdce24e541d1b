package cluster

import (
	"testing"
	"time"
)

// TestNode_LeaderDeadInGossip_ElectsWithoutWaitingForHeartbeatTimeout: with
// a 20 s raft heartbeat timeout, raft alone would not call an election until
// 20 s after the leader's last heartbeat. The followers see the leader die in
// gossip and switch to the short election timeouts (the 2 s lease), so a new
// leader is elected well before that.
func TestNode_LeaderDeadInGossip_ElectsWithoutWaitingForHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nodes := e.startCluster("db", 3, func(c *Config) {
		c.HeartbeatTimeout, c.ElectionTimeout = 20*time.Second, 20*time.Second
		c.LeaderLeaseTimeout = 2 * time.Second
		c.LeaderHeartbeatTimeout = 8 * time.Second // heartbeats every 0.8-1.6 s, under the lease
		c.FailureTimeout = time.Hour               // no fencing: this test is about the election
	})
	l := waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(l.Status().Voters) == 3 })
	var rest []*testNode
	for _, n := range nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	// A live leader keeps its followers on the long timeouts: no election.
	r0, _ := rest[0].raft()
	term := r0.CurrentTerm()
	time.Sleep(3 * time.Second)
	if got, st := r0.CurrentTerm(), rest[0].Status(); got != term || st.Leader == "" {
		t.Fatalf("followers of a live leader held an election: term %d → %d, leader %q", term, got, st.Leader)
	}

	killed := time.Now()
	l.kill()
	deadline := killed.Add(15 * time.Second)
	for {
		if nl := leaderOf(rest); nl != nil {
			t.Logf("new leader %s %s after the kill", nl.Name(), time.Since(killed).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader 15 s after the leader was killed; raft's own 20 s heartbeat timeout was not shortened")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
