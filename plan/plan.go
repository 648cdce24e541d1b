package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// Fencing methods the planner and executor know. An empty method means
// FenceProvider.
const (
	FenceNone     = "none"
	FenceProvider = "provider"
	FenceDestroy  = "destroy"
	FenceSSH      = "ssh"
	FenceIPMI     = "ipmi"
	FenceRedfish  = "redfish"
)

// FencingMethod returns the role's effective fencing method.
func FencingMethod(r *lang.Role) string {
	if r.Fencing.Method == "" {
		return FenceProvider
	}
	return r.Fencing.Method
}

// VIPName returns the name the planner uses for a role's VIP: its address,
// or the role name when the provider allocates the address (providers that
// allocate report the VIP under that name in Observed.VIPs). It returns ""
// when the role has no VIP.
func VIPName(r *lang.Role) string {
	switch {
	case r.VIP == nil:
		return ""
	case r.VIP.Address != "":
		return r.VIP.Address
	default:
		return r.Name
	}
}

// phase orders the steps of a plan; steps of a lower phase come first.
type phase int

const (
	phaseFence    phase = iota // fence failed and superseded machines
	phaseVIPEarly              // move VIPs to members that exist
	phaseDestroy               // destroy superseded machines and undeclared roles
	phaseCreate                // create and replace, each followed by its restores
	phaseVIPLate               // move VIPs to members this plan creates
	phaseExcess                // destroy slots above count, after the role's creates
	numPhases
)

type pending struct {
	step  Step
	phase phase
	// deps names the nodes whose earlier steps a move-vip waits for.
	deps []string
}

// obsKey identifies an observed machine across providers.
type obsKey struct {
	provider string
	id       providers.MachineID
}

type planner struct {
	in       Input
	cluster  string
	roles    map[string]*lang.Role
	steps    []pending
	warnings []Warning
	// acted maps machines that the plan fences, destroys or replaces to the
	// reason, so VIP handling and tolerance never count them as healthy.
	acted map[obsKey]string
	// cands are the newest machines of each declared slot (role → slot).
	cands map[string]map[int]*Observed
	// rebuilt holds the slots (role → slots) the plan creates or replaces.
	rebuilt map[string][]int
}

// hasHistory reports whether any machine of the role exists or ever existed
// (as far as the input tells): then a created node must restore its data
// rather than start empty.
func (p *planner) hasHistory(r *lang.Role) bool {
	for _, o := range p.in.Observed {
		if o.Machine.Role == r.Name {
			return true
		}
	}
	for name := range p.in.KnownGenerations {
		if role, _, ok := strings.Cut(name, "-"); ok && role == r.Name {
			return true
		}
		if strings.HasPrefix(name, r.Name+"-") {
			return true
		}
	}
	return false
}

