package plan

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

var (
	propRoles     = []string{"a", "b", "c"}
	propProviders = []string{"local", "do"}
)

// genInput draws a small cluster: up to three roles with random counts,
// fencing, data and VIPs, and machines with random tags, power states and
// health, including undeclared roles, bad slots, superseded generations and
// duplicates.
func genInput(t *rapid.T) Input {
	var roles []*lang.Role
	for _, name := range propRoles[:rapid.IntRange(0, len(propRoles)).Draw(t, "roles")] {
		r := newRole(name, rapid.IntRange(0, 4).Draw(t, name+".count"))
		r.Provider = rapid.SampledFrom(propProviders).Draw(t, name+".provider")
		r.Fencing.Method = rapid.SampledFrom([]string{FenceNone, FenceProvider, FenceDestroy, FenceSSH, ""}).Draw(t, name+".fencing")
		if rapid.Bool().Draw(t, name+".data") {
			r.Data = []lang.Data{{Name: "d", Mode: rapid.SampledFrom([]string{"sync", "async", "none"}).Draw(t, name+".mode")}}
		}
		if rapid.Bool().Draw(t, name+".vip") {
			r.VIP = &lang.VIP{Address: "vip-" + name, Failback: rapid.SampledFrom([]string{"", "never", "immediate", "delayed"}).Draw(t, name+".failback"), FailbackDelay: 10 * time.Second}
		}
		roles = append(roles, r)
	}
	in := Input{
		Config:         newConfig(roles...),
		Now:            t0,
		FailureTimeout: rapid.SampledFrom([]time.Duration{0, 10 * time.Second}).Draw(t, "timeout"),
	}
	n := rapid.IntRange(0, 14).Draw(t, "machines")
	for i := range n {
		role := rapid.SampledFrom(append(slices.Clone(propRoles), "x")).Draw(t, "role")
		slot := rapid.IntRange(0, 5).Draw(t, "slot")
		gen := rapid.IntRange(1, 3).Draw(t, "gen")
		o := machine(providers.NodeName(role, slot), gen)
		o.Machine.ID = providers.MachineID(fmt.Sprintf("m%d", i))
		if i > 0 && rapid.IntRange(0, 9).Draw(t, "relist") == 0 {
			in.Observed = append(in.Observed, in.Observed[i-1]) // the same machine listed twice
			continue
		}
		o.Provider = rapid.SampledFrom(propProviders).Draw(t, "provider")
		o.Machine.State = rapid.SampledFrom([]providers.PowerState{providers.PowerOn, providers.PowerOn, providers.PowerOff, providers.PowerStarting, providers.PowerUnknown}).Draw(t, "state")
		if rapid.Bool().Draw(t, "member") {
			h := rapid.SampledFrom([]Health{HealthPassing, HealthPassing, HealthFailing, HealthUnreached, HealthUnknown}).Draw(t, "health")
			health(h, time.Duration(rapid.IntRange(0, 30).Draw(t, "down"))*time.Second)(&o)
		}
		if rapid.IntRange(0, 3).Draw(t, "holds") == 0 {
			o.VIPs = []string{"vip-" + rapid.SampledFrom(propRoles).Draw(t, "vipof")}
		}
		in.Observed = append(in.Observed, o)
	}
	return in
}

func TestPlan_Plan_Properties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := genInput(t)
		r := Plan(in)
		checkDeterministic(t, in, r)
		checkWellFormed(t, r)
		checkHealthyUntouched(t, in, r)
		checkFenceFirst(t, r)
		checkBounded(t, in, r)
		checkConverges(t, in, r)
	})
}

// checkDeterministic: the same input, in any order, gives the same plan.
func checkDeterministic(t *rapid.T, in Input, r Result) {
	if diff := cmp.Diff(r, Plan(in)); diff != "" {
		t.Fatalf("plan not deterministic (-first +second):\n%s", diff)
	}
	rev := in
	rev.Observed = slices.Clone(in.Observed)
	slices.Reverse(rev.Observed)
	if diff := cmp.Diff(r, Plan(rev)); diff != "" {
		t.Fatalf("plan depends on the order of Observed (-forward +reversed):\n%s", diff)
	}
}

