package chaos

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers"
)

// blogSpec: lb×2, web×3, mail×1 (sync data: can lose 0), 5 voters.
func blogSpec() Spec {
	return Spec{Cluster: "blog", Voters: 5, Quorum: 3, Roles: []RoleSpec{
		{Name: "lb", Count: 2, CanLose: 1, Provider: "local", ProviderType: "local"},
		{Name: "mail", Count: 1, CanLose: 0, Provider: "local", ProviderType: "local"},
		{Name: "web", Count: 3, CanLose: 2, Provider: "local", ProviderType: "local"},
	}}
}

func healthySnap(s Spec) Snapshot {
	var snap Snapshot
	for _, r := range s.Roles {
		for i := 1; i <= r.Count; i++ {
			name := fmt.Sprintf("%s-%d", r.Name, i)
			snap.Nodes = append(snap.Nodes, Node{Name: name, Role: r.Name, Slot: i, Generation: 1, Provider: "local", ProviderType: "local",
				Machine: providers.MachineID("blog/x" + name), State: "on", Health: HealthPassing})
		}
	}
	return snap
}

func TestSelect_Stage1_SameSeedSameVictims(t *testing.T) {
	spec := blogSpec()
	snap := healthySnap(spec)
	draw := func(seed uint64) []string {
		var out []string
		for n := 1; n <= 20; n++ {
			sel, err := Select(RoundRand(seed, n), spec, snap, SelectOptions{Stage: 1})
			if err != nil {
				t.Fatalf("round %d: %v", n, err)
			}
			if len(sel.Victims) != 1 {
				t.Fatalf("round %d: %d victims, want 1", n, len(sel.Victims))
			}
			out = append(out, sel.Victims[0].Name)
		}
		return out
	}
	a, b := draw(42), draw(42)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different victims (-first +second):\n%s", diff)
	}
	if c := draw(43); cmp.Equal(a, c) {
		t.Errorf("seeds 42 and 43 drew the same 20 victims %v", a)
	}
	// Order of the observation does not matter, only the cluster.
	rev := snap
	rev.Nodes = append([]Node(nil), snap.Nodes...)
	for i, j := 0, len(rev.Nodes)-1; i < j; i, j = i+1, j-1 {
		rev.Nodes[i], rev.Nodes[j] = rev.Nodes[j], rev.Nodes[i]
	}
	sel, _ := Select(RoundRand(42, 1), spec, rev, SelectOptions{Stage: 1})
	if sel.Victims[0].Name != a[0] {
		t.Errorf("reordered snapshot drew %s, want %s", sel.Victims[0].Name, a[0])
	}
	// mail (can lose 0) is never drawn; every other node eventually is.
	seen := map[string]bool{}
	for _, v := range append(a, draw(7)...) {
		seen[v] = true
	}
	if seen["mail-1"] {
		t.Error("stage 1 drew mail-1, whose role tolerates no loss")
	}
}

func TestSelect_Options(t *testing.T) {
	spec := blogSpec()
	snap := healthySnap(spec)
	tests := []struct {
		name    string
		o       SelectOptions
		victims int
		roles   []string // every victim's role is in this set
		survive bool
		err     string
	}{
		{name: "stage1 roles opt-in", o: SelectOptions{Stage: 1, Roles: []string{"lb"}}, victims: 1, roles: []string{"lb"}},
		{name: "stage1 only intolerant role", o: SelectOptions{Stage: 1, Roles: []string{"mail"}}, err: "exceed its tolerance (can lose 0 of 1)"},
		{name: "stage1 unknown role", o: SelectOptions{Stage: 1, Roles: []string{"db"}}, err: "no node of the opted-in roles db"},
		{name: "stage2 all but one", o: SelectOptions{Stage: 2}, victims: 5, roles: []string{"lb", "mail", "web"}, survive: true},
		{name: "stage2 blast radius", o: SelectOptions{Stage: 2, BlastRadius: 3}, err: "more than the blast radius 3"},
		{name: "stage3", o: SelectOptions{Stage: 3}, err: "stage 3 needs the beachhead (an external watcher), which is not built yet"},
		{name: "stage9", o: SelectOptions{Stage: 9}, err: "unknown stage 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := Select(RoundRand(1, 1), spec, snap, tt.o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sel.Victims) != tt.victims {
				t.Errorf("%d victims %v, want %d", len(sel.Victims), sel.Names(), tt.victims)
			}
			for _, v := range sel.Victims {
				if !optedIn(tt.roles, v.Role) {
					t.Errorf("victim %s of role %s, want roles %v", v.Name, v.Role, tt.roles)
				}
				if v.Name == sel.Survivor {
					t.Errorf("survivor %s is a victim", v.Name)
				}
			}
			if tt.survive && (sel.Survivor == "" || !strings.Contains(sel.Intent, "quorum")) {
				t.Errorf("stage 2: survivor %q intent %q, want a survivor and an intent to break quorum", sel.Survivor, sel.Intent)
			}
		})
	}
	if !errors.Is(func() error { _, err := Select(RoundRand(1, 1), spec, snap, SelectOptions{Stage: 3}); return err }(), ErrStage3) {
		t.Error("stage 3 error is not ErrStage3")
	}
}