// Plan compares the configuration with the observed machines and returns
// the steps that make the cluster match, with tolerance information and
// warnings. It is a pure function of in: no I/O, no clock, and the same
// input (in any order of in.Observed) gives the same result.
//
// The rules, per role and slot 1..Count:
//   - no machine → create the next generation ("missing");
//   - machines of older generations → fence (unless fencing is "none" or the
//     machine is off) and destroy ("superseded by generation G");
//   - the newest machine powered off → replace ("powered off");
//   - the newest machine failing or unreachable for at least FailureTimeout →
//     fence (unless fencing is "none") then replace ("unreachable for 12s");
//   - slots above Count → destroy ("count lowered to N"), after the role's
//     creates; machines of undeclared roles → destroy.
//
// A create or replace of a role with data is followed by one restore-data
// step per data block. A machine that is powered on and healthy (or, without
// membership, powered on) for a declared slot is never touched. A nil
// Config plans nothing.
func Plan(in Input) Result {
	p := &planner{
		in:      in,
		roles:   map[string]*lang.Role{},
		acted:   map[obsKey]string{},
		cands:   map[string]map[int]*Observed{},
		rebuilt: map[string][]int{},
	}
	if in.Config == nil {
		// Fail safe: without a configuration every machine would look
		// undeclared and be destroyed.
		return Result{Warnings: []Warning{{Message: "no configuration: nothing is planned"}}}
	}
	if in.Config.Cluster != nil {
		p.cluster = in.Config.Cluster.Name
	}
	roles := slices.Clone(in.Config.Roles)
	slices.SortFunc(roles, func(a, b *lang.Role) int { return cmp.Compare(a.Name, b.Name) })
	for _, r := range roles {
		p.roles[r.Name] = r
	}

	// Group the observed machines by role and slot, in a canonical order so
	// that the order of in.Observed never matters. A machine listed twice
	// (same provider and id) counts once.
	obs := make([]*Observed, 0, len(in.Observed))
	for i := range in.Observed {
		o := &in.Observed[i]
		if p.cluster != "" && o.Machine.Cluster != "" && o.Machine.Cluster != p.cluster {
			continue // not ours; providers list by cluster, this is defence
		}
		obs = append(obs, o)
	}
	slices.SortFunc(obs, compareObserved)
	seen := make(map[obsKey]bool, len(obs))
	obs = slices.DeleteFunc(obs, func(o *Observed) bool {
		dup := seen[key(o)]
		seen[key(o)] = true
		return dup
	})
	bySlot := map[string]map[int][]*Observed{}
	for _, o := range obs {
		m := o.Machine
		switch {
		case m.Slot < 1:
			p.warn(m.Role, fmt.Sprintf("machine %s on %s has no valid slot tag (%d); it is left alone", m.ID, o.Provider, m.Slot))
			continue
		case p.roles[m.Role] == nil:
			p.destroy(o, phaseDestroy, fmt.Sprintf("role %s no longer declared", m.Role))
			continue
		}
		if bySlot[m.Role] == nil {
			bySlot[m.Role] = map[int][]*Observed{}
		}
		bySlot[m.Role][m.Slot] = append(bySlot[m.Role][m.Slot], o)
	}

	var tol []Tolerance
	for _, r := range roles {
		tol = append(tol, p.role(r, bySlot[r.Name]))
	}
	for _, r := range roles {
		p.vip(r, obs)
	}
	q := p.quorum(roles)
	p.configWarnings(roles, q)

	return Result{
		Steps:     p.assemble(),
		Tolerance: tol,
		Quorum:    q,
		Warnings:  p.warnings,
	}
}

// compareObserved orders machines by role, slot, newest generation first,
// then healthy first, then provider and id.
func compareObserved(a, b *Observed) int {
	if c := cmp.Compare(a.Machine.Role, b.Machine.Role); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Machine.Slot, b.Machine.Slot); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Machine.Generation, a.Machine.Generation); c != 0 {
		return c
	}
	if ha, hb := healthy(a), healthy(b); ha != hb {
		if ha {
			return -1
		}
		return 1
	}
	return cmp.Or(
		cmp.Compare(a.Provider, b.Provider),
		cmp.Compare(a.Machine.ID, b.Machine.ID),
		// The same machine listed twice: still a total order.
		cmp.Compare(a.Machine.State, b.Machine.State),
		cmp.Compare(a.Health, b.Health),
		a.Since.Compare(b.Since),
		cmp.Compare(fmt.Sprint(a.Member, a.VIPs), fmt.Sprint(b.Member, b.VIPs)),
	)
}

// healthy reports whether a machine is live and healthy: powered on and,
// when membership knows it, passing its checks.
func healthy(o *Observed) bool {
	if o.Machine.State != providers.PowerOn {
		return false
	}
	return !o.Member || o.Health == HealthPassing
}

// failed reports whether membership says the machine is failing.
func failed(o *Observed) bool {
	return o.Member && (o.Health == HealthFailing || o.Health == HealthUnreached)
}

func key(o *Observed) obsKey { return obsKey{o.Provider, o.Machine.ID} }

// nodeName is the node name of an observed machine, from its tags when the
// provider reports no name.
func nodeName(o *Observed) string {
	if o.Machine.Name != "" {
		return o.Machine.Name
	}
	return providers.NodeName(o.Machine.Role, o.Machine.Slot)
}

