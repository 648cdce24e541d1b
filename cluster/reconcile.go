package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// The reconciler is level-based: every leader tick it observes the provider
// inventory and membership, asks the planner for steps, and starts at most
// MaxConcurrentRebuilds slot rebuilds. The intent (slot, generation, steps)
// is recorded in the log before anything is executed, so a new leader
// resumes the recorded rebuild with the same generation instead of starting
// a second one. VIP moves are not executed from plans: the log owns VIPs.

func active(rb Rebuild) bool {
	return rb.State == RebuildPlanned || rb.State == RebuildRunning || rb.State == RebuildWaiting
}

func (n *Node) backoff(attempts int) time.Duration {
	d := n.cfg.RebuildBackoff
	for i := 1; i < attempts && i < 5; i++ {
		d *= 2
	}
	return d
}

func (n *Node) reconcile(ctx context.Context, r *raft.Raft, st State, members map[string]Member, now time.Time) {
	if n.cfg.Planner == nil || n.cfg.Spec == nil {
		return
	}
	spec := n.cfg.Spec()
	if spec == nil {
		return
	}
	inflight := 0
	for _, rb := range st.Rebuilds {
		if !active(rb) {
			continue
		}
		switch {
		case rb.State == RebuildWaiting:
			if m, ok := members[rb.Name]; ok && m.Generation >= rb.Generation && m.State == StateAlive && now.Sub(m.Since) >= n.cfg.MinUptime {
				rb.State, rb.Updated = RebuildDone, now
				n.applyRebuild(r, rb)
				continue
			}
			if n.cfg.RebuildTimeout > 0 && now.Sub(rb.Started) > n.cfg.RebuildTimeout {
				rb.State, rb.Updated, rb.Attempts, rb.Error = RebuildFailed, now, rb.Attempts+1, "member did not stay up for the minimum uptime before the rebuild timeout"
				n.applyRebuild(r, rb)
				continue
			}
		case !n.busy("rebuild:" + rb.Name):
			// Recorded by an earlier leader (or before a crash): resume it.
			n.startRebuild(ctx, r, rb)
		}
		if cutsOff(rb) {
			inflight++
		}
	}
	// The last listing may stand only in a steady cluster (see
	// ProviderListInterval); an empty key lists afresh.
	key := ""
	if inflight == 0 && !anyActive(st.Rebuilds) && allAlive(members) {
		key = inventoryKey(r.CurrentTerm(), spec, members, st)
	}
	in, err := n.observe(ctx, members, st, now, key)
	if err != nil {
		n.log.Warn("reconcile: observe", "err", err)
		return
	}
	in.Config = spec
	machineGen := map[providers.MachineID]int{}
	for _, o := range in.Observed {
		machineGen[o.Machine.ID] = o.Machine.Generation
	}
	steps := n.cfg.Planner(in)
	pending := 0
	for _, s := range steps {
		if s.Action != plan.ActionMoveVIP {
			pending++
		}
	}
	if pending > 0 {
		n.inv.key = "" // work to do: the next pass lists afresh
	}
	n.mu.Lock()
	n.planned = plannedAt{At: now, Spec: spec, Steps: pending}
	n.mu.Unlock()
	var order []string
	bySlot := map[string][]plan.Step{}
	for _, s := range steps {
		if s.Action == plan.ActionMoveVIP {
			continue
		}
		if _, ok := bySlot[s.Name]; !ok {
			order = append(order, s.Name)
		}
		bySlot[s.Name] = append(bySlot[s.Name], s)
	}
	for _, name := range order {
		prev, had := st.Rebuilds[name]
		if had && active(prev) {
			continue
		}
		if had && prev.State == RebuildFailed && now.Sub(prev.Updated) < n.backoff(prev.Attempts) {
			continue
		}
		ss := bySlot[name]
		rb := Rebuild{Name: name, Role: ss[0].Role, Slot: ss[0].Slot, Started: now, Updated: now, State: RebuildPlanned, By: n.cfg.Name}
		if had {
			rb.Attempts = prev.Attempts
		}
		for _, s := range ss {
			mg := machineGen[s.Machine]
			if mg == 0 {
				mg = s.Previous
			}
			rb.Steps = append(rb.Steps, StepRecord{Step: s, MachineGeneration: mg})
			if s.Action == plan.ActionCreate || s.Action == plan.ActionReplace {
				rb.Generation = max(rb.Generation, s.Generation)
			}
		}
		if cutsOff(rb) {
			if inflight >= max(n.cfg.MaxConcurrentRebuilds, 1) {
				n.log.Debug("reconcile: rebuild budget exhausted", "slot", name)
				continue
			}
			inflight++
		}
		if err := n.applyRebuild(r, rb); err != nil {
			continue // not recorded: not executed
		}
		n.startRebuild(ctx, r, rb)
	}
}

