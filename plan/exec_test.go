package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

var errCrash = errors.New("crashed")

// fakeCloud is an in-memory provider back end for executor unit tests. It
// can crash at its n-th mutating call, either before or after the call
// takes effect; after a crash every call fails until revive.
type fakeCloud struct {
	mu       sync.Mutex
	machines map[providers.MachineID]providers.Machine
	vips     map[string]providers.MachineID
	next     int
	calls    int
	crashAt  int  // 0 = never
	after    bool // crash after the call took effect
	crashed  bool
	fail     map[string]error // role → error for Create
	// block, when set, is received from by Create before it returns;
	// inflight and peak count concurrent Creates.
	block          chan struct{}
	inflight, peak int
}

func newCloud() *fakeCloud {
	return &fakeCloud{machines: map[providers.MachineID]providers.Machine{}, vips: map[string]providers.MachineID{}}
}

// mutate runs f as one mutating call, with crash injection.
func (c *fakeCloud) mutate(f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashed {
		return errCrash
	}
	c.calls++
	if c.crashAt != 0 && c.calls == c.crashAt {
		c.crashed = true
		if c.after {
			f()
		}
		return errCrash
	}
	return f()
}

func (c *fakeCloud) revive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.crashed, c.crashAt = false, 0
}

// world describes the machines and VIPs compactly, for comparisons.
func (c *fakeCloud) world() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.machines {
		out = append(out, fmt.Sprintf("%s gen %d %s", m.Name, m.Generation, m.State))
	}
	for v, id := range c.vips {
		m := c.machines[id]
		out = append(out, fmt.Sprintf("vip %s on %s gen %d", v, m.Name, m.Generation))
	}
	slices.Sort(out)
	return out
}

func (c *fakeCloud) observed(provider string) []Observed {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Observed
	for _, m := range c.machines {
		o := Observed{Provider: provider, Machine: m}
		for v, id := range c.vips {
			if id == m.ID {
				o.VIPs = append(o.VIPs, v)
			}
		}
		out = append(out, o)
	}
	return out
}

// plainProvider has only the three required methods.
type plainProvider struct{ c *fakeCloud }

func (p plainProvider) Create(ctx context.Context, req providers.CreateRequest) (providers.Machine, error) {
	c := p.c
	if c.block != nil {
		c.mu.Lock()
		c.inflight++
		c.peak = max(c.peak, c.inflight)
		c.mu.Unlock()
		select {
		case <-c.block:
		case <-ctx.Done():
		}
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}
	var m providers.Machine
	err := c.mutate(func() error {
		if err := c.fail[req.Role]; err != nil {
			return err
		}
		for _, x := range c.machines {
			if x.Cluster == req.Cluster && x.Role == req.Role && x.Slot == req.Slot && x.Generation == req.Generation {
				m = x
				return nil
			}
		}
		c.next++
		m = providers.Machine{
			ID: providers.MachineID(fmt.Sprintf("i-%d", c.next)), Cluster: req.Cluster, Role: req.Role, Slot: req.Slot,
			Generation: req.Generation, Name: req.Name(), State: providers.PowerOn, Region: req.Region,
		}
		c.machines[m.ID] = m
		return nil
	})
	return m, err
}

func (p plainProvider) Destroy(_ context.Context, id providers.MachineID) error {
	return p.c.mutate(func() error {
		delete(p.c.machines, id)
		for v, h := range p.c.vips {
			if h == id {
				delete(p.c.vips, v)
			}
		}
		return nil
	})
}

func (p plainProvider) List(_ context.Context, cluster string) ([]providers.Machine, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.c.crashed {
		return nil, errCrash
	}
	var out []providers.Machine
	for _, m := range p.c.machines {
		if m.Cluster == cluster {
			out = append(out, m)
		}
	}
	return out, nil
}

// fullProvider adds fencing and VIPs.
type fullProvider struct{ plainProvider }

func (p fullProvider) Fence(_ context.Context, id providers.MachineID) error {
	return p.c.mutate(func() error {
		m, ok := p.c.machines[id]
		if !ok {
			return fmt.Errorf("fence %s: %w", id, providers.ErrNotFound)
		}
		m.State = providers.PowerOff
		p.c.machines[id] = m
		return nil
	})
}

func (p fullProvider) AssignVIP(_ context.Context, vip string, id providers.MachineID) error {
	return p.c.mutate(func() error {
		if _, ok := p.c.machines[id]; !ok {
			return fmt.Errorf("assign %s: %w", vip, providers.ErrNotFound)
		}
		p.c.vips[vip] = id
		return nil
	})
}

func (p fullProvider) VIPHolder(_ context.Context, vip string) (providers.MachineID, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return p.c.vips[vip], nil
}

