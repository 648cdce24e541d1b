package cluster

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers"
)

// TestNode_LoneSurvivor_NonVoterOnlyWhenAlone: stage 2 may keep a node that
// does not vote. It resets the voter set to itself only once the provider
// shows the voters gone and no other machine of the cluster running; while
// another non-voter still runs, it refuses (two survivors could both reset).
func TestNode_LoneSurvivor_NonVoterOnlyWhenAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	voters := e.startCluster("db", 3, nil)
	var lbs []*testNode
	for slot := 1; slot <= 2; slot++ {
		c := e.fastConfig(providers.NodeName("lb", slot), "lb", slot, 1)
		c.Voter = false
		lbs = append(lbs, e.start(c))
	}
	waitLeader(t, append(slices.Clone(voters), lbs...))
	s := lbs[0]
	eventually(t, "lb-1 to apply the log", func() bool { return s.Status().Quorum })
	for _, v := range voters {
		v.kill()
		if err := e.prov.Destroy(t.Context(), providers.MachineID(v.Name()+"-g1")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a refusal while lb-2 still runs", func() bool {
		return hasEvent(s.Events(), "refusing lone-survivor recovery as a non-voter: lb-2 generation 1 is on")
	})
	if s.Status().IsLeader {
		t.Fatal("a non-voter survivor leads while another machine runs")
	}
	lbs[1].kill()
	e.prov.setState("lb-2-g1", providers.PowerOff)
	eventually(t, "lb-1 to reset the voter set to itself and lead", func() bool {
		st := s.Status()
		return st.IsLeader && st.Quorum && slices.Equal(st.Voters, []string{"lb-1@1"})
	})
	eventually(t, "the proof in the replicated history", func() bool {
		return hasEvent(s.LogState().History, "provider proof: [db-1@1 gone db-2@1 gone db-3@1 gone no other machine of the cluster is running]")
	})
}

// TestNode_Chaos_ScheduleRunsAndKillSwitchInTheLog: the chaos schedule, the
// kill switch and run records are written by the leader only, replicate to
// every node, and a run is upserted by its id.
func TestNode_Chaos_ScheduleRunsAndKillSwitchInTheLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nodes := e.startCluster("db", 3, nil)
	// A follower refuses; should it have become the leader meanwhile, its
	// write is overwritten below and another follower is asked.
	var f *testNode
	eventually(t, "a follower refusing SetChaosPaused", func() bool {
		l := waitLeader(t, nodes)
		for _, n := range nodes {
			if n != l {
				f = n
			}
		}
		err := f.SetChaosPaused(true, "x")
		if err != nil && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower %s SetChaosPaused: %v, want ErrNotLeader", f.Name(), err)
		}
		return err != nil
	})
	var leader string
	onLeader(t, nodes, "SetChaosSchedule", func(l *testNode) error {
		return l.SetChaosSchedule(&ChaosSchedule{Spec: "@every 5s", Options: []byte(`{"stage":1}`)})
	})
	run := ChaosRun{ID: "r1", Schedule: "@every 5s", State: ChaosRunning}
	onLeader(t, nodes, "RecordChaosRun running", func(l *testNode) error {
		run.Leader = l.ServerID()
		return l.RecordChaosRun(run)
	})
	run.State, run.Pass, run.Rounds = ChaosDone, true, 1
	onLeader(t, nodes, "RecordChaosRun done", func(l *testNode) error {
		run.Leader, leader = l.ServerID(), l.Name()
		return l.RecordChaosRun(run)
	})
	onLeader(t, nodes, "SetChaosPaused", func(l *testNode) error { return l.SetChaosPaused(true, "maintenance") })
	for _, n := range nodes {
		if n.Name() != leader {
			f = n
		}
	}
	eventually(t, "the chaos state on a follower", func() bool {
		c := f.Chaos()
		return c.Paused && len(c.Runs) == 1 && c.Runs[0].State == ChaosDone
	})
	c := f.Chaos()
	if c.Schedule == nil || c.Schedule.Spec != "@every 5s" || string(c.Schedule.Options) != `{"stage":1}` || c.PauseReason != "maintenance" {
		t.Errorf("follower's chaos state: %+v", c)
	}
	if diff := cmp.Diff([]ChaosRun{run}, c.Runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	onLeader(t, nodes, "SetChaosSchedule(nil)", func(l *testNode) error { return l.SetChaosSchedule(nil) })
	onLeader(t, nodes, "SetChaosPaused(false)", func(l *testNode) error { return l.SetChaosPaused(false, "") })
	eventually(t, "schedule removed and resumed", func() bool {
		c := f.Chaos()
		return c.Schedule == nil && !c.Paused
	})
}