func (p *planner) warn(role, msg string) {
	p.warnings = append(p.warnings, Warning{Role: role, Message: msg})
}

func (p *planner) add(s Step, ph phase, deps ...string) {
	p.steps = append(p.steps, pending{step: s, phase: ph, deps: deps})
}

// machineStep is a step acting on an existing machine.
func machineStep(a Action, o *Observed, reason string) Step {
	m := o.Machine
	return Step{
		Action:     a,
		Provider:   o.Provider,
		Role:       m.Role,
		Slot:       m.Slot,
		Generation: m.Generation,
		Name:       nodeName(o),
		Machine:    m.ID,
		Reason:     reason,
	}
}

func (p *planner) destroy(o *Observed, ph phase, reason string) {
	p.acted[key(o)] = reason
	p.add(machineStep(ActionDestroy, o, reason), ph)
}

// fence adds a fence step for o when the role fences and o may still run.
func (p *planner) fence(r *lang.Role, o *Observed, reason string) {
	method := FencingMethod(r)
	if method == FenceNone || o.Machine.State == providers.PowerOff {
		return
	}
	s := machineStep(ActionFence, o, reason)
	s.Fencing = method
	p.add(s, phaseFence)
}

// role plans one declared role and returns its tolerance.
func (p *planner) role(r *lang.Role, slots map[int][]*Observed) Tolerance {
	p.cands[r.Name] = map[int]*Observed{}
	count := max(r.Count, 0)
	healthyN := 0
	for slot := 1; slot <= count; slot++ {
		name := providers.NodeName(r.Name, slot)
		gen := p.in.KnownGenerations[name]
		var ms []*Observed
		for _, o := range slots[slot] {
			gen = max(gen, o.Machine.Generation)
			if o.Provider == r.Provider || r.Provider == "" {
				ms = append(ms, o)
			}
		}
		next := gen + 1
		if len(ms) == 0 {
			p.create(r, slot, next, ActionCreate, nil, "missing")
			continue
		}
		c := ms[0]
		p.cands[r.Name][slot] = c
		for _, o := range ms[1:] {
			why := fmt.Sprintf("superseded by generation %d", c.Machine.Generation)
			if o.Machine.Generation == c.Machine.Generation {
				why = fmt.Sprintf("duplicate of machine %s", c.Machine.ID)
			}
			p.fence(r, o, why)
			p.destroy(o, phaseDestroy, why)
		}
		switch {
		case c.Machine.State == providers.PowerOff:
			p.create(r, slot, next, ActionReplace, c, "powered off")
		case failed(c):
			down, why := p.down(c)
			if down < p.in.FailureTimeout {
				p.warn(r.Name, fmt.Sprintf("%s %s; it is replaced after %s", nodeName(c), why, p.in.FailureTimeout))
				break
			}
			p.fence(r, c, why)
			p.create(r, slot, next, ActionReplace, c, why)
		case healthy(c):
			healthyN++
		}
	}
	// Machines of the role that are not the candidate of a declared slot:
	// slots above count, and slots that moved to another provider.
	for _, slot := range sortedKeys(slots) {
		for _, o := range slots[slot] {
			if slot <= count && (o.Provider == r.Provider || r.Provider == "") {
				continue // candidate or superseded: handled above
			}
			why := fmt.Sprintf("count lowered to %d", count)
			if slot <= count {
				why = fmt.Sprintf("role %s moved to provider %s", r.Name, r.Provider)
			}
			p.destroy(o, phaseExcess, why)
		}
	}
	return tolerance(r, healthyN)
}

// down returns how long c has been failed and a reason saying so.
func (p *planner) down(c *Observed) (time.Duration, string) {
	what := "unreachable"
	if c.Health == HealthFailing {
		what = "failing health checks"
	}
	if c.Since.IsZero() {
		return 1<<63 - 1, what
	}
	d := max(p.in.Now.Sub(c.Since), 0)
	return d, fmt.Sprintf("%s for %s", what, d.Round(time.Second))
}

