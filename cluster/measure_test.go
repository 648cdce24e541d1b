package cluster

import (
	"os"
	"testing"
	"time"
)

// TestNode_Measure_DefaultTimings measures failure detection and leader
// failover with DefaultConfig timings on loopback (3 nodes, leader killed).
// It only runs with HACTL_MEASURE=1; figures go to docs/performance.md.
func TestNode_Measure_DefaultTimings(t *testing.T) {
	if os.Getenv("HACTL_MEASURE") == "" {
		t.Skip("measurement only: set HACTL_MEASURE=1")
	}
	e := newEnv(t)
	d := DefaultConfig()
	nodes := e.startCluster("web", 3, func(c *Config) {
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval = d.ProbeInterval, d.ProbeTimeout, d.SuspicionMult, d.GossipInterval
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.Tick = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout, d.Tick
		c.FailureTimeout = time.Hour
	})
	l := waitLeader(t, nodes)
	eventually(t, "all alive", func() bool { return len(nodes[0].View().Members()) == 3 })
	var rest []*testNode
	for _, n := range nodes {
		if n != l {
			rest = append(rest, n)
		}
	}
	l.kill()
	k := time.Now()
	var dead, lead time.Duration
	eventually(t, "dead+leader", func() bool {
		if lead == 0 && leaderOf(rest) != nil {
			lead = time.Since(k)
		}
		if dead == 0 {
			all := true
			for _, n := range rest {
				m, _ := n.ms.member(l.Name())
				all = all && m.State == StateDead
			}
			if all {
				dead = time.Since(k)
			}
		}
		return dead > 0 && lead > 0
	})
	t.Logf("defaults: dead on all survivors after %v; new leader with quorum after %v", dead.Round(10*time.Millisecond), lead.Round(10*time.Millisecond))
}
