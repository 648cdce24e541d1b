package lang

import (
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Config is a whole cluster description, decoded and validated. It is the
// configuration as written (after variables and locals are evaluated), not
// the result of converging anything. Values are never mutated after Load
// returns; callers may share a *Config between goroutines.
type Config struct {
	// Dir is the directory the configuration was loaded from.
	Dir string
	// Cluster is the single cluster block.
	Cluster *Cluster
	// Providers by name. The "local" provider exists implicitly.
	Providers map[string]*Provider
	// Roles sorted by name.
	Roles []*Role
	// Variables holds the final value of every declared variable.
	Variables map[string]cty.Value
	// Sensitive names the variables declared sensitive = true: their values
	// must never be printed or logged.
	Sensitive map[string]bool
	// Locals holds the evaluated value of every local.
	Locals map[string]cty.Value
	// Files maps each loaded file name to its bytes, for diagnostic snippets.
	Files map[string][]byte

	src    *sources // confined file access for file() and templatefile()
	getenv func(string) string
}

// Role returns the role with the given name, or nil.
func (c *Config) Role(name string) *Role {
	for _, r := range c.Roles {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Cluster is the `cluster "NAME" { ... }` block.
type Cluster struct {
	Name string
	// Provider is the default provider for roles that name none.
	Provider string
	// Voters is the number of raft voters wanted (0 = automatic, up to 5 spread over roles).
	Voters int
	// Witness names a witness member that votes and serves nothing ("" = none).
	Witness    string
	Objectives Objectives
	DeclRange  hcl.Range
}

// Objectives are the service objectives chaos runs are judged against.
type Objectives struct {
	RTO time.Duration // recovery time objective; 0 = unset
	RPO time.Duration // recovery point objective; 0 = unset
	// Availability is a fraction in (0,1], e.g. 0.999 for "99.9%"; 0 = unset.
	Availability float64
}

// Provider is a `provider "NAME" { type = "..." ... }` block.
type Provider struct {
	Name string
	// Type selects the implementation: local, digitalocean, baremetal, lab.
	Type string
	// Config holds every other attribute, evaluated, as an object.
	Config    cty.Value
	DeclRange hcl.Range
}

// Role is a `role "NAME" { ... }` block: a kind of node and how many of it.
type Role struct {
	Name     string
	Count    int
	Provider string // resolved: the cluster default when the block names none
	// Placement constrains where nodes of the role go.
	Placement Placement
	Health    []HealthCheck
	Fencing   Fencing
	VIP       *VIP // nil when the role has no virtual IP
	Data      []Data
	// Resources are the convergence resources of the role, in source order.
	Resources []*ResourceDecl
	// Source is the file the role body came from (a shared role under roles/), or "".
	Source    string
	DeclRange hcl.Range
}

// Placement says where a role's nodes may run.
type Placement struct {
	Regions []string // candidate regions, in order of preference
	Size    string   // machine size (provider-specific), "" = provider default
	Image   string   // image or snapshot (provider-specific), "" = provider default
	Spread  bool     // spread replicas over regions/zones when possible
}

// HealthCheck is a `health "NAME" { ... }` block.
type HealthCheck struct {
	Name     string
	Type     string // http, tcp, smtp, exec
	Port     int
	Path     string   // http only
	Command  []string // exec only
	Interval time.Duration
	Timeout  time.Duration
	// Threshold is how many consecutive failures make the node unhealthy.
	Threshold int
	DeclRange hcl.Range
}

// Fencing is the `fencing { ... }` block of a role.
type Fencing struct {
	// Method is provider (power off through the provider), destroy, ssh, ipmi, redfish or none.
	Method string
	// Delay before fencing a peer; staggered per slot to avoid the two-node fence race.
	Delay time.Duration
	// Settings holds method-specific attributes (ipmi host, credentials file...).
	Settings  cty.Value
	DeclRange hcl.Range
}

// Failback policies for a VIP.
const (
	FailbackNever     = "never"
	FailbackImmediate = "immediate"
	FailbackDelayed   = "delayed"
)

// VIP is the `vip { ... }` block: a virtual IP held by exactly one node of the role.
type VIP struct {
	// Address is the IP, or "" to let the provider allocate one.
	Address       string
	Port          int
	Failback      string
	FailbackDelay time.Duration
	// Note explains a VIP on a role of count 1 (required then).
	Note      string
	DeclRange hcl.Range
}

// Replication modes for Data.
const (
	ReplicationSync  = "sync"
	ReplicationAsync = "async"
	ReplicationNone  = "none"
)

// Data is a `data "NAME" { ... }` block: state the role keeps and must not lose.
type Data struct {
	Name      string
	Path      string
	Mode      string        // sync, async, none
	Interval  time.Duration // async replication interval (the accepted RPO)
	Backups   []Backup
	DeclRange hcl.Range
}

// Backup is a `backup "NAME" { ... }` block inside data.
type Backup struct {
	Name      string
	Target    string // dir:///path or sftp://user@host:port/path
	Schedule  string // cron syntax
	KeepLast  int
	KeepDaily int
	// HostKey pins the SFTP server's host key (authorized_keys format).
	HostKey   string
	DeclRange hcl.Range
}

// ResourceDecl is a `resource "KIND" "NAME" { ... }` block inside a role.
// Its body is kept unevaluated: it may refer to node facts (node.name,
// cluster.members...) that are only known on the node, so converge evaluates
// it with an EvalContext from Config.EvalContext plus those facts.
type ResourceDecl struct {
	Addr ResourceAddr
	// Body is the block body with depends_on, notify and subscribe removed.
	Body      hcl.Body
	DependsOn []ResourceAddr
	Notify    []ResourceAddr
	Subscribe []ResourceAddr
	DeclRange hcl.Range
	TypeRange hcl.Range
}

// ResourceAddr names a resource within a role: KIND.NAME, e.g. file.index.
type ResourceAddr struct {
	Kind string
	Name string
}

func (a ResourceAddr) String() string { return a.Kind + "." + a.Name }
