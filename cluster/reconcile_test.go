package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// testPlanner replaces every machine that gossip reports unreachable for
// longer than the failure timeout. (plan.Plan is written in parallel; the
// reconciler only depends on the Planner contract.)
func testPlanner(in plan.Input) []plan.Step {
	var out []plan.Step
	newest := map[string]int{}
	for _, o := range in.Observed {
		newest[o.Machine.Name] = max(newest[o.Machine.Name], o.Machine.Generation)
	}
	for _, o := range in.Observed {
		m := o.Machine
		if m.Generation < newest[m.Name] || o.Health != plan.HealthUnreached || in.Now.Sub(o.Since) < in.FailureTimeout {
			continue
		}
		out = append(out, plan.Step{Action: plan.ActionReplace, Provider: o.Provider, Role: m.Role, Slot: m.Slot,
			Generation: m.Generation + 1, Name: m.Name, Machine: m.ID, Reason: "unreachable"})
	}
	slices.SortFunc(out, func(a, b plan.Step) int { return cmpStr(a.Name, b.Name) })
	return out
}

func TestNode_Reconciler_RebuildSurvivesLeaderCrash(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	spec := &lang.Config{Cluster: &lang.Cluster{Name: "test", Provider: "test"}}
	var crashArmed atomic.Bool
	var createsMu sync.Mutex
	creates := map[string][]int{} // slot name → generations created
	mod := func(c *Config) {
		name, gen := c.Name, c.Generation
		c.Planner = testPlanner
		c.Spec = func() *lang.Config { return spec }
		c.Providers = map[string]providers.Provider{"test": e.prov}
		c.Execute = func(ctx context.Context, s plan.Step) error {
			if s.Action != plan.ActionReplace {
				return fmt.Errorf("unexpected step %s", s.Action)
			}
			if err := e.prov.Fence(ctx, s.Machine); err != nil && !errors.Is(err, providers.ErrNotFound) {
				return err
			}
			if err := e.prov.Destroy(ctx, s.Machine); err != nil {
				return err
			}
			if crashArmed.CompareAndSwap(true, false) {
				// The executing leader crashes after the intent was recorded.
				e.mu.Lock()
				self := e.nodes[fmt.Sprintf("%s@%d", name, gen)]
				e.mu.Unlock()
				self.cancel()
				<-ctx.Done()
				return ctx.Err()
			}
			_, err := e.prov.Create(ctx, providers.CreateRequest{Cluster: "test", Role: s.Role, Slot: s.Slot, Generation: s.Generation})
			return err
		}
	}
	var nodes []*testNode
	e.prov.onCreate = func(req providers.CreateRequest) {
		createsMu.Lock()
		creates[req.Name()] = append(creates[req.Name()], req.Generation)
		createsMu.Unlock()
		c := e.fastConfig(req.Name(), req.Role, req.Slot, req.Generation)
		mod(&c)
		e.start(c) // joins through Discover (the provider's inventory)
	}
	nodes = e.startCluster("web", 5, func(c *Config) { c.BootstrapExpect = 5; mod(c) })
	l := waitLeader(t, nodes)
	eventually(t, "five voters", func() bool { return len(l.Status().Voters) == 5 })
	var victim *testNode
	for _, n := range slices.Backward(nodes) {
		if n != l {
			victim = n
			break
		}
	}
	// Budget: K=1, so at no time may two slots be in flight in any live
	// node's applied log.
	var maxActive atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, n := range nodes {
				if a := int64(len(n.LogState().Rebuilds)); a > 0 {
					cnt := int64(0)
					for _, rb := range n.LogState().Rebuilds {
						if active(rb) {
							cnt++
						}
					}
					if cnt > maxActive.Load() {
						maxActive.Store(cnt)
					}
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-sampled })

	crashArmed.Store(true)
	victim.kill()

	var rb Rebuild
	eventually(t, fmt.Sprintf("%s rebuilt as generation 2 and recovered", victim.Name()), func() bool {
		for _, n := range nodes {
			if n.stopped() {
				continue
			}
			if r, ok := n.LogState().Rebuilds[victim.Name()]; ok && r.State == RebuildDone {
				rb = r
				return true
			}
		}
		return false
	})
	if !l.stopped() {
		t.Fatalf("the leader %s did not crash mid-rebuild", l.Name())
	}
	if rb.Generation != 2 || rb.By == l.Name() || !rb.Steps[0].Done {
		t.Fatalf("rebuild record = %+v; want generation 2 finished by a new leader", rb)
	}
	createsMu.Lock()
	got := slices.Clone(creates[victim.Name()])
	createsMu.Unlock()
	if !slices.Equal(got, []int{2}) {
		t.Fatalf("creates for %s = %v, want exactly one, generation 2 (the new leader resumed the recorded intent)", victim.Name(), got)
	}
	var survivor *testNode
	for _, n := range nodes {
		if !n.stopped() {
			survivor = n
			break
		}
	}
	eventually(t, "the rebuilt node in the voter set", func() bool {
		vs := survivor.Status().Voters
		return slices.Contains(vs, victim.Name()+"@2") && !slices.Contains(vs, victim.Name()+"@1")
	})
	st := survivor.LogState()
	if _, ok := st.Fences[victim.Name()+"@1"]; !ok {
		t.Fatalf("no fence record for %s@1: %v", victim.Name(), st.Fences)
	}
	// The crashed leader's slot is rebuilt next, after the first one finished.
	eventually(t, fmt.Sprintf("the crashed leader's slot %s rebuilt too", l.Name()), func() bool {
		r, ok := survivor.LogState().Rebuilds[l.Name()]
		return ok && r.State == RebuildDone && r.Generation == 2
	})
	if m := maxActive.Load(); m > 1 {
		t.Fatalf("%d rebuilds in flight at once; budget is 1", m)
	}
}

