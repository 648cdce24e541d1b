package cluster

import (
	"testing"
)

// TestNode_LeaderAvoidsVIPs_HandsLeadershipAway: lb-1 holds the VIP;
// whichever node leads first, leadership ends up on a voter that holds no
// VIP (lb-1 hands it over, the witness first), and the VIP stays on lb-1.
func TestNode_LeaderAvoidsVIPs_HandsLeadershipAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const vip = "127.0.0.78"
	mk := func(name, role string, witness bool) Config {
		c := e.fastConfig(name, role, 1, 1)
		if name == "lb-2" {
			c.Slot = 2
		}
		c.BootstrapExpect = 3
		c.Witness = witness
		c.VIPs = []VIPSpec{{Address: vip, Role: "lb"}}
		c.VIPChanged = func(string, bool) error { return nil }
		return c
	}
	lb1 := e.start(mk("lb-1", "lb", false))
	lb2 := e.start(mk("lb-2", "lb", false))
	wit := e.start(mk("witness-1", "witness", true))
	all := []*testNode{lb1, lb2, wit}
	waitLeader(t, all)
	eventually(t, "lb-1 to hold the VIP", func() bool { return lb1.isHeld(vip) })
	first := leaderOf(all)
	eventually(t, "a leader that holds no VIP", func() bool {
		l := leaderOf(all)
		return l != nil && l != lb1 && lb1.isHeld(vip)
	})
	if first == lb1 {
		if l := leaderOf(all); l != wit && l != nil {
			t.Errorf("lb-1 handed leadership to %s, want the witness first", l.Name())
		}
		if !hasEvent(lb1.Events(), "handing leadership to witness-1@1") {
			t.Errorf("lb-1 did not note the hand-off: %v", lb1.Events())
		}
	}
	if l := leaderOf(all); l != nil && l.isHeld(vip) {
		t.Errorf("leader %s holds the VIP", l.Name())
	}
}
