// Package providers declares how hactl talks to the places machines live:
// the Provider interface, its optional capabilities, and the types they
// exchange. It imports no SDK; implementations live in sub-packages
// (providers/local, providers/digitalocean) and only cmd/hactl imports those.
package providers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Tag keys every provider records on the machines hactl owns. Inventory is
// rebuilt from these, so there is no state file to lose.
const (
	TagCluster    = "hactl-cluster"
	TagRole       = "hactl-role"
	TagSlot       = "hactl-slot"
	TagGeneration = "hactl-gen"
)

// MachineID is a provider's own identifier for a machine (a droplet id, a
// local node directory name). It is opaque to everything but the provider.
type MachineID string

// PowerState is what the provider observes of a machine.
type PowerState string

const (
	PowerUnknown  PowerState = "unknown"
	PowerStarting PowerState = "starting" // created, not yet running (droplet status "new")
	PowerOn       PowerState = "on"
	PowerOff      PowerState = "off"
)

// Machine is one machine as the provider sees it. Values are copies.
type Machine struct {
	ID         MachineID
	Cluster    string
	Role       string
	Slot       int
	Generation int
	// Name is "<role>-<slot>", the hostname and member name.
	Name    string
	Address string // primary address agents and peers use
	State   PowerState
	Created time.Time
	// Region, Size and Image are informational.
	Region string
	Size   string
	Image  string
}

// NodeName returns the canonical "<role>-<slot>" name.
func NodeName(role string, slot int) string { return fmt.Sprintf("%s-%d", role, slot) }

// CreateRequest asks for one machine. Fields may be added; implementations
// ignore what they do not understand.
type CreateRequest struct {
	Cluster    string
	Role       string
	Slot       int
	Generation int
	Region     string
	Size       string
	Image      string
	SSHKeys    []string
	// UserData is the cloud-init user-data that boots the agent (hactl userdata).
	UserData string
	// Settings carries role/provider-specific settings (already evaluated).
	Settings map[string]string
}

// Name returns the node name the request creates.
func (r CreateRequest) Name() string { return NodeName(r.Role, r.Slot) }

// Provider creates, lists and destroys machines.
//
// Every method may be called concurrently from several goroutines, may block
// on the network until ctx is done, and must be idempotent in the sense given
// below, because the executor re-runs steps after a crash.
type Provider interface {
	// Create makes one machine for (Cluster, Role, Slot, Generation). If a
	// machine with exactly those tags already exists (a retried step), Create
	// returns it instead of making a second one.
	Create(ctx context.Context, req CreateRequest) (Machine, error)
	// Destroy removes a machine and its disk. A machine that is already gone
	// is not an error.
	Destroy(ctx context.Context, id MachineID) error
	// List returns every machine this provider holds for the cluster.
	List(ctx context.Context, cluster string) ([]Machine, error)
}

// Fencer is an optional capability: cut a machine off so it can no longer
// act. Fence returns nil only once the provider confirms the machine is off
// (or gone). It is idempotent.
type Fencer interface {
	Fence(ctx context.Context, id MachineID) error
}

// PowerOner is an optional capability: start a fenced machine again.
type PowerOner interface {
	PowerOn(ctx context.Context, id MachineID) error
}

// VIPAssigner is an optional capability: move a virtual or reserved IP to a
// machine in one step. Assign is idempotent; Holder reports the current
// holder ("" when unassigned).
type VIPAssigner interface {
	AssignVIP(ctx context.Context, vip string, id MachineID) error
	VIPHolder(ctx context.Context, vip string) (MachineID, error)
}

// Snapshotter is an optional capability: make a base image from a machine.
type Snapshotter interface {
	Snapshot(ctx context.Context, id MachineID, name string) (string, error)
}

// NetFaulter is an optional capability: real network faults on a machine,
// for chaos. Partition drops every packet between the machine and peers (all
// of the cluster's network but the machine itself when peers is empty), in
// both directions; DropShare drops percent (0-100) of the machine's packets at
// random, both directions; Heal removes both. Each call replaces the
// previous partition or loss of that machine and returns once the rule is
// in force. Partition and DropShare on a machine that is gone wrap
// ErrNotFound; Heal of a machine that is gone or off is a no-op.
type NetFaulter interface {
	Partition(ctx context.Context, id MachineID, peers []MachineID) error
	DropShare(ctx context.Context, id MachineID, percent int) error
	Heal(ctx context.Context, id MachineID) error
}

// Capabilities lists what a provider can do, for plan warnings and chaos.
type Capabilities struct {
	Fence, PowerOn, VIP, Snapshot bool
}

// CapabilitiesOf inspects p for the optional interfaces.
func CapabilitiesOf(p Provider) Capabilities {
	_, f := p.(Fencer)
	_, o := p.(PowerOner)
	_, v := p.(VIPAssigner)
	_, s := p.(Snapshotter)
	return Capabilities{Fence: f, PowerOn: o, VIP: v, Snapshot: s}
}

// Factory builds a provider from its evaluated settings (the provider block's
// attributes as strings). cmd/hactl holds the map of factories by type.
type Factory func(settings map[string]string) (Provider, error)

// ErrNotFound is returned (wrapped) by optional operations on a machine the
// provider does not know.
var ErrNotFound = errors.New("machine not found")
