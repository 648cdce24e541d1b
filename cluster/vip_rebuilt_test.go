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
