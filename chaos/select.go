package chaos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// ErrStage3 refuses the stage 3 preset.
var ErrStage3 = errors.New("stage 3 needs the beachhead (an external watcher), which is not built yet")

// Selection is the victims of one round.
type Selection struct {
	Victims []Node `json:"victims"`
	// Survivor is the node stage 2 keeps ("" otherwise).
	Survivor string `json:"survivor,omitempty"`
	// Intent says what the round means to break beyond tolerance ("" = nothing).
	Intent string `json:"intent,omitempty"`
}

// Names returns the victims' names.
func (s Selection) Names() []string {
	out := make([]string, len(s.Victims))
	for i, v := range s.Victims {
		out[i] = v.Name
	}
	return out
}

// SelectOptions restrict victim selection.
type SelectOptions struct {
	Stage int
	// Roles opts roles in (nil = every role).
	Roles []string
	// BlastRadius is the most victims in one round (0 = the stage's own:
	// 1 for stage 1, unlimited for stage 2).
	BlastRadius int
	// Exclude names nodes never drawn as victims (the node hosting the
	// run); stage 2 keeps Exclude[0] as its survivor when it exists.
	Exclude []string
}

// NewRand returns the generator a run draws victims from: math/rand/v2's
// PCG seeded with seed, so the same seed and cluster give the same victims.
func NewRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// RoundRand returns the generator of round n (from 1) of a run with seed.
func RoundRand(seed uint64, n int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(n)*0x9e3779b97f4a7c15))
}

func optedIn(roles []string, role string) bool {
	return len(roles) == 0 || slices.Contains(roles, role)
}

// Select draws the victims of one round from the current nodes of snap (one
// per node name, sorted by name, so the draw depends only on the seed and
// the cluster's node names) and checks them with CheckOutage. It returns an
// error, without drawing, when no selection is allowed.
func Select(r *rand.Rand, spec Spec, snap Snapshot, o SelectOptions) (Selection, error) {
	nodes := snap.Current()
	if len(nodes) == 0 {
		return Selection{}, errors.New("the cluster has no nodes")
	}
	switch o.Stage {
	case 1:
		radius := o.BlastRadius
		if radius == 0 {
			radius = 1
		}
		if radius < 1 {
			return Selection{}, fmt.Errorf("blast radius %d allows no victim", radius)
		}
		if err := checkWhole(spec, snap); err != nil {
			return Selection{}, err
		}
		var cands []Node
		var why []string
		for _, n := range nodes {
			if !optedIn(o.Roles, n.Role) || slices.Contains(o.Exclude, n.Name) {
				continue
			}
			if err := checkLoss(spec, snap, []Node{n}); err != nil {
				why = append(why, err.Error())
				continue
			}
			cands = append(cands, n)
		}
		if len(cands) == 0 {
			if len(why) == 0 {
				return Selection{}, fmt.Errorf("no node of the opted-in roles %s", strings.Join(o.Roles, ", "))
			}
			return Selection{}, fmt.Errorf("no node may be lost: %s", why[0])
		}
		return Selection{Victims: []Node{cands[r.IntN(len(cands))]}}, nil
	case 2:
		if len(nodes) < 2 {
			return Selection{}, fmt.Errorf("stage 2 needs at least 2 nodes, the cluster has %d", len(nodes))
		}
		survivor := nodes[r.IntN(len(nodes))]
		for _, n := range nodes {
			if len(o.Exclude) > 0 && n.Name == o.Exclude[0] {
				survivor = n
			}
		}
		sel := Selection{Survivor: survivor.Name,
			Intent: "stage 2: destroy all but " + survivor.Name + " at once, breaking quorum and every role's tolerance on purpose"}
		for _, n := range nodes {
			if n.Name != survivor.Name && optedIn(o.Roles, n.Role) && !slices.Contains(o.Exclude, n.Name) {
				sel.Victims = append(sel.Victims, n)
			}
		}
		if len(sel.Victims) == 0 {
			return Selection{}, fmt.Errorf("stage 2: no node of the opted-in roles besides the survivor %s", survivor.Name)
		}
		if o.BlastRadius > 0 && len(sel.Victims) > o.BlastRadius {
			return Selection{}, fmt.Errorf("stage 2 would take %d nodes, more than the blast radius %d", len(sel.Victims), o.BlastRadius)
		}
		if err := CheckOutage(spec, snap, sel.Victims, true); err != nil {
			return Selection{}, err
		}
		return sel, nil
	case 3:
		return Selection{}, ErrStage3
	}
	return Selection{}, fmt.Errorf("unknown stage %d (want 1, 2 or 3)", o.Stage)
}

// CheckOutage is the check before every round. It refuses while the
// cluster is degraded (a declared slot missing, or its newest generation
// not on and healthy), while a recovery is in flight, and, unless intended
// is true, when losing victims would take a role below its tolerance or
// the voters below quorum. When the voters are not known, every victim is
// counted as a voter.
func CheckOutage(spec Spec, snap Snapshot, victims []Node, intended bool) error {
	if err := checkWhole(spec, snap); err != nil {
		return err
	}
	if intended {
		return nil
	}
	return checkLoss(spec, snap, victims)
}

// checkWhole refuses a degraded cluster or one with a recovery in flight.
func checkWhole(spec Spec, snap Snapshot) error {
	cur := map[string]Node{}
	for _, n := range snap.Current() {
		cur[n.Name] = n
	}
	for _, r := range spec.Roles {
		for slot := 1; slot <= r.Count; slot++ {
			name := r.Name + "-" + strconv.Itoa(slot)
			n, ok := cur[name]
			switch {
			case !ok:
				return fmt.Errorf("cluster %s is degraded: %s is missing", spec.Cluster, name)
			case n.State != "on":
				return fmt.Errorf("cluster %s is degraded: %s (%s) is %s", spec.Cluster, name, n.Machine, n.State)
			case n.Health != HealthPassing:
				return fmt.Errorf("cluster %s is degraded: %s (%s) is %s", spec.Cluster, name, n.Machine, n.Health)
			}
		}
	}
	if len(snap.Recovering) > 0 {
		return fmt.Errorf("cluster %s has a recovery in flight: %s", spec.Cluster, strings.Join(snap.Recovering, ", "))
	}
	return nil
}

// checkLoss refuses victims beyond a role's tolerance or the quorum.
func checkLoss(spec Spec, snap Snapshot, victims []Node) error {
	byRole := map[string]int{}
	voters := 0
	for _, v := range victims {
		byRole[v.Role]++
		if v.Voter || !snap.VotersKnown {
			voters++
		}
	}
	for _, r := range spec.Roles {
		if k := byRole[r.Name]; k > r.CanLose {
			return fmt.Errorf("losing %d node(s) of role %s would exceed its tolerance (can lose %d of %d)", k, r.Name, r.CanLose, r.Count)
		}
	}
	voters = min(voters, spec.Voters)
	if spec.Voters > 0 && spec.Voters-voters < spec.Quorum {
		return fmt.Errorf("losing %d voter(s) would leave %d of %d, below quorum %d", voters, spec.Voters-voters, spec.Voters, spec.Quorum)
	}
	return nil
}
