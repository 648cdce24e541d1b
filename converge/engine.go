package converge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hactl/hactl/internal/graph"
	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Options control one run.
type Options struct {
	// DryRun checks every resource and reports what would change, with
	// diffs, and changes nothing.
	DryRun bool
	// Parallelism bounds how many resources run at once; 0 means 4.
	Parallelism int
}

// Engine converges resource declarations. It holds no state between runs
// and may be used for one run at a time (the agent's converge loop owns it).
type Engine struct {
	reg *Registry
	env Env
}

// NewEngine returns an engine that builds resources from reg and hands
// them env. env.Logger may be nil.
func NewEngine(reg *Registry, env Env) *Engine {
	if env.Logger == nil {
		env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if env.Root == "" {
		env.Root = "/"
	}
	return &Engine{reg: reg, env: env}
}

type node struct {
	decl      *lang.ResourceDecl
	addr      string
	res       Resource
	err       error // from decoding or construction
	notifiers []string
	writes    *Writes // staged by res, committed by the scheduler
	rep       ResourceReport
	done      bool
}

// Run evaluates decls in evalCtx, orders them and converges them (or only
// checks them when opts.DryRun). It returns an error, and no report, when
// the set of resources cannot be run at all: a duplicate address, a
// reference to an undeclared resource, two resources managing one path, or
// a dependency cycle (the error names the cycle). A resource that fails to
// evaluate or to converge is reported as failed, and only the resources
// that depend on it are skipped.
func (e *Engine) Run(ctx context.Context, decls []*lang.ResourceDecl, evalCtx *hcl.EvalContext, opts Options) (*Report, error) {
	return e.RunCompiled(ctx, e.Compile(decls, evalCtx), evalCtx, opts)
}

// Compile decodes every declaration's body in evalCtx against its kind's
// schema: the part of a run that depends only on the declarations and the
// context, not on the node's state. A caller may keep the result (see
// Compiled.MarshalBinary) and run it again while both are unchanged.
func (e *Engine) Compile(decls []*lang.ResourceDecl, evalCtx *hcl.EvalContext) *Compiled {
	c := &Compiled{Decls: decls, Values: make([]cty.Value, len(decls)), errs: make([]error, len(decls))}
	for i, d := range decls {
		c.Values[i], c.errs[i] = e.decode(d, evalCtx)
	}
	return c
}

// CompileFlat is Compile for a compilation that will be kept (see
// Compiled.MarshalBinary): declarations of kinds with a flat form
// (Kind.Flatten) also get it, and runs build them from it, this one too,
// so that a cached run builds exactly what the first one built.
func (e *Engine) CompileFlat(decls []*lang.ResourceDecl, evalCtx *hcl.EvalContext) *Compiled {
	c := e.Compile(decls, evalCtx)
	for i, d := range decls {
		if c.errs[i] != nil {
			continue
		}
		if k, _ := e.reg.Kind(d.Addr.Kind); k.Flatten != nil && k.Unflatten != nil {
			// No flat form (a value New refuses) keeps the value.
			if f, err := k.Flatten(c.Values[i]); err == nil {
				if c.flat == nil {
					c.flat = make([][]byte, len(decls))
				}
				c.flat[i] = f
			}
		}
	}
	return c
}

// RunCompiled is Run on declarations already compiled (by Compile, or
// decoded from its MarshalBinary form). evalCtx is still handed to the
// resources (templates render in it); it must be the one c was compiled in.
func (e *Engine) RunCompiled(ctx context.Context, c *Compiled, evalCtx *hcl.EvalContext, opts Options) (*Report, error) {
	start := time.Now()
	decls := c.Decls
	if len(c.Values) != len(decls) {
		return nil, fmt.Errorf("compiled: %d values for %d declarations", len(c.Values), len(decls))
	}
	par := opts.Parallelism
	if par <= 0 {
		par = 4
	}
	env := e.env
	env.EvalContext = evalCtx
	env.Managed = &Managed{}
	env.Memo = &Memo{}

	nodes := make(map[string]*node, len(decls))
	order := make([]*node, 0, len(decls))
	g := graph.New()
	for i, d := range decls {
		a := d.Addr.String()
		if prev, dup := nodes[a]; dup {
			return nil, fmt.Errorf("%s: resource %s is declared twice (first at %s)", d.DeclRange, a, prev.decl.DeclRange)
		}
		n := &node{decl: d, addr: a, writes: &Writes{}}
		// Build every resource first: implicit edges need their paths.
		if n.err = c.err(i); n.err == nil {
			nenv := env
			nenv.Writes = n.writes
			if f := c.flatAt(i); f != nil {
				n.res, n.err = e.buildFlat(nenv, d, f)
			} else {
				n.res, n.err = e.build(nenv, d, c.Values[i])
			}
		}
		nodes[a] = n
		order = append(order, n)
		g.AddNode(a)
	}
	if err := e.edges(env, g, nodes, order); err != nil {
		return nil, err
	}
	if cycle := g.FindCycle(); cycle != nil {
		err := &graph.CycleError{Cycle: cycle}
		var ranges []string
		for _, a := range cycle[:len(cycle)-1] {
			ranges = append(ranges, a+" at "+nodes[a].decl.DeclRange.String())
		}
		return nil, fmt.Errorf("%w (%s)", err, strings.Join(ranges, "; "))
	}

	rep := &Report{Started: start.UTC(), DryRun: opts.DryRun}
	e.schedule(ctx, g, nodes, order, par, !opts.DryRun)
	for _, n := range order {
		rep.Resources = append(rep.Resources, n.rep)
	}
	rep.Duration = time.Since(start)
	rep.finish()
	return rep, nil
}

// decode decodes one declaration's body against its kind's schema.
func (e *Engine) decode(d *lang.ResourceDecl, evalCtx *hcl.EvalContext) (cty.Value, error) {
	k, ok := e.reg.Kind(d.Addr.Kind)
	if !ok {
		return cty.NilVal, fmt.Errorf("%s: unknown resource kind %q (known: %s)", d.TypeRange, d.Addr.Kind, strings.Join(e.reg.Names(), ", "))
	}
	if d.Body == nil {
		return cty.NilVal, fmt.Errorf("%s: resource %s has no body", d.DeclRange, d.Addr)
	}
	v, diags := hcldec.Decode(d.Body, k.Spec, evalCtx)
	if diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("%s", diagString(diags))
	}
	return v, nil
}

