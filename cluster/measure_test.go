package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaultTimings copies DefaultConfig's membership, raft and tick timings
// over the test's fast ones (identity, provider and fault net stay).
func defaultTimings(c *Config) {
	d := DefaultConfig()
	c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.IndirectChecks, c.GossipInterval = d.ProbeInterval, d.ProbeTimeout, d.SuspicionMult, d.IndirectChecks, d.GossipInterval
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout, c.Tick = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout, d.CommitTimeout, d.Tick
	c.LeaderHeartbeatTimeout = d.LeaderHeartbeatTimeout
	c.FailureTimeout = time.Hour
}

func measureRuns(t *testing.T, def int) int {
	if s := os.Getenv("HACTL_MEASURE_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("HACTL_MEASURE_RUNS: %v", err)
		}
		return n
	}
	return def
}

// TestNode_Measure_DefaultTimings measures failure detection (every survivor
// marks the killed node dead) and leader failover with DefaultConfig timings
// on loopback: 3 nodes, the leader killed, HACTL_MEASURE_RUNS times (5).
// It only runs with HACTL_MEASURE=1; figures go to docs/performance.md.
// HACTL_MEASURE_LOGS=1 prints the cluster log of runs whose failover took
// over 2 s.
func TestNode_Measure_DefaultTimings(t *testing.T) {
	if os.Getenv("HACTL_MEASURE") == "" {
		t.Skip("measurement only: set HACTL_MEASURE=1")
	}
	var deads, leads []time.Duration
	for i := range measureRuns(t, 5) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			e := newEnv(t)
			nodes := e.startCluster("web", 3, defaultTimings)
			l := waitLeader(t, nodes)
			eventually(t, "all alive", func() bool {
				for _, n := range nodes {
					alive := 0
					for _, m := range n.View().Members() {
						if m.State == StateAlive {
							alive++
						}
					}
					if alive != 3 {
						return false
					}
				}
				return true
			})
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
			deads, leads = append(deads, dead), append(leads, lead)
			if os.Getenv("HACTL_MEASURE_LOGS") != "" && lead > 2*time.Second {
				t.Logf("kill at %s\n%s", k.Format("15:04:05.000"), e.logs.String())
			}
			t.Logf("run %d: dead on all survivors after %v; new leader with quorum after %v", i, dead.Round(10*time.Millisecond), lead.Round(10*time.Millisecond))
		})
	}
	t.Logf("defaults over %d runs: detection median %v (min %v, max %v); leader failover median %v (min %v, max %v)",
		len(deads), median(deads), slices.Min(deads).Round(10*time.Millisecond), slices.Max(deads).Round(10*time.Millisecond),
		median(leads), slices.Min(leads).Round(10*time.Millisecond), slices.Max(leads).Round(10*time.Millisecond))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2].Round(10 * time.Millisecond)
	}
	return ((s[len(s)/2-1] + s[len(s)/2]) / 2).Round(10 * time.Millisecond)
}

// TestNode_Measure_LossNoFalseDeaths runs 5 nodes with DefaultConfig timings
// under 5% loss (faultnet: gossip packets dropped, raft writes delayed by a
// retransmission timeout) for HACTL_MEASURE_FOR (10m) and counts false
// deaths (a live member reported dead by anyone) and leader changes.
func TestNode_Measure_LossNoFalseDeaths(t *testing.T) {
	if os.Getenv("HACTL_MEASURE") == "" {
		t.Skip("measurement only: set HACTL_MEASURE=1")
	}
	d := 10 * time.Minute
	if s := os.Getenv("HACTL_MEASURE_FOR"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			t.Fatalf("HACTL_MEASURE_FOR: %v", err)
		}
	}
	e := newEnv(t)
	nodes := e.startCluster("web", 5, defaultTimings)
	waitLeader(t, nodes)
	eventually(t, "all alive", func() bool {
		for _, n := range nodes {
			if len(n.View().Members()) != 5 {
				return false
			}
		}
		return true
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var falseDeaths []string
	var wg sync.WaitGroup
	for _, n := range nodes {
		ch := n.View().Events(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range ch {
				if ev.Type == EventDead || ev.Type == EventLeave {
					mu.Lock()
					falseDeaths = append(falseDeaths, fmt.Sprintf("%s: %s %s at %s", n.Name(), ev.Member.Name, ev.Type, ev.Time.Format(time.TimeOnly)))
					mu.Unlock()
				}
			}
		}()
	}
	e.net.SetLoss(0.05)
	leader := leaderOf(nodes)
	changes := 0
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		time.Sleep(250 * time.Millisecond)
		if l := leaderOf(nodes); l != nil && l != leader {
			changes++
			leader = l
		}
	}
	e.net.SetLoss(0)
	cancel()
	wg.Wait()
	// A leader that misses its lease steps down even when it wins again
	// (no change of leader above): count those too.
	stepDowns := strings.Count(e.logs.String(), "failed to contact quorum of nodes, stepping down")
	t.Logf("5 nodes, 5%% loss for %v: %d false deaths, %d leader changes, %d lease step-downs", d, len(falseDeaths), changes, stepDowns)
	for _, f := range falseDeaths {
		t.Log(f)
	}
	if len(falseDeaths) > 0 {
		t.Errorf("%d false deaths under 5%% loss", len(falseDeaths))
	}
}