func TestCheckOutage_Table(t *testing.T) {
	spec := blogSpec()
	mod := func(f func(*Snapshot)) Snapshot {
		s := healthySnap(spec)
		f(&s)
		return s
	}
	byName := func(s Snapshot, names ...string) []Node {
		var out []Node
		for _, n := range s.Nodes {
			for _, name := range names {
				if n.Name == name {
					out = append(out, n)
				}
			}
		}
		return out
	}
	ok := healthySnap(spec)
	tests := []struct {
		name     string
		snap     Snapshot
		victims  []string
		intended bool
		err      string
	}{
		{name: "healthy one web", snap: ok, victims: []string{"web-2"}},
		{name: "healthy two web", snap: ok, victims: []string{"web-1", "web-3"}},
		{name: "slot missing", snap: mod(func(s *Snapshot) { s.Nodes = s.Nodes[1:] }), victims: []string{"web-1"}, err: "degraded: lb-1 is missing"},
		{name: "slot off", snap: mod(func(s *Snapshot) { s.Nodes[2].State, s.Nodes[2].Health = "off", HealthOff }), victims: []string{"web-1"}, err: "degraded: mail-1 (blog/xmail-1) is off"},
		{name: "slot unhealthy", snap: mod(func(s *Snapshot) { s.Nodes[3].Health = HealthFailing }), victims: []string{"web-2"}, err: "degraded: web-1 (blog/xweb-1) is failing"},
		{name: "old generation off is fine", snap: mod(func(s *Snapshot) {
			s.Nodes = append(s.Nodes, Node{Name: "web-1", Role: "web", Slot: 1, Generation: 0, State: "off", Health: HealthOff})
		}), victims: []string{"web-2"}, err: ""},
		{name: "recovery in flight", snap: mod(func(s *Snapshot) { s.Recovering = []string{"web-3"} }), victims: []string{"web-1"}, err: "recovery in flight: web-3"},
		{name: "recovery in flight even when intended", snap: mod(func(s *Snapshot) { s.Recovering = []string{"web-3"} }), intended: true, err: "recovery in flight"},
		{name: "degraded even when intended", snap: mod(func(s *Snapshot) { s.Nodes = s.Nodes[1:] }), intended: true, err: "degraded"},
		{name: "below tolerance", snap: ok, victims: []string{"lb-1", "lb-2"}, err: "losing 2 node(s) of role lb would exceed its tolerance (can lose 1 of 2)"},
		{name: "mail tolerates none", snap: ok, victims: []string{"mail-1"}, err: "role mail would exceed its tolerance"},
		{name: "below quorum, voters unknown", snap: ok, victims: []string{"lb-1", "web-1", "web-2"}, err: "losing 3 voter(s) would leave 2 of 5, below quorum 3"},
		{name: "voters known: non-voters may go", snap: mod(func(s *Snapshot) {
			s.VotersKnown = true
			for i := range s.Nodes {
				s.Nodes[i].Voter = s.Nodes[i].Role != "web"
			}
		}), victims: []string{"lb-1", "web-1", "web-2"}},
		{name: "intended breaks quorum", snap: ok, victims: []string{"lb-1", "lb-2", "web-1", "web-2", "web-3"}, intended: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckOutage(spec, tt.snap, byName(tt.snap, tt.victims...), tt.intended)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("CheckOutage = %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("CheckOutage = %v, want %q", err, tt.err)
			}
		})
	}
}

// TestSelect_Exclude_HostNeverDrawn: the node hosting a scheduled run is
// never a stage 1 victim, and is stage 2's survivor.
func TestSelect_Exclude_HostNeverDrawn(t *testing.T) {
	spec := blogSpec()
	snap := healthySnap(spec)
	for n := 1; n <= 50; n++ {
		sel, err := Select(RoundRand(7, n), spec, snap, SelectOptions{Stage: 1, Exclude: []string{"web-2"}})
		if err != nil {
			t.Fatal(err)
		}
		if sel.Victims[0].Name == "web-2" {
			t.Fatalf("round %d drew the excluded web-2", n)
		}
	}
	for seed := uint64(1); seed <= 10; seed++ {
		sel, err := Select(RoundRand(seed, 1), spec, snap, SelectOptions{Stage: 2, Exclude: []string{"web-2"}})
		if err != nil {
			t.Fatal(err)
		}
		if sel.Survivor != "web-2" || len(sel.Victims) != len(snap.Nodes)-1 || slices.Contains(sel.Names(), "web-2") {
			t.Fatalf("seed %d: survivor %s, victims %v; want web-2 to survive and every other node broken", seed, sel.Survivor, sel.Names())
		}
	}
}