// build constructs one declaration's resource from its decoded value.
func (e *Engine) build(env Env, d *lang.ResourceDecl, v cty.Value) (Resource, error) {
	k, ok := e.reg.Kind(d.Addr.Kind)
	if !ok {
		return nil, fmt.Errorf("%s: unknown resource kind %q (known: %s)", d.TypeRange, d.Addr.Kind, strings.Join(e.reg.Names(), ", "))
	}
	env.Logger = slog.New(&resourceHandler{h: env.Logger.Handler(), addr: d.Addr.String()})
	r, err := k.New(env, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.DeclRange, err)
	}
	return r, nil
}

// buildFlat is build from a kind's flat form (a cached compilation).
func (e *Engine) buildFlat(env Env, d *lang.ResourceDecl, flat []byte) (Resource, error) {
	k, ok := e.reg.Kind(d.Addr.Kind)
	if !ok || k.Unflatten == nil {
		return nil, fmt.Errorf("%s: kind %q cannot build a cached flat form; run with --no-cache", d.DeclRange, d.Addr.Kind)
	}
	env.Logger = slog.New(&resourceHandler{h: env.Logger.Handler(), addr: d.Addr.String()})
	r, err := k.Unflatten(env, flat)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.DeclRange, err)
	}
	return r, nil
}

// rangeString is hcl.Range.String without fmt (a tenth of the scheduler's
// own time in a 230-resource no-op run went to formatting ranges).
func rangeString(r hcl.Range) string {
	b := make([]byte, 0, len(r.Filename)+24)
	b = append(b, r.Filename...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(r.Start.Line), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(r.Start.Column), 10)
	b = append(b, '-')
	if r.Start.Line != r.End.Line {
		b = strconv.AppendInt(b, int64(r.End.Line), 10)
		b = append(b, ',')
	}
	b = strconv.AppendInt(b, int64(r.End.Column), 10)
	return string(b)
}

// resourceHandler adds resource=<addr> to the records a resource logs. It
// is Logger.With("resource", addr) done when a record is logged rather than
// up front: With formats the attribute for every resource of every run
// (0.1 ms of a 230-resource no-op), and most resources log nothing at the
// enabled level.
type resourceHandler struct {
	h    slog.Handler
	addr string
}

func (h *resourceHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *resourceHandler) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(slog.String("resource", h.addr))
	return h.h.Handle(ctx, r)
}

func (h *resourceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.h.WithAttrs(append([]slog.Attr{slog.String("resource", h.addr)}, as...))
}

func (h *resourceHandler) WithGroup(name string) slog.Handler {
	return h.h.WithAttrs([]slog.Attr{slog.String("resource", h.addr)}).WithGroup(name)
}