// create adds a create (old == nil) or replace step for a slot, and the
// restore steps of the role's data after it.
func (p *planner) create(r *lang.Role, slot, gen int, a Action, old *Observed, reason string) {
	s := Step{
		Action:     a,
		Provider:   r.Provider,
		Role:       r.Name,
		Slot:       slot,
		Generation: gen,
		Name:       providers.NodeName(r.Name, slot),
		Size:       r.Placement.Size,
		Image:      r.Placement.Image,
		Reason:     reason,
	}
	if n := len(r.Placement.Regions); n > 0 {
		s.Region = r.Placement.Regions[0]
		if r.Placement.Spread {
			s.Region = r.Placement.Regions[(slot-1)%n]
		}
	}
	if old != nil {
		s.Machine = old.Machine.ID
		s.Previous = old.Machine.Generation
		if old.Provider != "" {
			s.Provider = old.Provider
		}
		p.acted[key(old)] = reason
	}
	p.add(s, phaseCreate)
	p.rebuilt[r.Name] = append(p.rebuilt[r.Name], slot)
	if gen <= 1 && !p.hasHistory(r) {
		// A new role (no machine of it was ever seen): its data starts
		// empty, there is nothing to restore from.
		return
	}
	for _, d := range r.Data {
		p.add(Step{
			Action:     ActionRestore,
			Provider:   s.Provider,
			Role:       r.Name,
			Slot:       slot,
			Generation: gen,
			Name:       s.Name,
			Data:       d.Name,
			Reason:     fmt.Sprintf("restore %s from replica or backup", d.Name),
		}, phaseCreate)
	}
}

// vip moves the role's VIP when its holder is not a healthy member of the
// role that this plan leaves alone.
func (p *planner) vip(r *lang.Role, obs []*Observed) {
	addr := VIPName(r)
	if addr == "" || r.Count < 1 {
		return
	}
	if caps, known := p.in.Capabilities[r.Provider]; known && !caps.VIP {
		return // configWarnings says the provider cannot move it
	}
	var holders []*Observed
	for _, o := range obs {
		if slices.Contains(o.VIPs, addr) {
			holders = append(holders, o)
		}
	}
	// usable reports whether o is the untouched, healthy candidate of a slot.
	usable := func(o *Observed) bool {
		c := p.cands[r.Name][o.Machine.Slot]
		_, acted := p.acted[key(o)]
		return c == o && o.Machine.Role == r.Name && o.Machine.Slot <= r.Count && healthy(o) && !acted
	}
	var target *Observed
	for slot := 1; slot <= r.Count; slot++ {
		if c := p.cands[r.Name][slot]; c != nil && usable(c) {
			target = c
			break
		}
	}

	var why, from string
	var deps []string
	for _, h := range holders {
		deps = append(deps, nodeName(h))
	}
	switch {
	case len(holders) == 0:
		why = "no member holds it"
	case len(holders) > 1:
		why = fmt.Sprintf("held by %d machines", len(holders))
		from = nodeName(holders[0])
	default:
		h := holders[0]
		from = nodeName(h)
		if usable(h) {
			if target == nil || target == h || !p.failback(r, target) {
				return // the holder is fine
			}
			why = "failback to the lowest healthy slot"
			break
		}
		if a, ok := p.acted[key(h)]; ok {
			why = fmt.Sprintf("holder %s: %s", from, a)
		} else if h.Machine.Role != r.Name || p.cands[r.Name][h.Machine.Slot] != h || h.Machine.Slot > r.Count {
			why = fmt.Sprintf("holder %s is not a member of role %s", from, r.Name)
		} else {
			why = fmt.Sprintf("holder %s is not healthy", from)
		}
	}
	s := Step{Action: ActionMoveVIP, Role: r.Name, Provider: r.Provider, VIP: addr, From: from, Reason: why}
	if target != nil {
		s.Slot, s.Generation, s.Name, s.Machine = target.Machine.Slot, target.Machine.Generation, nodeName(target), target.Machine.ID
		if target.Provider != "" {
			s.Provider = target.Provider
		}
		p.add(s, phaseVIPEarly, append(deps, s.Name)...)
		return
	}
	if slots := p.rebuilt[r.Name]; len(slots) > 0 {
		slot := slices.Min(slots)
		s.Slot, s.Name = slot, providers.NodeName(r.Name, slot)
		for _, q := range p.steps {
			if q.step.Name == s.Name && (q.step.Action == ActionCreate || q.step.Action == ActionReplace) {
				s.Generation = q.step.Generation
			}
		}
		p.add(s, phaseVIPLate, append(deps, s.Name)...)
		return
	}
	p.warn(r.Name, fmt.Sprintf("VIP %s needs a holder (%s) but no member of role %s is healthy", addr, why, r.Name))
}

