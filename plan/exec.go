package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// EventKind says what happened to a step.
type EventKind string

const (
	EventStarted  EventKind = "started"
	EventFinished EventKind = "finished"
	EventFailed   EventKind = "failed"
	// EventSkipped: the step did not run because a step it waits for
	// failed or was skipped, or because the context ended.
	EventSkipped EventKind = "skipped"
)

// Event reports progress of one step.
type Event struct {
	Kind EventKind
	Step Step
	// Elapsed is how long the step ran (finished and failed events).
	Elapsed time.Duration
	// Err is why the step failed or was skipped.
	Err error
	// Machine is the machine a create or replace made, or a move-vip's holder.
	Machine providers.MachineID
	// Message says more, e.g. who performs a restore.
	Message string
}

// Executor runs the steps of a plan against providers.
//
// Execute is idempotent: every step is safe to run again after a crash at
// any point, because Create returns the existing machine for the same tags,
// Destroy of a machine that is gone is nil, Fence of a machine that is off
// is nil and AssignVIP is idempotent. Re-running the same steps, or a new
// plan of the world after a crash, finishes the work without duplicates.
//
// The zero value is not usable: Providers must hold every provider the
// steps name. Fields must not change while Execute runs.
type Executor struct {
	// Providers by name, as the steps name them.
	Providers map[string]providers.Provider
	// Cluster is the cluster name for created machines; when empty it is
	// taken from Config.
	Cluster string
	// Config, when set, is checked against restore-data steps (the role
	// must declare the data) and gives the cluster name.
	Config *lang.Config
	// Parallelism bounds how many steps run at once (0 means 4).
	Parallelism int
	// Progress, when set, receives every event. It is called from the
	// goroutine that called Execute, one event at a time, and must not block
	// for long.
	Progress func(Event)
	// UserData, when set, returns the user-data that boots the agent of a
	// machine to be created.
	UserData func(role string, slot, gen int) (string, error)
}

type stepResult struct {
	idx     int
	machine providers.MachineID
	msg     string
	err     error
	elapsed time.Duration
}