// cutsOff reports whether a rebuild fences, destroys or replaces a machine.
// Only those count against MaxConcurrentRebuilds: the budget stops a storm
// of rebuilds set off by false death reports from cutting off live nodes,
// and creating a slot for which the provider lists no machine at all cuts
// nothing off. So a lone survivor (stage 2) recreates every lost slot at
// once instead of one per MinUptime.
func cutsOff(rb Rebuild) bool {
	for _, s := range rb.Steps {
		if s.Step.Action != plan.ActionCreate && s.Step.Action != plan.ActionRestore {
			return true
		}
	}
	return false
}

func (n *Node) busy(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tasks[key]
}

func (n *Node) applyRebuild(r *raft.Raft, rb Rebuild) error {
	err := n.apply(r, command{Op: opRebuild, Rebuild: &rb, Node: rb.Name})
	if err != nil {
		n.log.Warn("record rebuild", "slot", rb.Name, "err", err)
	}
	return err
}

// inventory is the reconciler's last provider listing (control loop only):
// the machines of each provider, when they were listed, and the key of the
// cluster's state they were listed in.
type inventory struct {
	key string
	at  time.Time
	ms  map[string][]providers.Machine
}

// allAlive reports whether every member is alive: while one is suspect,
// dead or gone, the machines' power states are what the plan turns on.
func allAlive(members map[string]Member) bool {
	for _, m := range members {
		if m.State != StateAlive {
			return false
		}
	}
	return true
}

func anyActive(rbs map[string]Rebuild) bool {
	for _, rb := range rbs {
		if active(rb) {
			return true
		}
	}
	return false
}

// inventoryKey identifies what the reconciler's plan depends on besides the
// provider's inventory: the leader's term, the configuration in force, each
// member's generation, state, health and raft standing, and the fence and
// rebuild records. While it is unchanged, nothing visible to the cluster
// happened, so a listing younger than ProviderListInterval stands.
func inventoryKey(term uint64, spec *lang.Config, members map[string]Member, st State) string {
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	b := fmt.Appendf(nil, "%d %p", term, spec)
	for _, name := range names {
		m := members[name]
		b = fmt.Appendf(b, "|%s@%d %v %v %t", name, m.Generation, m.State, m.Health, m.Formed)
	}
	rbs := make([]string, 0, len(st.Rebuilds))
	for name, rb := range st.Rebuilds {
		rbs = append(rbs, fmt.Sprintf("%s@%d %v %d %d", name, rb.Generation, rb.State, rb.Attempts, rb.Updated.UnixNano()))
	}
	slices.Sort(rbs)
	b = fmt.Appendf(b, "|r %v|f %d", rbs, len(st.Fences))
	return string(b)
}

// observe builds the planner input from the inventory of every provider and
// gossip membership. With a non-empty key equal to the last listing's and
// that listing younger than ProviderListInterval, the inventory is the last
// listing's; otherwise every provider is listed afresh.
func (n *Node) observe(ctx context.Context, members map[string]Member, st State, now time.Time, key string) (plan.Input, error) {
	ps := n.cfg.Providers
	if len(ps) == 0 && n.cfg.Provider != nil {
		name := "local"
		if spec := n.cfg.Spec(); spec != nil && spec.Cluster != nil && spec.Cluster.Provider != "" {
			name = spec.Cluster.Provider
		}
		ps = map[string]providers.Provider{name: n.cfg.Provider}
	}
	names := make([]string, 0, len(ps))
	for k := range ps {
		names = append(names, k)
	}
	slices.Sort(names)
	in := plan.Input{Now: now, FailureTimeout: n.cfg.FailureTimeout,
		Capabilities: map[string]providers.Capabilities{}, KnownGenerations: map[string]int{}}
	for _, rb := range st.Rebuilds {
		in.KnownGenerations[rb.Name] = max(in.KnownGenerations[rb.Name], rb.Generation)
	}
	for _, f := range st.Fences {
		in.KnownGenerations[f.Name] = max(in.KnownGenerations[f.Name], f.Generation)
	}
	// A machine destroyed behind the cluster's back (no fence, no rebuild
	// in the log) is still remembered by gossip: its replacement must get
	// a new generation, never reuse the old one's identity (name@generation
	// is the raft server id and the fencing token).
	for name, m := range members {
		in.KnownGenerations[name] = max(in.KnownGenerations[name], m.Generation)
	}
	cached := key != "" && key == n.inv.key && n.cfg.ProviderListInterval > 0 && now.Sub(n.inv.at) < n.cfg.ProviderListInterval
	if !cached {
		inv := inventory{key: key, at: now, ms: map[string][]providers.Machine{}}
		for _, pn := range names {
			ms, err := ps[pn].List(ctx, n.cfg.Cluster)
			if err != nil {
				n.inv = inventory{}
				return in, fmt.Errorf("list machines of provider %s: %w", pn, err)
			}
			inv.ms[pn] = ms
		}
		n.inv = inv
	}
	for _, pn := range names {
		in.Capabilities[pn] = providers.CapabilitiesOf(ps[pn])
		for _, mc := range n.inv.ms[pn] {
			if mc.Name == "" {
				mc.Name = providers.NodeName(mc.Role, mc.Slot)
			}
			o := plan.Observed{Provider: pn, Machine: mc}
			if m, ok := members[mc.Name]; ok && m.Generation == mc.Generation {
				o.Member, o.Since = true, m.Since
				switch m.State {
				case StateDead, StateLeft:
					o.Health = plan.HealthUnreached
				default:
					o.Health = m.Health
					if o.Health == plan.HealthUnknown && m.State == StateAlive {
						o.Health = plan.HealthPassing
					}
				}
			}
			for vip, own := range st.VIPs {
				if own.Holder == mc.Name && own.Generation == mc.Generation {
					o.VIPs = append(o.VIPs, vip)
				}
			}
			slices.Sort(o.VIPs)
			in.Observed = append(in.Observed, o)
		}
	}
	return in, nil
}