// failback reports whether the role's failback policy moves the VIP to
// target, the lowest healthy slot, away from a healthy holder.
func (p *planner) failback(r *lang.Role, target *Observed) bool {
	switch r.VIP.Failback {
	case lang.FailbackImmediate:
		return true
	case lang.FailbackDelayed:
		return !target.Member || target.Since.IsZero() || p.in.Now.Sub(target.Since) >= r.VIP.FailbackDelay
	}
	return false
}

// tolerance says how many nodes of r may fail at once.
func tolerance(r *lang.Role, healthyN int) Tolerance {
	t := Tolerance{Role: r.Name, Count: r.Count, Healthy: healthyN, CanLose: max(r.Count-1, 0)}
	mode := ""
	var interval time.Duration
	for _, d := range r.Data {
		switch {
		case d.Mode == lang.ReplicationNone:
			mode = lang.ReplicationNone
		case d.Mode == lang.ReplicationSync && mode != lang.ReplicationNone:
			mode = lang.ReplicationSync
		case d.Mode == lang.ReplicationAsync && mode == "":
			mode = lang.ReplicationAsync
			interval = max(interval, d.Interval)
		}
	}
	switch mode {
	case lang.ReplicationSync:
		// Every acknowledged write is on at least 2 replicas, so any one
		// node may go without losing one; two may hold the only copies.
		t.CanLose = min(max(r.Count-1, 0), 1)
		t.Note = "sync data: writes are acknowledged on 2 replicas and refused while only 1 is up"
	case lang.ReplicationAsync:
		t.Note = "async data: the last " + interval.String() + " of writes may be lost"
		if interval == 0 {
			t.Note = "async data: the last interval of writes may be lost"
		}
	case lang.ReplicationNone:
		t.CanLose = 0
		t.Note = "unreplicated data: a lost node loses writes since its last backup"
	}
	return t
}

// quorum computes the raft voter set.
func (p *planner) quorum(roles []*lang.Role) Quorum {
	total := 0
	for _, r := range roles {
		total += max(r.Count, 0)
	}
	var q Quorum
	if c := p.in.Config; c != nil && c.Cluster != nil {
		q.Voters, q.Witness = c.Cluster.Voters, c.Cluster.Witness
	}
	if q.Voters <= 0 {
		q.Automatic = true
		q.Voters = min(5, total)
		if q.Voters%2 == 0 && q.Voters > 0 {
			q.Voters--
		}
	}
	if q.Witness != "" {
		q.Voters++
	}
	if q.Voters > 0 {
		q.Quorum = q.Voters/2 + 1
		q.CanFail = q.Voters - q.Quorum
	}
	return q
}