var (
	_ providers.Fencer      = fullProvider{}
	_ providers.VIPAssigner = fullProvider{}
)

// seed puts machines into a cloud as if an earlier apply had made them.
func (c *fakeCloud) seed(ms ...Observed) {
	for _, o := range ms {
		c.machines[o.Machine.ID] = o.Machine
		for _, v := range o.VIPs {
			c.vips[v] = o.Machine.ID
		}
	}
}

// failoverScenario: lb-1 (VIP holder) unreachable, mail-1 powered off,
// web needs a third slot, cache is no longer declared, web-2 has a stale
// generation.
func failoverScenario() (*lang.Config, []Observed) {
	cfg := newConfig(
		newRole("lb", 2, withVIP("10.0.0.9", "")),
		newRole("mail", 2, withData("maildir", "sync")),
		newRole("web", 3, withFencing(FenceDestroy)),
	)
	obs := []Observed{
		machine("lb-1", 1, health(HealthUnreached, time.Minute), holds("10.0.0.9")),
		machine("lb-2", 1, health(HealthPassing, time.Hour)),
		machine("mail-1", 2, state(providers.PowerOff)),
		machine("mail-2", 1, health(HealthPassing, time.Hour)),
		machine("web-1", 1, health(HealthPassing, time.Hour)),
		machine("web-2", 1),
		machine("web-2", 2, health(HealthPassing, time.Hour)),
		machine("cache-1", 1),
	}
	return cfg, obs
}

func newExecutor(c *fakeCloud, cfg *lang.Config, events *[]Event) *Executor {
	return &Executor{
		Providers:   map[string]providers.Provider{"local": fullProvider{plainProvider{c}}},
		Config:      cfg,
		Parallelism: 3,
		Progress: func(e Event) {
			if events != nil {
				*events = append(*events, e)
			}
		},
		UserData: func(role string, slot, gen int) (string, error) {
			return fmt.Sprintf("#cloud-config\n# %s-%d gen %d\n", role, slot, gen), nil
		},
	}
}

func TestExecutor_Execute_Scenario(t *testing.T) {
	cfg, obs := failoverScenario()
	r := Plan(Input{Config: cfg, Observed: obs, Now: t0, FailureTimeout: 10 * time.Second})
	c := newCloud()
	c.seed(obs...)
	var events []Event
	if err := newExecutor(c, cfg, &events).Execute(t.Context(), r.Steps); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	want := []string{
		"lb-1 gen 2 on",
		"lb-2 gen 1 on",
		"mail-1 gen 3 on",
		"mail-2 gen 1 on",
		"vip 10.0.0.9 on lb-2 gen 1",
		"web-1 gen 1 on",
		"web-2 gen 2 on",
		"web-3 gen 1 on",
	}
	if diff := cmp.Diff(want, c.world()); diff != "" {
		t.Errorf("world after apply (-want +got):\n%s\nplan:\n%s", diff, strings.Join(brief(r.Steps), "\n"))
	}

	// Every step started once and finished once, each after the steps it waits for.
	finished := map[int]int{} // step id → index of its finished event
	started := map[int]int{}
	for i, e := range events {
		switch e.Kind {
		case EventStarted:
			started[e.Step.ID] = i
		case EventFinished:
			finished[e.Step.ID] = i
		default:
			t.Errorf("unexpected event %s %s: %v", e.Kind, e.Step, e.Err)
		}
	}
	for _, s := range r.Steps {
		f, ok := finished[s.ID]
		if !ok {
			t.Fatalf("step %d (%s) never finished", s.ID, s)
		}
		for _, a := range s.After {
			if finished[a] > started[s.ID] {
				t.Errorf("step %d (%s) started before step %d finished", s.ID, s, a)
			}
		}
		if f < started[s.ID] {
			t.Errorf("step %d finished before it started", s.ID)
		}
	}
	for _, e := range events {
		if e.Kind == EventFinished && e.Step.Action == ActionRestore && !strings.Contains(e.Message, "restored by the node's agent") {
			t.Errorf("restore event message = %q", e.Message)
		}
	}

	// The world now matches: planning again gives nothing to do.
	again := Plan(Input{Config: cfg, Observed: c.observed("local"), Now: t0})
	if len(again.Steps) != 0 {
		t.Errorf("plan after apply is not empty:\n%s", strings.Join(brief(again.Steps), "\n"))
	}
}

