package cluster

import (
	"testing"
	"time"
)

// A slot deleted behind the cluster's back is rebuilt before gossip calls
// the old generation dead (its name comes back alive at once): the old
// generation's VIP must still move, on the strength of the recorded
// rebuild, and not before the new generation's create is done.
func TestNode_SafelyGone_RebuiltSlot(t *testing.T) {
	n := &Node{}
	now := time.Now()
	for _, tc := range []struct {
		name  string
		rb    *Rebuild
		gen   int
		wantG bool
	}{
		{"no record", nil, 1, false},
		{"rebuild planned", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildPlanned}, 1, false},
		{"rebuild running", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildRunning}, 1, false},
		{"created, waiting", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildWaiting}, 1, true},
		{"done", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildDone}, 1, true},
		{"done, same generation", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildDone}, 2, false},
		{"failed", &Rebuild{Name: "lb-1", Generation: 2, State: RebuildFailed}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := State{Rebuilds: map[string]Rebuild{}, Fences: map[string]FenceRecord{}}
			if tc.rb != nil {
				st.Rebuilds[tc.rb.Name] = *tc.rb
			}
			if got := n.safelyGone(st, "lb-1", tc.gen, time.Time{}, now); got != tc.wantG {
				t.Fatalf("safelyGone(lb-1@%d) = %v, want %v", tc.gen, got, tc.wantG)
			}
		})
	}
}

// A member that cannot be fenced from outside counts as gone only once its
// own watchdog has certainly fired. Its last contact can be up to a lease
// after the partition (a leader cut off on its side heartbeats it until the
// lease runs out), then it counts quorum for its contact window (a
// non-voter's is the longer one), then SelfFenceTimeout, each seen on a tick.
func TestNode_SafelyGone_WaitsOutLeaseContactWindowAndWatchdog(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		needed time.Duration
	}{
		{"defaults", func(*Config) {}, 1500*time.Millisecond + 4*time.Second + 10*time.Second + time.Second},
		{"non-voters heartbeat every 3s", func(c *Config) { c.NonvoterHeartbeat = 3 * time.Second }, 1500*time.Millisecond + 6*time.Second + 10*time.Second + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			n := &Node{cfg: c}
			st := State{Rebuilds: map[string]Rebuild{}, Fences: map[string]FenceRecord{}}
			dead := time.Now()
			if n.safelyGone(st, "lb-2", 1, dead, dead.Add(tc.needed-time.Millisecond)) {
				t.Errorf("gone %s after its death, before its watchdog must have fired (%s)", tc.needed-time.Millisecond, tc.needed)
			}
			if !n.safelyGone(st, "lb-2", 1, dead, dead.Add(tc.needed)) {
				t.Errorf("not gone %s after its death", tc.needed)
			}
		})
	}
}
