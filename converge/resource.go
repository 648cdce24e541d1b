package converge

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/hactl/hactl/converge/supervise"
	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Resource is one node-local thing that can be brought to its declared state.
//
// CheckApply checks the current state and returns ok=true when nothing needs
// to change. When a change is needed and apply is false (noop mode, dry
// run), it returns (false, nil) and must not change anything. When apply is
// true it makes the change in this one call and returns (false, nil), or
// returns an error; file content written through Env.WriteFile becomes
// visible when the engine commits the run's writes, which it does before
// any resource that depends on this one runs and before the run ends. It must be idempotent: a second CheckApply(ctx, true)
// after a successful one returns ok=true. The engine calls it at most once
// per run, from one goroutine at a time; different resources run
// concurrently. It must return promptly when ctx is cancelled.
type Resource interface {
	CheckApply(ctx context.Context, apply bool) (ok bool, err error)
}

// Differ is implemented by resources whose change can be shown as a
// unified diff of content. The engine calls Diff only in a dry run, after
// CheckApply(ctx, false) returned ok=false. It must not change anything.
type Differ interface {
	Diff() (string, error)
}

// Refresher is implemented by resources that react to notifications (a
// service restarts, an exec with refreshonly runs). The engine calls Refresh
// at most once per run, after CheckApply returned ok=true (a resource that
// CheckApply just changed, such as a service it started, is already
// fresh), when at least one resource that notifies this one changed. It is
// not called in a dry run.
type Refresher interface {
	Refresh(ctx context.Context) error
}

// Pather is implemented by resources that manage one filesystem path. The
// engine uses it for implicit edges (a path after the directory resource
// that manages its nearest parent) and to tell directory purges which
// entries are managed. The path is the host path after confinement. dir is
// true when the resource manages a directory that may hold other resources.
type Pather interface {
	ManagedPath() (path string, dir bool)
}

// Changer is implemented by resources that can describe, in a few words,
// the change their last CheckApply made or would make ("created, 120
// bytes", "mode 0600 -> 0644"). It is called after CheckApply.
type Changer interface {
	Change() string
}

// Kind is a resource type: its body schema and its constructor. New gets a
// value that already conforms to Spec and must not retain env.Logger for
// anything but logging. New validates the value and returns an error naming
// the attribute when it is wrong; it must not touch the system.
//
// Flatten and Unflatten, both or neither, give a kind a faster cached
// form (Compiled.MarshalBinary): Flatten encodes what New reads from a
// value, or fails for a value New would refuse; Unflatten(env, Flatten(v))
// must build what New(env, v) builds, without the value.
type Kind struct {
	Name      string
	Spec      hcldec.Spec
	New       func(env Env, v cty.Value) (Resource, error)
	Flatten   func(v cty.Value) ([]byte, error)
	Unflatten func(env Env, flat []byte) (Resource, error)
}

// Registry maps kind names to Kinds. It is built once at startup and is
// read-only afterwards, so it is safe for concurrent use. It satisfies
// lang.Schemas.
type Registry struct {
	kinds map[string]Kind
}

var _ lang.Schemas = (*Registry)(nil)

// NewRegistry returns a registry of the given kinds. It panics on a
// duplicate or unnamed kind: that is a programming error found at startup.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: map[string]Kind{}}
	for _, k := range kinds {
		if k.Name == "" || k.Spec == nil || k.New == nil || (k.Flatten == nil) != (k.Unflatten == nil) {
			panic(fmt.Sprintf("converge: incomplete kind %q", k.Name))
		}
		if _, dup := r.kinds[k.Name]; dup {
			panic(fmt.Sprintf("converge: duplicate kind %q", k.Name))
		}
		r.kinds[k.Name] = k
	}
	return r
}

// Kind returns the kind with the given name.
func (r *Registry) Kind(name string) (Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Names returns the kind names, sorted.
func (r *Registry) Names() []string {
	var ns []string
	for n := range r.kinds {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// Kinds implements lang.KindLister: the kind names, sorted.
func (r *Registry) Kinds() []string { return r.Names() }

var _ lang.KindLister = (*Registry)(nil)

// ResourceSpec implements lang.Schemas.
func (r *Registry) ResourceSpec(kind string) (hcldec.Spec, bool) {
	k, ok := r.kinds[kind]
	return k.Spec, ok
}

// Env hands capabilities to resources. The engine fills EvalContext and
// Managed per run; the rest comes from the caller.
type Env struct {
	// Root is the node's root directory: "/" on real machines, the node's
	// directory on local nodes. Every path a resource manages is confined
	// under a non-"/" root (see Path).
	Root string
	// ConfigDir is the directory relative `source` attributes are read from
	// (the configuration checkout); "" means the current directory.
	ConfigDir string
	// Facts are the node's facts (name, role, addresses, members, OS).
	Facts *lang.NodeFacts
	// OSFamily is debian, redhat or unknown; it picks the package back end.
	OSFamily string
	// Logger receives progress at debug/info level. Never nil after the
	// engine starts (it substitutes a discarding logger).
	Logger *slog.Logger
	// Supervisor runs services on local nodes; nil means systemd.
	Supervisor *supervise.Supervisor
	// BackupKeep is how many replaced versions of each file are kept under
	// <root>/var/lib/hactl/backup; 0 means 5.
	BackupKeep int
	// EvalContext is the context the bodies were evaluated in; template
	// renders its source with it. Set by the engine.
	EvalContext *hcl.EvalContext
	// Managed lists the paths managed in this run (for directory purge).
	// Set by the engine; complete before the first CheckApply.
	Managed *Managed
	// Memo caches work shared by resources of one run. Set by the engine.
	Memo *Memo
	// Writes collects the file writes (WriteFile) of one resource in one
	// run; the engine makes them visible and durable together with the
	// other resources' writes before anything that depends on the resource
	// runs and before the run ends. Set by the engine, per resource; nil
	// (outside a run) means WriteFile writes durably at once.
	Writes *Writes
}

// Local reports whether env describes a local node (a root other than "/").
func (e Env) Local() bool { return e.Root != "" && e.Root != "/" }

// Managed is the set of paths managed by the resources of one run. It is
// filled before any resource runs and read-only afterwards.
type Managed struct {
	mu    sync.RWMutex
	paths map[string]bool
}

func (m *Managed) add(p string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.paths == nil {
		m.paths = map[string]bool{}
	}
	m.paths[p] = true
}

// Covers reports whether p is managed, or is a directory holding a managed
// path (so purging p would remove something managed).
func (m *Managed) Covers(p string) bool {
	if m == nil {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.paths[p] {
		return true
	}
	prefix := strings.TrimSuffix(p, "/") + "/"
	for q := range m.paths {
		if strings.HasPrefix(q, prefix) {
			return true
		}
	}
	return false
}