// TestExecutor_Execute_CrashAndRerun crashes the provider at every
// mutating call of the plan, before and after the call takes effect, then
// runs the same steps again: the world must end exactly as after a run
// without crash, with no duplicate machines.
func TestExecutor_Execute_CrashAndRerun(t *testing.T) {
	cfg, obs := failoverScenario()
	r := Plan(Input{Config: cfg, Observed: obs, Now: t0, FailureTimeout: 10 * time.Second})

	ref := newCloud()
	ref.seed(obs...)
	if err := newExecutor(ref, cfg, nil).Execute(t.Context(), r.Steps); err != nil {
		t.Fatal(err)
	}
	want, total := ref.world(), ref.calls
	if total < 8 {
		t.Fatalf("reference run made only %d provider calls", total)
	}
	for at := 1; at <= total; at++ {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("call%d_after%v", at, after), func(t *testing.T) {
				c := newCloud()
				c.seed(obs...)
				c.crashAt, c.after = at, after
				if err := newExecutor(c, cfg, nil).Execute(t.Context(), r.Steps); !errors.Is(err, errCrash) {
					t.Fatalf("crashed run returned %v, want the crash", err)
				}
				c.revive()
				if err := newExecutor(c, cfg, nil).Execute(t.Context(), r.Steps); err != nil {
					t.Fatalf("re-run: %v", err)
				}
				if diff := cmp.Diff(want, c.world()); diff != "" {
					t.Errorf("world after crash and re-run (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestExecutor_Execute_CrashAndReplan crashes halfway, then plans again
// from what the provider lists (with the generations the cluster log
// knows) and executes that: every declared slot ends with exactly one
// running machine and the VIP on a live lb.
func TestExecutor_Execute_CrashAndReplan(t *testing.T) {
	cfg, obs := failoverScenario()
	in := Input{Config: cfg, Observed: obs, Now: t0, FailureTimeout: 10 * time.Second}
	r := Plan(in)
	known := map[string]int{}
	for _, s := range r.Steps {
		known[s.Name] = max(known[s.Name], s.Generation)
	}
	for _, at := range []int{2, 4, 6, 8} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			c := newCloud()
			c.seed(obs...)
			c.crashAt, c.after = at, true
			newExecutor(c, cfg, nil).Execute(t.Context(), r.Steps)
			c.revive()
			r2 := Plan(Input{Config: cfg, Observed: c.observed("local"), Now: t0, KnownGenerations: known})
			if err := newExecutor(c, cfg, nil).Execute(t.Context(), r2.Steps); err != nil {
				t.Fatalf("executing the new plan: %v\n%s", err, strings.Join(brief(r2.Steps), "\n"))
			}
			names := map[string]int{}
			vip := ""
			for _, w := range c.world() {
				f := strings.Fields(w)
				if f[0] == "vip" {
					vip = f[3]
					continue
				}
				names[f[0]]++
				if f[3] != "on" {
					t.Errorf("%s is not running", w)
				}
			}
			want := map[string]int{"lb-1": 1, "lb-2": 1, "mail-1": 1, "mail-2": 1, "web-1": 1, "web-2": 1, "web-3": 1}
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("machines per slot (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(vip, "lb-") {
				t.Errorf("VIP holder = %q, want an lb", vip)
			}
		})
	}
}

func TestExecutor_Execute_Fence(t *testing.T) {
	failed := machine("web-1", 1, health(HealthUnreached, time.Minute))
	cases := []struct {
		name    string
		method  string
		full    bool
		wantErr string
		want    []string
	}{
		{name: "provider fencer", method: FenceProvider, full: true, want: []string{"web-1 gen 2 on"}},
		{name: "destroy without fencer", method: FenceDestroy, want: []string{"web-1 gen 2 on"}},
		{name: "provider method without fencer refuses", method: FenceProvider,
			wantErr: `provider local cannot fence; set fencing.method = "destroy" or "none"`, want: []string{"web-1 gen 1 on"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(newRole("web", 1, withFencing(tc.method)))
			r := Plan(Input{Config: cfg, Observed: []Observed{failed}, Now: t0})
			c := newCloud()
			c.seed(failed)
			var p providers.Provider = plainProvider{c}
			if tc.full {
				p = fullProvider{plainProvider{c}}
			}
			var events []Event
			e := newExecutor(c, cfg, &events)
			e.Providers["local"] = p
			err := e.Execute(t.Context(), r.Steps)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Execute = %v, want error containing %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, c.world()); diff != "" {
				t.Errorf("world (-want +got):\n%s", diff)
			}
			if tc.wantErr != "" {
				kinds := map[EventKind]int{}
				for _, ev := range events {
					kinds[ev.Kind]++
				}
				if kinds[EventFailed] != 1 || kinds[EventSkipped] != 1 {
					t.Errorf("events %v, want one failed fence and one skipped replace", kinds)
				}
			}
		})
	}
}

// TestExecutor_Execute_FailureIsolation: a failed create skips only what
// waits for it.
func TestExecutor_Execute_FailureIsolation(t *testing.T) {
	cfg := newConfig(newRole("web", 2), newRole("db", 1, withData("pg", "sync")))
	// db-1 existed before (the log knows it), so its rebuild restores data.
	r := Plan(Input{Config: cfg, Now: t0, KnownGenerations: map[string]int{"db-1": 0}})
	c := newCloud()
	c.fail = map[string]error{"db": errors.New("quota exceeded")}
	var events []Event
	err := newExecutor(c, cfg, &events).Execute(t.Context(), r.Steps)
	if err == nil || !strings.Contains(err.Error(), "create db-1 generation 1 on local: quota exceeded") {
		t.Fatalf("Execute = %v, want the db create failure", err)
	}
	if diff := cmp.Diff([]string{"web-1 gen 1 on", "web-2 gen 1 on"}, c.world()); diff != "" {
		t.Errorf("world (-want +got):\n%s", diff)
	}
	var skipped []string
	for _, e := range events {
		if e.Kind == EventSkipped {
			skipped = append(skipped, e.Step.String())
		}
	}
	if diff := cmp.Diff([]string{"restore-data db-1 gen 1"}, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

func TestExecutor_Execute_Parallelism(t *testing.T) {
	cfg := newConfig(newRole("web", 6))
	r := Plan(Input{Config: cfg, Now: t0})
	c := newCloud()
	c.block = make(chan struct{})
	e := newExecutor(c, cfg, nil)
	e.Parallelism = 2
	done := make(chan error, 1)
	go func() { done <- e.Execute(t.Context(), r.Steps) }()
	deadline := time.Now().Add(30 * time.Second)
	for released := 0; released < 6; {
		c.mu.Lock()
		n := c.inflight
		c.mu.Unlock()
		if n == 2 || n > 0 && released >= 4 {
			c.block <- struct{}{}
			released++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d creates in flight after 30s", n)
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.peak != 2 {
		t.Errorf("peak concurrent creates = %d, want 2", c.peak)
	}
	if len(c.world()) != 6 {
		t.Errorf("world = %v", c.world())
	}
}

func TestExecutor_Execute_Errors(t *testing.T) {
	cfg := newConfig(newRole("web", 1, withData("d", "sync")))
	cases := []struct {
		name  string
		steps []Step
		e     func(*Executor)
		want  string
	}{
		{name: "unknown provider", steps: []Step{{ID: 0, Action: ActionCreate, Provider: "nope", Role: "web", Slot: 1, Generation: 1, Name: "web-1"}},
			want: `no provider "nope" configured`},
		{name: "restore of undeclared data", steps: []Step{{ID: 0, Action: ActionRestore, Role: "web", Slot: 1, Generation: 1, Name: "web-1", Data: "other"}},
			want: `role web declares no data "other"`},
		{name: "dangling after", steps: []Step{{ID: 0, Action: ActionCreate, Provider: "local", Name: "web-1", After: []int{7}}},
			want: "waits for step 7, which is not in the plan"},
		{name: "duplicate id", steps: []Step{{ID: 1, Action: ActionCreate, Name: "a"}, {ID: 1, Action: ActionCreate, Name: "b"}},
			want: "two steps have id 1"},
		{name: "user-data failure", steps: []Step{{ID: 0, Action: ActionCreate, Provider: "local", Role: "web", Slot: 1, Generation: 1, Name: "web-1"}},
			e: func(e *Executor) {
				e.UserData = func(string, int, int) (string, error) { return "", errors.New("no key") }
			}, want: "user-data for web-1: no key"},
		{name: "VIP on a provider without VIPs", steps: []Step{{ID: 0, Action: ActionMoveVIP, Provider: "plain", Role: "web", Name: "web-1", Machine: "x", VIP: "1.2.3.4"}},
			want: "provider plain cannot move VIP 1.2.3.4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud()
			e := newExecutor(c, cfg, nil)
			e.Providers["plain"] = plainProvider{c}
			if tc.e != nil {
				tc.e(e)
			}
			err := e.Execute(t.Context(), tc.steps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Execute = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestExecutor_Execute_Canceled(t *testing.T) {
	cfg := newConfig(newRole("web", 2))
	r := Plan(Input{Config: cfg, Now: t0})
	c := newCloud()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var events []Event
	err := newExecutor(c, cfg, &events).Execute(ctx, r.Steps)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute = %v, want context.Canceled", err)
	}
	if len(c.world()) != 0 {
		t.Errorf("steps ran after cancel: %v", c.world())
	}
	if len(events) != 2 || events[0].Kind != EventSkipped {
		t.Errorf("events = %v, want two skipped", events)
	}
}