// configWarnings warns about designs that are fragile.
func (p *planner) configWarnings(roles []*lang.Role, q Quorum) {
	allLocal, anyLab, declared, total := true, false, 0, 0
	for _, r := range roles {
		if r.Count < 1 {
			continue
		}
		declared++
		total += r.Count
		method := FencingMethod(r)
		switch p.providerType(r.Provider) {
		case "local":
		case "lab":
			anyLab = true
		default:
			allLocal = false
		}
		if len(r.Data) > 0 && method == FenceNone {
			p.warn(r.Name, fmt.Sprintf("role %s keeps data but fencing.method is \"none\": a node that is only unreachable may keep writing while its replacement restores", r.Name))
		}
		if method == FenceSSH {
			p.warn(r.Name, fmt.Sprintf("role %s fences over ssh, through the node itself: a node that is down or cut off cannot confirm its own fence", r.Name))
		}
		if r.Count == 1 {
			msg := fmt.Sprintf("role %s has count 1: losing its node is an outage until it is rebuilt", r.Name)
			if r.VIP != nil && r.VIP.Note != "" {
				msg += " (" + r.VIP.Note + ")"
			}
			p.warn(r.Name, msg)
		}
		caps, known := p.in.Capabilities[r.Provider]
		if known && r.VIP != nil && !caps.VIP {
			p.warn(r.Name, fmt.Sprintf("role %s has a VIP but provider %s cannot move one", r.Name, r.Provider))
		}
		if known && !caps.Fence && method != FenceNone && method != FenceDestroy {
			p.warn(r.Name, fmt.Sprintf("provider %s cannot fence: role %s cannot be rebuilt safely; set fencing.method = \"destroy\" or \"none\"", r.Provider, r.Name))
		}
	}
	if declared > 0 && allLocal {
		if anyLab {
			p.warn("", "every role runs on this machine (local and lab providers): one machine is one failure domain")
		} else {
			p.warn("", "every role runs on the local provider: one machine is one failure domain")
		}
	}
	switch {
	case q.Voters == 2:
		p.warn("", "2 raft voters and no witness: losing either stops the reconciler; set cluster.witness or run 3 voters")
	case q.Voters == 1 && total > 1:
		p.warn("", fmt.Sprintf("1 raft voter for %d nodes: losing it stops the reconciler; set cluster.witness or run 3 voters", total))
	}
	if !q.Automatic && q.Voters-boolInt(q.Witness != "") > total {
		p.warn("", fmt.Sprintf("cluster.voters is %d but only %d nodes are declared", q.Voters-boolInt(q.Witness != ""), total))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// providerType returns the type of a named provider ("local" for the
// implicit local provider).
func (p *planner) providerType(name string) string {
	if c := p.in.Config; c != nil {
		if pr := c.Providers[name]; pr != nil {
			return pr.Type
		}
	}
	if name == "" || name == "local" {
		return "local"
	}
	return name
}

// assemble orders the steps by phase, numbers them and computes After: every
// step waits for the previous step of the same node name; a move-vip waits
// for the steps of its old holders and its target; a destroy of an excess
// slot waits for every create of its role (make before break).
func (p *planner) assemble() []Step {
	slices.SortStableFunc(p.steps, func(a, b pending) int { return cmp.Compare(a.phase, b.phase) })
	out := make([]Step, len(p.steps))
	last := make(map[string]int, len(p.steps))
	creates := map[string][]int{}
	for i, q := range p.steps {
		s := q.step
		s.ID = i
		var after []int
		dep := func(name string) {
			if id, ok := last[name]; ok {
				after = append(after, id)
			}
		}
		if s.Action == ActionMoveVIP {
			for _, n := range q.deps {
				dep(n)
			}
		} else {
			dep(s.Name)
			if q.phase == phaseExcess {
				after = append(after, creates[s.Role]...)
			}
			last[s.Name] = i
		}
		if q.phase == phaseCreate {
			creates[s.Role] = append(creates[s.Role], i)
		}
		if len(after) > 0 {
			slices.Sort(after)
			s.After = slices.Compact(after)
		}
		out[i] = s
	}
	return out
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// String renders a step on one line, for logs and errors.
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Action, s.Name)
	if s.Action == ActionMoveVIP {
		fmt.Fprintf(&b, " %s", s.VIP)
	}
	if s.Generation > 0 {
		fmt.Fprintf(&b, " gen %d", s.Generation)
	}
	return b.String()
}