// checkWellFormed: ids are indexes and After points back.
func checkWellFormed(t *rapid.T, r Result) {
	for i, s := range r.Steps {
		if s.ID != i {
			t.Fatalf("step %d has id %d", i, s.ID)
		}
		for _, a := range s.After {
			if a < 0 || a >= i {
				t.Fatalf("step %d (%s) waits for step %d", i, s, a)
			}
		}
	}
}

// checkHealthyUntouched: a declared slot whose newest generation (on the
// role's provider) has a healthy machine keeps one such machine untouched
// and gets no create or replace.
func checkHealthyUntouched(t *rapid.T, in Input, r Result) {
	touched := map[providers.MachineID]bool{}
	rebuilt := map[string]bool{}
	for _, s := range r.Steps {
		switch s.Action {
		case ActionFence, ActionDestroy, ActionReplace:
			touched[s.Machine] = true
		}
		if s.Action == ActionCreate || s.Action == ActionReplace {
			rebuilt[s.Name] = true
		}
	}
	for _, role := range in.Config.Roles {
		for slot := 1; slot <= role.Count; slot++ {
			var ms []Observed
			newest := 0
			for _, o := range in.Observed {
				if o.Machine.Role == role.Name && o.Machine.Slot == slot && o.Provider == role.Provider {
					ms = append(ms, o)
					newest = max(newest, o.Machine.Generation)
				}
			}
			healthyNewest, kept := map[providers.MachineID]bool{}, map[providers.MachineID]bool{}
			for _, o := range ms {
				if o.Machine.Generation == newest && healthy(&o) {
					healthyNewest[o.Machine.ID] = true
					if !touched[o.Machine.ID] {
						kept[o.Machine.ID] = true
					}
				}
			}
			name := providers.NodeName(role.Name, slot)
			if len(healthyNewest) > 0 && (len(kept) != 1 || rebuilt[name]) {
				t.Fatalf("%s has %d healthy machines of its newest generation; plan keeps %d and rebuilt=%v:\n%v",
					name, len(healthyNewest), len(kept), rebuilt[name], brief(r.Steps))
			}
		}
	}
}

// checkFenceFirst: every fence of a node comes before, and is awaited
// (through After) by, any create or replace of that node.
func checkFenceFirst(t *rapid.T, r Result) {
	reach := func(from, to int) bool { // does step from wait, transitively, for step to?
		seen := map[int]bool{}
		stack := []int{from}
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if i == to {
				return true
			}
			for _, a := range r.Steps[i].After {
				if !seen[a] {
					seen[a] = true
					stack = append(stack, a)
				}
			}
		}
		return false
	}
	for _, c := range r.Steps {
		if c.Action != ActionCreate && c.Action != ActionReplace {
			continue
		}
		for _, f := range r.Steps {
			if f.Action == ActionFence && f.Name == c.Name && !reach(c.ID, f.ID) {
				t.Fatalf("%s (step %d) does not wait for %s (step %d):\n%v", c, c.ID, f, f.ID, brief(r.Steps))
			}
		}
	}
}

// checkBounded: per role no more creates/replaces than its count, one per
// slot; every machine fenced at most once and removed at most once; one
// restore per data block per rebuild.
func checkBounded(t *rapid.T, in Input, r Result) {
	perRole := map[string]int{}
	perSlot := map[string]int{}
	fenced := map[providers.MachineID]int{}
	removed := map[providers.MachineID]int{}
	restores := map[string]int{}
	for _, s := range r.Steps {
		switch s.Action {
		case ActionCreate, ActionReplace:
			perRole[s.Role]++
			perSlot[s.Name]++
		case ActionFence:
			fenced[s.Machine]++
		case ActionRestore:
			restores[s.Role]++
		}
		if s.Action == ActionReplace || s.Action == ActionDestroy {
			removed[s.Machine]++
		}
	}
	for _, role := range in.Config.Roles {
		if perRole[role.Name] > role.Count {
			t.Fatalf("role %s: %d creates/replaces for count %d", role.Name, perRole[role.Name], role.Count)
		}
		// A role with no machine at all is new: its data starts empty.
		want := perRole[role.Name] * len(role.Data)
		if !observedRole(in, role.Name) && len(in.KnownGenerations) == 0 {
			want = 0
		}
		if restores[role.Name] != want {
			t.Fatalf("role %s: %d restores for %d rebuilds of %d data blocks (new role: %v)", role.Name, restores[role.Name], perRole[role.Name], len(role.Data), want == 0)
		}
	}
	for name, n := range perSlot {
		if n > 1 {
			t.Fatalf("%s rebuilt %d times", name, n)
		}
	}
	for id, n := range fenced {
		if n > 1 || removed[id] != 1 {
			t.Fatalf("machine %s fenced %d times and removed %d times", id, n, removed[id])
		}
	}
	for id, n := range removed {
		if n > 1 {
			t.Fatalf("machine %s removed %d times", id, n)
		}
	}
}

