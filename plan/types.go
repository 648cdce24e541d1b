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
	// ActionReplace destroys the machine in Step.Machine and creates the slot
	// again with the next generation. When the old machine must be fenced, a
	// separate ActionFence step for it comes first (Step.After points at it).
	ActionReplace Action = "replace"
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
	// no control plane yet: the CLI before the first apply). When Member is
	// false the planner judges the machine by its power state only.
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
	// Capabilities of each provider by provider name, for warnings (a VIP on
	// a provider that cannot move one, fencing on one that cannot fence). A
	// provider missing from the map is not warned about.
	Capabilities map[string]providers.Capabilities
	// KnownGenerations is the highest generation ever used per node name
	// ("web-2"), as the cluster log records it. The planner numbers new
	// generations above both this and every generation it observes, so a
	// slot whose machines are all gone never reuses a generation. Optional.
	KnownGenerations map[string]int
}

// Step is one action with the reason for it. Every step is one provider call
// (or one short sequence that is idempotent as a whole), so an executor can
// replay a plan after a crash.
type Step struct {
	// ID is the step's index in Result.Steps.
	ID     int    `json:"id"`
	Action Action `json:"action"`
	// After lists the IDs of steps that must have finished before this one
	// starts. IDs in After are always smaller than ID.
	After    []int  `json:"after,omitempty"`
	Provider string `json:"provider,omitempty"`
	Role     string `json:"role"`
	Slot     int    `json:"slot"`
	// Generation is the generation the step creates (create/replace) or acts on.
	Generation int `json:"generation"`
	// Previous is the generation a replace step removes.
	Previous int `json:"previous,omitempty"`
	// Name is the node name, e.g. web-2.
	Name string `json:"name"`
	// Machine is the existing machine the step acts on, when there is one
	// (for move-vip: the new holder, "" when it is created by this plan).
	Machine providers.MachineID `json:"machine,omitempty"`
	// VIP is the address for move-vip.
	VIP string `json:"vip,omitempty"`
	// From is the node that held the VIP for move-vip ("" when none did).
	From string `json:"from,omitempty"`
	// Data is the data block a restore-data step restores.
	Data string `json:"data,omitempty"`
	// Fencing is the role's fencing method, for fence steps.
	Fencing string `json:"fencing,omitempty"`
	// Region, Size and Image are the placement of create and replace steps.
	Region string `json:"region,omitempty"`
	Size   string `json:"size,omitempty"`
	Image  string `json:"image,omitempty"`
	Reason string `json:"reason"`
}

// Result is the plan: the ordered steps plus what the operator should know.
type Result struct {
	// Steps in an order that is safe to run one by one; After expresses the
	// partial order an executor must keep when it runs steps in parallel.
	Steps     []Step      `json:"steps"`
	Tolerance []Tolerance `json:"tolerance"`
	Quorum    Quorum      `json:"quorum"`
	Warnings  []Warning   `json:"warnings"`
}

// Tolerance says how many nodes of a role may fail at once while the role
// keeps serving and keeps its acknowledged data.
type Tolerance struct {
	Role  string `json:"role"`
	Count int    `json:"count"`
	// Healthy is how many of its declared slots are live and healthy now
	// and stay untouched by this plan.
	Healthy int `json:"healthy"`
	// CanLose is how many nodes of the role may be lost at once by design.
	CanLose int `json:"can_lose"`
	// Note explains CanLose for stateful roles.
	Note string `json:"note,omitempty"`
}

// Quorum describes the raft voter set.
type Quorum struct {
	// Voters is the number of voting members, the witness included.
	Voters int `json:"voters"`
	// Automatic is true when cluster.voters was 0 and Voters was derived.
	Automatic bool   `json:"automatic"`
	Witness   string `json:"witness,omitempty"`
	// Quorum is floor(Voters/2)+1.
	Quorum int `json:"quorum"`
	// CanFail is Voters-Quorum.
	CanFail int `json:"can_fail"`
}

// Warning is something fragile about the configuration or the cluster.
type Warning struct {
	Role    string `json:"role,omitempty"` // "" for cluster-wide warnings
	Message string `json:"message"`
}

// Counts summarises a plan.
type Counts struct {
	Create  int `json:"create"`
	Replace int `json:"replace"`
	Destroy int `json:"destroy"`
	Fence   int `json:"fence"`
	MoveVIP int `json:"move_vip"`
	Restore int `json:"restore_data"`
}

// Counts counts the steps of r by action.
func (r Result) Counts() Counts {
	var c Counts
	for _, s := range r.Steps {
		switch s.Action {
		case ActionCreate:
			c.Create++
		case ActionReplace:
			c.Replace++
		case ActionDestroy:
			c.Destroy++
		case ActionFence:
			c.Fence++
		case ActionMoveVIP:
			c.MoveVIP++
		case ActionRestore:
			c.Restore++
		}
	}
	return c
}

// Empty reports whether the plan has no steps.
func (r Result) Empty() bool { return len(r.Steps) == 0 }
