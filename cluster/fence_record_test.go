package cluster

import (
	"testing"

	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// A fence that finds the machine already destroyed by its slot's rebuild
// still names the machine, taken from the rebuild's step for that
// generation, never from another generation's step or another slot.
func TestRebuiltMachine_NamesTheCutOffGeneration(t *testing.T) {
	st := State{Rebuilds: map[string]Rebuild{
		"lb-1": {Name: "lb-1", Generation: 3, Steps: []StepRecord{
			{Step: plan.Step{Machine: "m-gen1"}, MachineGeneration: 1},
			{Step: plan.Step{Machine: "m-gen2"}, MachineGeneration: 2},
			{Step: plan.Step{}}, // create: no machine
		}},
		"web-1": {Name: "web-1", Generation: 2, Steps: []StepRecord{
			{Step: plan.Step{Machine: "w-gen1"}, MachineGeneration: 1},
		}},
	}}
	for _, tc := range []struct {
		name string
		gen  int
		want providers.MachineID
	}{
		{"lb-1", 2, "m-gen2"},
		{"lb-1", 1, "m-gen1"},
		{"lb-1", 3, ""},
		{"lb-2", 1, ""},
		{"web-1", 1, "w-gen1"},
	} {
		if got := rebuiltMachine(st, tc.name, tc.gen); got != tc.want {
			t.Errorf("rebuiltMachine(%s, %d) = %q, want %q", tc.name, tc.gen, got, tc.want)
		}
	}
}