// startRebuild runs the recorded steps of rb that are not done, in order,
// recording progress after each, in a goroutine the node owns.
func (n *Node) startRebuild(ctx context.Context, r *raft.Raft, rb Rebuild) {
	key := "rebuild:" + rb.Name
	n.mu.Lock()
	if n.tasks[key] {
		n.mu.Unlock()
		return
	}
	n.tasks[key] = true
	n.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.tasks, key)
			n.mu.Unlock()
		}()
		tctx := ctx
		if n.cfg.RebuildTimeout > 0 {
			var cancel context.CancelFunc
			tctx, cancel = context.WithDeadline(ctx, rb.Started.Add(n.cfg.RebuildTimeout))
			defer cancel()
		}
		rb.State, rb.Updated, rb.By = RebuildRunning, time.Now(), n.cfg.Name
		creates := false
		for i, s := range rb.Steps {
			step := s.Step
			step.After = nil // executed one at a time, in recorded order
			if step.Action == plan.ActionCreate || step.Action == plan.ActionReplace {
				creates = true
				step.Generation = rb.Generation // pinned by the recorded intent
			}
			if s.Done {
				continue
			}
			if r.State() != raft.Leader {
				return // the next leader resumes from the log
			}
			if err := n.execute(tctx, r, step, s.MachineGeneration); err != nil {
				if ctx.Err() != nil {
					return // stopping: leave the record as is for the next leader
				}
				rb.State, rb.Updated, rb.Attempts, rb.Error = RebuildFailed, time.Now(), rb.Attempts+1, fmt.Sprintf("step %s: %v", step.Action, err)
				n.applyRebuild(r, rb)
				return
			}
			rb.Steps[i].Done = true
			rb.Updated = time.Now()
			if n.applyRebuild(r, rb) != nil {
				return
			}
		}
		rb.State, rb.Updated, rb.Error = RebuildDone, time.Now(), ""
		if creates {
			rb.State = RebuildWaiting
		}
		n.applyRebuild(r, rb)
	}()
}

// execute runs one step and records confirmed fences in the log.
func (n *Node) execute(ctx context.Context, r *raft.Raft, s plan.Step, machineGen int) error {
	var err error
	if n.cfg.Execute != nil {
		err = n.cfg.Execute(ctx, s)
	} else {
		err = n.builtinExecute(ctx, s)
	}
	if err != nil {
		return err
	}
	cutOff := s.Action == plan.ActionDestroy || s.Action == plan.ActionReplace || s.Action == plan.ActionFence && s.Fencing != plan.FenceNone
	if cutOff && s.Machine != "" && machineGen > 0 {
		rec := FenceRecord{Name: s.Name, Generation: machineGen, Machine: string(s.Machine), At: time.Now().UTC(), By: n.cfg.Name, Reason: s.Reason}
		return n.apply(r, command{Op: opFence, Fence: &rec, Node: s.Name})
	}
	return nil
}

// builtinExecute carries out a step directly on the providers. Production
// wiring passes plan's Executor instead (Config.Execute).
func (n *Node) builtinExecute(ctx context.Context, s plan.Step) error {
	p := n.cfg.Providers[s.Provider]
	if p == nil {
		p = n.cfg.Provider
	}
	if p == nil {
		return fmt.Errorf("step %s %s: no provider %q", s.Action, s.Name, s.Provider)
	}
	fence := func() error {
		f, ok := p.(providers.Fencer)
		if !ok {
			return fmt.Errorf("fence %s: provider %s cannot fence", s.Name, s.Provider)
		}
		return f.Fence(ctx, s.Machine)
	}
	create := func() error {
		_, err := p.Create(ctx, providers.CreateRequest{Cluster: n.cfg.Cluster, Role: s.Role, Slot: s.Slot, Generation: s.Generation})
		return err
	}
	switch s.Action {
	case plan.ActionFence:
		if s.Fencing == plan.FenceNone {
			return nil
		}
		return fence()
	case plan.ActionDestroy:
		return p.Destroy(ctx, s.Machine)
	case plan.ActionCreate:
		return create()
	case plan.ActionReplace:
		if s.Machine != "" {
			if err := fence(); err != nil && !errors.Is(err, providers.ErrNotFound) {
				return err
			}
			if err := p.Destroy(ctx, s.Machine); err != nil {
				return err
			}
		}
		return create()
	case plan.ActionRestore:
		return nil // the node's agent restores data before its services start
	}
	return fmt.Errorf("step %s %s: unknown action", s.Action, s.Name)
}