func diagString(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		s := d.Summary
		if d.Detail != "" {
			s += ": " + d.Detail
		}
		if d.Subject != nil {
			s = d.Subject.String() + ": " + s
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// edges adds explicit (depends_on), notification and implicit
// (parent directory) edges.
func (e *Engine) edges(env Env, g *graph.Graph, nodes map[string]*node, order []*node) error {
	ref := func(from *node, attr string, a lang.ResourceAddr) (*node, error) {
		t, ok := nodes[a.String()]
		if !ok {
			return nil, fmt.Errorf("%s: %s: %s refers to undeclared resource %s", from.decl.DeclRange, from.addr, attr, a)
		}
		return t, nil
	}
	for _, n := range order {
		for _, a := range n.decl.DependsOn {
			t, err := ref(n, "depends_on", a)
			if err != nil {
				return err
			}
			g.AddEdge(t.addr, n.addr)
		}
		for _, a := range n.decl.Notify {
			t, err := ref(n, "notify", a)
			if err != nil {
				return err
			}
			g.AddEdge(n.addr, t.addr)
			if !slices.Contains(t.notifiers, n.addr) {
				t.notifiers = append(t.notifiers, n.addr)
			}
		}
		for _, a := range n.decl.Subscribe {
			t, err := ref(n, "subscribe", a)
			if err != nil {
				return err
			}
			g.AddEdge(t.addr, n.addr)
			if !slices.Contains(n.notifiers, t.addr) {
				n.notifiers = append(n.notifiers, t.addr)
			}
		}
	}
	// Implicit edges: every managed path after the directory resource that
	// manages its nearest parent.
	owner := map[string]*node{} // path -> resource managing it
	dirs := map[string]*node{}
	for _, n := range order {
		p, ok := n.res.(Pather)
		if !ok || n.res == nil {
			continue
		}
		path, dir := p.ManagedPath()
		if prev, dup := owner[path]; dup {
			return fmt.Errorf("%s: %s and %s (%s) both manage %s", n.decl.DeclRange, n.addr, prev.addr, prev.decl.DeclRange, env.Unconfine(path))
		}
		owner[path] = n
		env.Managed.add(path)
		if dir {
			dirs[path] = n
		}
	}
	for _, n := range order {
		p, ok := n.res.(Pather)
		if !ok {
			continue
		}
		path, _ := p.ManagedPath()
		for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
			if d, ok := dirs[dir]; ok && d != n {
				g.AddEdge(d.addr, n.addr)
				break
			}
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	return nil
}

type result struct {
	n   *node
	rep ResourceReport
}

// schedule runs the graph: the calling goroutine owns all scheduling state;
// up to par workers each run one resource at a time and report back on a
// channel.
//
// A resource that staged file writes (Env.WriteFile) is held, not
// completed, until the owner commits the held resources' writes together
// (commitWrites: one data-sync pass, the renames, one directory-sync pass,
// instead of an fsync per file): when nothing is left to start and either
// nothing is running or a held resource has dependents waiting for it.
// Its dependents start only after the commit.
func (e *Engine) schedule(ctx context.Context, g *graph.Graph, nodes map[string]*node, order []*node, par int, apply bool) {
	pending := map[string]int{}
	skipBecause := map[string]string{}
	changed := map[string]bool{}
	var ready []*node
	for _, n := range order {
		pending[n.addr] = len(g.Dependencies(n.addr))
		if pending[n.addr] == 0 {
			ready = append(ready, n)
		}
	}
	// A fixed pool of workers, not a goroutine per resource: a no-op run's
	// resources take microseconds each, and fresh goroutines would each
	// grow a stack for them. The owner hands out a job only while fewer
	// than par are running, so a worker is always free to take it.
	type job struct {
		n       *node
		base    ResourceReport
		refresh []string
	}
	jobs := make(chan job)
	results := make(chan result)
	defer close(jobs)
	for range min(par, len(order)) {
		go func() {
			for j := range jobs {
				results <- result{j.n, e.runOne(ctx, j.n, j.base, apply, j.refresh)}
			}
		}()
	}
	running := 0
	remaining := len(order)
	var held []result

	var complete func(n *node, rr ResourceReport)
	complete = func(n *node, rr ResourceReport) {
		n.rep, n.done = rr, true
		remaining--
		if rr.Status == StatusChanged || rr.Status == StatusWouldChange {
			changed[n.addr] = true
		}
		for _, d := range g.Dependents(n.addr) {
			if rr.Status == StatusFailed || rr.Status == StatusSkipped {
				if _, ok := skipBecause[d]; !ok {
					skipBecause[d] = n.addr
				}
			}
			pending[d]--
			if pending[d] == 0 {
				ready = append(ready, nodes[d])
			}
		}
	}
	for remaining > 0 {
		// Start what can start; skipped nodes complete at once.
		for len(ready) > 0 && running < par {
			n := ready[0]
			ready = ready[1:]
			base := ResourceReport{Addr: n.addr, Kind: n.decl.Addr.Kind, Range: rangeString(n.decl.DeclRange)}
			if why, ok := skipBecause[n.addr]; ok {
				base.Status = StatusSkipped
				base.Change = "dependency " + why + " did not converge"
				complete(n, base)
				continue
			}
			if err := ctx.Err(); err != nil {
				base.Status = StatusSkipped
				base.Change = "run cancelled"
				complete(n, base)
				continue
			}
			var refresh []string
			for _, a := range n.notifiers {
				if changed[a] {
					refresh = append(refresh, a)
				}
			}
			running++
			jobs <- job{n, base, refresh}
		}
		if len(held) > 0 && len(ready) == 0 && (running == 0 || blocksOthers(g, held)) {
			e.commit(held, complete)
			held = nil
			continue
		}
		if running == 0 {
			if len(ready) == 0 && remaining > 0 {
				// Cannot happen with an acyclic graph; guard against a hang.
				panic("converge: scheduler stalled")
			}
			continue
		}
		r := <-results
		running--
		switch {
		case r.n.writes.Len() == 0:
			complete(r.n, r.rep)
		case r.rep.Status == StatusFailed:
			r.n.writes.discard()
			complete(r.n, r.rep)
		default:
			held = append(held, r)
		}
	}
}

// blocksOthers reports whether a held resource has dependents (which wait
// for its commit).
func blocksOthers(g *graph.Graph, held []result) bool {
	for _, r := range held {
		if len(g.Dependents(r.n.addr)) > 0 {
			return true
		}
	}
	return false
}

// commit commits the held resources' staged writes and completes them; a
// resource whose writes did not commit is reported failed (its path keeps
// its old content).
func (e *Engine) commit(held []result, complete func(*node, ResourceReport)) {
	ws := make([]*Writes, len(held))
	for i, r := range held {
		ws[i] = r.n.writes
	}
	t0 := time.Now()
	errs := commitWrites(ws)
	e.env.Logger.Debug("committed staged writes", "resources", len(held), "duration", time.Since(t0))
	for i, r := range held {
		rr := r.rep
		if errs[i] != nil {
			rr.Status = StatusFailed
			rr.Error = fmt.Sprintf("%s (%s): commit: %v", r.n.addr, r.n.decl.DeclRange, errs[i])
			e.env.Logger.Info("resource failed", "resource", r.n.addr, "err", errs[i])
		}
		complete(r.n, rr)
	}
}

// runOne checks (and applies) one resource and refreshes it when notified.
func (e *Engine) runOne(ctx context.Context, n *node, rr ResourceReport, apply bool, refresh []string) ResourceReport {
	t0 := time.Now()
	fail := func(err error) ResourceReport {
		rr.Status = StatusFailed
		rr.Error = fmt.Sprintf("%s (%s): %v", n.addr, n.decl.DeclRange, err)
		rr.Duration = time.Since(t0)
		e.env.Logger.Info("resource failed", "resource", n.addr, "err", err)
		return rr
	}
	if n.err != nil {
		rr.Status = StatusFailed
		rr.Error = fmt.Sprintf("%s: %v", n.addr, n.err)
		rr.Duration = time.Since(t0)
		return rr
	}
	ok, err := n.res.CheckApply(ctx, apply)
	if err != nil {
		return fail(err)
	}
	rr.Status = StatusUnchanged
	if !ok {
		rr.Status = StatusChanged
		if !apply {
			rr.Status = StatusWouldChange
			if d, isD := n.res.(Differ); isD {
				diff, err := d.Diff()
				if err != nil {
					return fail(fmt.Errorf("diff: %w", err))
				}
				rr.Diff = diff
			}
		}
		if c, isC := n.res.(Changer); isC {
			rr.Change = c.Change()
		}
	}
	// A resource that just changed is already fresh (a service that was
	// started, an exec that ran): refresh only unchanged ones.
	if len(refresh) > 0 && ok {
		if _, isR := n.res.(Refresher); isR {
			note := "notified by " + strings.Join(refresh, ", ")
			if apply {
				if err := n.res.(Refresher).Refresh(ctx); err != nil {
					return fail(fmt.Errorf("refresh (%s): %w", note, err))
				}
				rr.Change = joinChange(rr.Change, "refreshed ("+note+")")
				rr.Status = StatusChanged
			} else {
				rr.Change = joinChange(rr.Change, "would refresh ("+note+")")
				rr.Status = StatusWouldChange
			}
		}
	}
	rr.Duration = time.Since(t0)
	e.env.Logger.Debug("resource done", "resource", n.addr, "status", rr.Status, "change", rr.Change)
	return rr
}

func joinChange(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
