package lang

import (
	"github.com/hashicorp/hcl/v2/hcldec"
)

// Schemas tells lang the body schema of each resource kind, so lang can
// validate resource blocks without importing converge. converge.Registry
// satisfies it; cmd/hactl connects the two.
type Schemas interface {
	// ResourceSpec returns the hcldec spec for a resource kind, and false when
	// the kind is unknown. It must be safe for concurrent use.
	ResourceSpec(kind string) (hcldec.Spec, bool)
}

// LoadOptions controls Load.
type LoadOptions struct {
	// Variables set input variables by name (from -var flags); they are parsed
	// as HCL expressions when they parse, else taken as strings.
	Variables map[string]string
	// Schemas, when set, validates every resource body against its kind.
	Schemas Schemas
	// Getenv looks up environment variables for the env() function and
	// HACTL_VAR_* variable values; nil means os.Getenv.
	Getenv func(string) string
	// Dir is the configuration directory. LoadFiles treats the *.hcl entries
	// of the map that sit directly in Dir ("" means the map's top level) as
	// the configuration, and every other entry as a file that role sources,
	// file() and templatefile() may read. When Dir is not "", files missing
	// from the map are read from disk, confined to Dir (and a roles/
	// directory next to it). Load sets it.
	Dir string
}

// KindLister is an optional interface of Schemas: when implemented, the
// diagnostic for an unknown resource kind lists the known kinds. Kinds must
// return the names sorted and be safe for concurrent use.
type KindLister interface {
	Kinds() []string
}

// Load reads every *.hcl file in dir (not recursively; role sources are
// loaded as they are referenced), decodes and validates them, and returns the
// configuration. It reports every problem it finds, not only the first, with
// source ranges. When the returned diagnostics have errors, the Config must
// not be used.
//
// Signature (load.go): func Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics)

// NodeFacts are the per-node values that resource bodies may refer to as
// node.* and cluster.*; converge and the agent build them.
type NodeFacts struct {
	Name       string // web-2
	Role       string // web
	Slot       int    // 2
	Generation int    // rebuild counter of the slot
	Address    string // primary IP address
	Dir        string // the node's root directory ("/" on real machines)
	OSFamily   string // debian, redhat, unknown
	Cluster    string // cluster name
	// Members maps a role name to the addresses of its live members, sorted by name.
	Members map[string][]Member
}

// Member is one cluster member as seen by templates.
type Member struct {
	Name    string
	Address string
	Slot    int
}

// EvalContext returns the context resource bodies are evaluated in: var.*,
// local.*, the functions, and node.*/cluster.* from facts (unknown values when
// facts is nil, for validation).
//
// Signature (eval.go): func (c *Config) EvalContext(facts *NodeFacts) *hcl.EvalContext