// checkConverges applies the plan to the observed world and plans again:
// the second plan may only fail a VIP back to a slot the first plan
// created (a new node gets the VIP only once it is healthy); the third
// plan must be empty.
func checkConverges(t *rapid.T, in Input, r Result) {
	world := apply(t, in.Observed, r)
	again := in
	again.Observed = world
	r2 := Plan(again)
	for _, s := range r2.Steps {
		if s.Action != ActionMoveVIP || s.Reason != "failback to the lowest healthy slot" {
			t.Fatalf("plan does not converge; after\n%v\nthe next plan is\n%v", brief(r.Steps), brief(r2.Steps))
		}
	}
	again.Observed = apply(t, world, r2)
	if r3 := Plan(again); len(r3.Steps) > 0 {
		t.Fatalf("plan does not converge; after\n%v\nand\n%v\nthe next plan is\n%v", brief(r.Steps), brief(r2.Steps), brief(r3.Steps))
	}
	// What is left is one machine per declared slot, on the role's
	// provider, plus machines without a valid slot (left alone).
	seen := map[string]providers.MachineID{}
	for _, o := range again.Observed {
		m := o.Machine
		if m.Slot < 1 {
			continue
		}
		role := in.Config.Role(m.Role)
		name := providers.NodeName(m.Role, m.Slot)
		if id, ok := seen[name]; role == nil || m.Slot > role.Count || o.Provider != role.Provider || ok && id != m.ID {
			t.Fatalf("after applying\n%v\nmachine %s (%s on %s) is left over", brief(r.Steps), m.ID, name, o.Provider)
		}
		seen[name] = m.ID
	}
}

// apply simulates a plan on a copy of the observed machines. New machines
// are powered on and not yet members.
func apply(t *rapid.T, obs []Observed, r Result) []Observed {
	world := slices.Clone(obs)
	find := func(id providers.MachineID) int {
		return slices.IndexFunc(world, func(o Observed) bool { return o.Machine.ID == id })
	}
	remove := func(id providers.MachineID) {
		world = slices.DeleteFunc(world, func(o Observed) bool { return o.Machine.ID == id })
	}
	for _, s := range r.Steps {
		switch s.Action {
		case ActionFence:
			for i := range world {
				if world[i].Machine.ID == s.Machine {
					world[i].Machine.State = providers.PowerOff
				}
			}
		case ActionDestroy:
			remove(s.Machine)
		case ActionReplace, ActionCreate:
			remove(s.Machine)
			o := machine(s.Name, s.Generation, onProvider(s.Provider))
			o.Machine.ID = providers.MachineID("new-" + s.Name)
			world = append(world, o)
		case ActionMoveVIP:
			for i := range world {
				world[i].VIPs = slices.DeleteFunc(slices.Clone(world[i].VIPs), func(v string) bool { return v == s.VIP })
			}
			id := s.Machine
			if id == "" {
				id = providers.MachineID("new-" + s.Name)
			}
			if find(id) < 0 {
				t.Fatalf("move-vip to %s: no such machine", id)
			}
			for i := range world {
				if world[i].Machine.ID == id {
					world[i].VIPs = append(world[i].VIPs, s.VIP)
				}
			}
		}
	}
	return world
}

func observedRole(in Input, role string) bool {
	for _, o := range in.Observed {
		if o.Machine.Role == role {
			return true
		}
	}
	return false
}