// TestNode_Reconciler_WithPlanAndExecutor wires the real planner and
// executor of package plan, as the agent does in production.
func TestNode_Reconciler_WithPlanAndExecutor(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes, l := startPlannedWeb(t, e, e.prov, nil)
	if st := l.Status(); len(st.Rebuilds) != 0 {
		t.Fatalf("healthy cluster has rebuilds: %+v", st.Rebuilds)
	}
	victim := killFollowerUntilRebuilt(t, nodes, l)
	rb := l.LogState().Rebuilds[victim.Name()]
	var actions []plan.Action
	for _, s := range rb.Steps {
		actions = append(actions, s.Step.Action)
	}
	if !slices.Contains(actions, plan.ActionCreate) && !slices.Contains(actions, plan.ActionReplace) {
		t.Fatalf("recorded steps %v create nothing", actions)
	}
	if _, ok := l.LogState().Fences[victim.Name()+"@1"]; !ok {
		t.Fatalf("no fence record for %s@1 (steps %v)", victim.Name(), actions)
	}
	t.Logf("recorded steps: %v", actions)
}

// countingProvider counts List calls, to see how often the reconciler
// takes inventory.
type countingProvider struct {
	*testProvider
	lists atomic.Int64
}

func (p *countingProvider) List(ctx context.Context, cluster string) ([]providers.Machine, error) {
	p.lists.Add(1)
	return p.testProvider.List(ctx, cluster)
}

// TestNode_Reconciler_ListsProviderWhenSomethingChanged: in a steady
// cluster the leader plans from its last inventory for up to
// ProviderListInterval instead of listing the provider every tick (a cloud
// API's hourly budget); a member dying lists afresh at once, and the dead
// node is still rebuilt.
func TestNode_Reconciler_ListsProviderWhenSomethingChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cp := &countingProvider{testProvider: e.prov}
	nodes, l := startPlannedWeb(t, e, cp, func(c *Config) { c.ProviderListInterval = 2 * time.Second })
	// Tick is 100 ms: listing every tick would be ~30 lists in 3 s; a
	// steady leader lists about twice (a new term lists again).
	before := cp.lists.Load()
	time.Sleep(3 * time.Second)
	if n := cp.lists.Load() - before; n > 10 {
		t.Errorf("a steady leader listed the provider %d times in 3 s at a 100 ms tick with a 2 s list interval", n)
	} else {
		t.Logf("%d lists in 3 s of a steady cluster", n)
	}
	killFollowerUntilRebuilt(t, nodes, l)
}

// startPlannedWeb starts three web nodes that reconcile with the real
// planner and executor of package plan, as the agent does in production,
// listing machines through listed (e.prov or a wrapper of it), and waits
// for a leader with three voters. extra, when set, adjusts each config.
func startPlannedWeb(t *testing.T, e *env, listed providers.Provider, extra func(*Config)) ([]*testNode, *testNode) {
	t.Helper()
	spec := &lang.Config{
		Cluster:   &lang.Cluster{Name: "test", Provider: "test"},
		Providers: map[string]*lang.Provider{"test": {Name: "test", Type: "test"}},
		Roles:     []*lang.Role{{Name: "web", Count: 3, Provider: "test", Fencing: lang.Fencing{Method: "provider"}}},
	}
	ex := &plan.Executor{Providers: map[string]providers.Provider{"test": e.prov}, Cluster: "test"}
	mod := func(c *Config) {
		c.Planner = func(in plan.Input) []plan.Step { return plan.Plan(in).Steps }
		c.Spec = func() *lang.Config { return spec }
		c.Providers = map[string]providers.Provider{"test": listed}
		c.Execute = func(ctx context.Context, s plan.Step) error { return ex.Execute(ctx, []plan.Step{s}) }
		if extra != nil {
			extra(c)
		}
	}
	e.prov.onCreate = func(req providers.CreateRequest) {
		c := e.fastConfig(req.Name(), req.Role, req.Slot, req.Generation)
		mod(&c)
		e.start(c)
	}
	nodes := e.startCluster("web", 3, mod)
	l := waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(l.Status().Voters) == 3 })
	return nodes, l
}

// killFollowerUntilRebuilt kills a node other than the leader l and waits
// until l's log shows its slot rebuilt at generation 2 and recovered.
func killFollowerUntilRebuilt(t *testing.T, nodes []*testNode, l *testNode) *testNode {
	t.Helper()
	var victim *testNode
	for _, n := range nodes {
		if n != l {
			victim = n
		}
	}
	victim.kill()
	eventually(t, fmt.Sprintf("%s rebuilt by the planner's steps and recovered", victim.Name()), func() bool {
		r, ok := l.LogState().Rebuilds[victim.Name()]
		return ok && r.State == RebuildDone && r.Generation == 2
	})
	return victim
}
