package plan

import (
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// Action is what a step does.
type Action string

const (
	ActionCreate  Action = "create"  // make a missing slot
	ActionFence   Action = "fence"   // cut a failed machine off (provider power-off), confirmed
	ActionDestroy Action = "destroy" // remove a machine and its disk
	ActionReplace Action = "replace" // fence (if alive) + destroy + create with the next generation
	ActionMoveVIP Action = "move-vip"
	ActionRestore Action = "restore-data"
)

// Health of a member as gossip reports it.
type Health string

const (
	HealthUnknown   Health = ""
	HealthPassing   Health = "passing"
	HealthFailing   Health = "failing"
	HealthUnreached Health = "unreachable" // gossip says dead / suspect for too long
)

// Observed is one machine of the cluster as the provider and membership see it.
type Observed struct {
	Provider string // provider name in the config
	Machine  providers.Machine
	// Member is true when gossip membership knows the node (false when there is
	// no control plane yet: the CLI before the first apply).
	Member bool
	Health Health
	// Since is when Health last changed (for failure timeouts).
	Since time.Time
	// VIPs held by this machine.
	VIPs []string
}

// Input is everything the planner looks at. Plan is a pure function of it.
type Input struct {
	Config   *lang.Config
	Observed []Observed
	// Now is the time of the observation; the planner never reads a clock.
	Now time.Time
	// FailureTimeout is how long a member may be failing or unreachable
	// before it is replaced (0 = replace as soon as it is seen failed).
	FailureTimeout time.Duration
}

// Step is one action with the reason for it. Every step is one provider call
// (or one short sequence that is idempotent as a whole), so an executor can
// replay a plan after a crash.
type Step struct {
	Action   Action
	Provider string
	Role     string
	Slot     int
	// Generation is the generation the step creates (create/replace) or acts on.
	Generation int
	// Name is the node name, e.g. web-2.
	Name string
	// Machine is the existing machine the step acts on, when there is one.
	Machine providers.MachineID
	// VIP is the address for move-vip.
	VIP    string
	Reason string
}