// Execute runs steps with bounded parallelism. A step starts once every
// step in its After list has finished, and once the previous step in the
// list with the same node name has finished (fence, destroy, create and
// restore of one slot run in order; different slots run in parallel;
// move-vip steps are ordered only by After). When a step fails, the steps
// that wait for it are skipped and the others go on. Execute returns every
// failure, joined, or the context's error when it ended early; it returns
// after every step it started has returned.
func (e *Executor) Execute(ctx context.Context, steps []Step) error {
	n := len(steps)
	byID := make(map[int]int, n)
	for i, s := range steps {
		if _, dup := byID[s.ID]; dup {
			return fmt.Errorf("execute plan: two steps have id %d", s.ID)
		}
		byID[s.ID] = i
	}
	waits := make([]int, n)  // unfinished steps each step waits for
	next := make([][]int, n) // steps that wait for each step
	lastByName := map[string]int{}
	for i, s := range steps {
		var deps []int
		for _, a := range s.After {
			j, ok := byID[a]
			if !ok || j == i {
				return fmt.Errorf("execute plan: step %d (%s) waits for step %d, which is not in the plan", s.ID, s, a)
			}
			deps = append(deps, j)
		}
		if s.Action != ActionMoveVIP {
			if j, ok := lastByName[s.Name]; ok {
				deps = append(deps, j)
			}
			lastByName[s.Name] = i
		}
		slices.Sort(deps)
		for _, j := range slices.Compact(deps) {
			if j > i {
				return fmt.Errorf("execute plan: step %d (%s) waits for step %d, which comes after it", s.ID, s, steps[j].ID)
			}
			waits[i]++
			next[j] = append(next[j], i)
		}
	}

	par := e.Parallelism
	if par <= 0 {
		par = 4
	}
	emit := func(ev Event) {
		if e.Progress != nil {
			e.Progress(ev)
		}
	}
	created := map[string]providers.MachineID{} // node name → machine made in this run
	done := make([]bool, n)
	var ready []int
	for i := range steps {
		if waits[i] == 0 {
			ready = append(ready, i)
		}
	}
	results := make(chan stepResult)
	running := 0
	var errs []error

	// skip marks i and everything waiting on it as skipped.
	var skip func(i int, why error)
	skip = func(i int, why error) {
		if done[i] {
			return
		}
		done[i] = true
		emit(Event{Kind: EventSkipped, Step: steps[i], Err: why})
		for _, k := range next[i] {
			skip(k, fmt.Errorf("step %d (%s) did not finish", steps[i].ID, steps[i]))
		}
	}

	for {
		for len(ready) > 0 && running < par && ctx.Err() == nil {
			slices.Sort(ready)
			i := ready[0]
			ready = ready[1:]
			s := steps[i]
			emit(Event{Kind: EventStarted, Step: s})
			target := s.Machine
			if s.Action == ActionMoveVIP && target == "" {
				target = created[s.Name]
			}
			running++
			go func() {
				start := time.Now()
				m, msg, err := e.run(ctx, s, target)
				results <- stepResult{idx: i, machine: m, msg: msg, err: err, elapsed: time.Since(start)}
			}()
		}
		if running == 0 {
			break
		}
		r := <-results
		running--
		s := steps[r.idx]
		done[r.idx] = true
		if r.err != nil {
			err := fmt.Errorf("step %d (%s): %w", s.ID, s, r.err)
			errs = append(errs, err)
			emit(Event{Kind: EventFailed, Step: s, Elapsed: r.elapsed, Err: r.err, Machine: r.machine, Message: r.msg})
			for _, k := range next[r.idx] {
				skip(k, err)
			}
			continue
		}
		if s.Action == ActionCreate || s.Action == ActionReplace {
			created[s.Name] = r.machine
		}
		emit(Event{Kind: EventFinished, Step: s, Elapsed: r.elapsed, Machine: r.machine, Message: r.msg})
		for _, k := range next[r.idx] {
			if waits[k]--; waits[k] == 0 && !done[k] {
				ready = append(ready, k)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		for i := range steps {
			skip(i, err)
		}
		errs = append(errs, fmt.Errorf("execute plan: %w", err))
	}
	return errors.Join(errs...)
}

// run performs one step. target is the machine a move-vip assigns to, when
// known.
func (e *Executor) run(ctx context.Context, s Step, target providers.MachineID) (providers.MachineID, string, error) {
	if s.Action == ActionRestore {
		if err := e.restore(s); err != nil {
			return "", "", err
		}
		return "", restoreMessage(s), nil
	}
	p, ok := e.Providers[s.Provider]
	if !ok || p == nil {
		return "", "", fmt.Errorf("no provider %q configured", s.Provider)
	}
	switch s.Action {
	case ActionCreate:
		m, err := e.create(ctx, p, s)
		return m, "", err
	case ActionReplace:
		if s.Machine != "" {
			if err := destroy(ctx, p, s.Machine); err != nil {
				return "", "", err
			}
		}
		m, err := e.create(ctx, p, s)
		return m, "", err
	case ActionDestroy:
		return "", "", destroy(ctx, p, s.Machine)
	case ActionFence:
		return e.fence(ctx, p, s)
	case ActionMoveVIP:
		return e.moveVIP(ctx, p, s, target)
	}
	return "", "", fmt.Errorf("unknown action %q", s.Action)
}

func (e *Executor) cluster() string {
	if e.Cluster != "" {
		return e.Cluster
	}
	if e.Config != nil && e.Config.Cluster != nil {
		return e.Config.Cluster.Name
	}
	return ""
}

func (e *Executor) create(ctx context.Context, p providers.Provider, s Step) (providers.MachineID, error) {
	cl := e.cluster()
	if cl == "" {
		return "", errors.New("no cluster name to tag the machine with")
	}
	req := providers.CreateRequest{
		Cluster:    cl,
		Role:       s.Role,
		Slot:       s.Slot,
		Generation: s.Generation,
		Region:     s.Region,
		Size:       s.Size,
		Image:      s.Image,
	}
	if e.UserData != nil {
		ud, err := e.UserData(s.Role, s.Slot, s.Generation)
		if err != nil {
			return "", fmt.Errorf("user-data for %s: %w", s.Name, err)
		}
		req.UserData = ud
	}
	m, err := p.Create(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create %s generation %d on %s: %w", s.Name, s.Generation, s.Provider, err)
	}
	return m.ID, nil
}

func destroy(ctx context.Context, p providers.Provider, id providers.MachineID) error {
	if id == "" {
		return errors.New("no machine to destroy")
	}
	if err := p.Destroy(ctx, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("destroy machine %s: %w", id, err)
	}
	return nil
}

// fence uses the provider's Fencer when it has one; a provider without one
// can fence only when the method is "destroy" (the machine is destroyed).
func (e *Executor) fence(ctx context.Context, p providers.Provider, s Step) (providers.MachineID, string, error) {
	if s.Fencing == FenceNone {
		return "", "fencing.method is none: nothing to do", nil
	}
	if f, ok := p.(providers.Fencer); ok {
		if err := f.Fence(ctx, s.Machine); err != nil && !errors.Is(err, providers.ErrNotFound) {
			return "", "", fmt.Errorf("fence machine %s: %w", s.Machine, err)
		}
		return "", "fence confirmed by provider " + s.Provider, nil
	}
	if s.Fencing == FenceDestroy {
		if err := destroy(ctx, p, s.Machine); err != nil {
			return "", "", err
		}
		return "", "fenced by destroying the machine", nil
	}
	return "", "", fmt.Errorf("provider %s cannot fence; set fencing.method = \"destroy\" or \"none\" for role %s", s.Provider, s.Role)
}

func (e *Executor) moveVIP(ctx context.Context, p providers.Provider, s Step, target providers.MachineID) (providers.MachineID, string, error) {
	va, ok := p.(providers.VIPAssigner)
	if !ok {
		return "", "", fmt.Errorf("provider %s cannot move VIP %s", s.Provider, s.VIP)
	}
	if target == "" {
		// Created by an earlier run of this plan: find it by its tags.
		ms, err := p.List(ctx, e.cluster())
		if err != nil {
			return "", "", fmt.Errorf("find %s generation %d: %w", s.Name, s.Generation, err)
		}
		for _, m := range ms {
			if m.Role == s.Role && m.Slot == s.Slot && m.Generation == s.Generation {
				target = m.ID
			}
		}
		if target == "" {
			return "", "", fmt.Errorf("no machine for %s generation %d to hold VIP %s", s.Name, s.Generation, s.VIP)
		}
	}
	if err := va.AssignVIP(ctx, s.VIP, target); err != nil {
		return "", "", fmt.Errorf("assign VIP %s to machine %s: %w", s.VIP, target, err)
	}
	return target, "", nil
}

// restore checks that the role declares the data; the restore itself is
// done by the node's agent before its services start.
func (e *Executor) restore(s Step) error {
	if s.Data == "" {
		return errors.New("restore-data step names no data")
	}
	if e.Config != nil {
		r := e.Config.Role(s.Role)
		if r == nil {
			return fmt.Errorf("role %s is not declared", s.Role)
		}
		if !slices.ContainsFunc(r.Data, func(d lang.Data) bool { return d.Name == s.Data }) {
			return fmt.Errorf("role %s declares no data %q", s.Role, s.Data)
		}
	}
	return nil
}

// restoreMessage is the message of a finished restore-data event.
func restoreMessage(s Step) string {
	return fmt.Sprintf("data %s of %s generation %d is restored by the node's agent before its services start", s.Data, s.Name, s.Generation)
}
