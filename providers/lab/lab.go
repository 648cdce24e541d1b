package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
)

// Type is the provider type of lab machines (HCL provider "lab").
const Type = "lab"

// firstOctet is the first octet of every lab address: 10.A.B.C.
const firstOctet = 10

var (
	_ providers.Provider    = (*Provider)(nil)
	_ providers.Fencer      = (*Provider)(nil)
	_ providers.PowerOner   = (*Provider)(nil)
	_ providers.VIPAssigner = (*Provider)(nil)
	_ providers.NetFaulter  = (*Provider)(nil)
)

// Config configures a lab provider.
type Config struct {
	// StateDir holds every cluster's nodes, as for the local provider.
	// Empty means local.DefaultStateDir().
	StateDir string
	// Command returns the argv that boots a node whose directory is nodeDir;
	// the lab runs it inside the node's network namespace.
	Command func(nodeDir string) []string
	// Logger receives warnings and debug events. Nil means slog.Default().
	Logger *slog.Logger
}

// Provider manages lab nodes. It is a local provider (embedded: List,
// Create, PowerOn, AssignVIP, VIPHolder, AllocateVIP, NodeDir, StateDir come
// from it) whose nodes live in network namespaces. Safe for concurrent use.
type Provider struct {
	*local.Provider
	log *slog.Logger
}

// Check reports what this machine lacks to run lab nodes: root, and the
// commands the provider runs.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root (network namespaces, veth, nftables)")
	}
	var missing []string
	for _, c := range []string{"ip", "nft", "nsenter", "arping"} {
		if _, err := lookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("lab: missing commands %s (apt-get install iproute2 nftables util-linux iputils-arping)", strings.Join(missing, ", "))
	}
	return nil
}

// New checks the machine (see Check) and returns a provider.
func New(cfg Config) (*Provider, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("provider", Type)
	p := &Provider{log: lg}
	var command func(string) []string
	if cfg.Command != nil {
		command = func(nodeDir string) []string {
			argv := cfg.Command(nodeDir)
			md, err := local.ReadMetaData(nodeDir)
			if err != nil || len(argv) == 0 {
				return nil
			}
			n, err := namesOf(md.LocalIPv4)
			if err != nil {
				return nil
			}
			return append([]string{nsenterPath(), "--net=" + nsPath(n.ns), "--"}, argv...)
		}
	}
	lp, err := local.New(local.Config{
		StateDir:   cfg.StateDir,
		Command:    command,
		Logger:     cfg.Logger,
		Type:       Type,
		FirstOctet: firstOctet,
		PairTaken:  pairTaken,
		Prepare:    p.prepare,
	})
	if err != nil {
		return nil, err
	}
	p.Provider = lp
	return p, nil
}

// Factory returns a providers.Factory for provider blocks of type "lab".
// The setting "state_dir" overrides base.StateDir.
func Factory(base Config) providers.Factory {
	return func(settings map[string]string) (providers.Provider, error) {
		cfg := base
		if d := settings["state_dir"]; d != "" {
			cfg.StateDir = d
		}
		return New(cfg)
	}
}

// meta returns the meta-data of machine id, or an error wrapping
// providers.ErrNotFound.
func (p *Provider) meta(id providers.MachineID) (local.MetaData, names, error) {
	dir, err := p.NodeDir(id)
	if err != nil {
		return local.MetaData{}, names{}, err
	}
	md, err := local.ReadMetaData(dir)
	if err != nil {
		return md, names{}, fmt.Errorf("lab: machine %s: %w", id, providers.ErrNotFound)
	}
	n, err := namesOf(md.LocalIPv4)
	return md, n, err
}

// prepare builds the node's network before its process starts: the
// cluster's bridge (once), the node's namespace and veth, its address.
func (p *Provider) prepare(nodeDir string) error {
	md, err := local.ReadMetaData(nodeDir)
	if err != nil {
		return err
	}
	n, err := namesOf(md.LocalIPv4)
	if err != nil {
		return err
	}
	if err := ensureBridge(n); err != nil {
		return fmt.Errorf("lab: bridge %s for cluster %s: %w", n.bridge, md.Cluster, err)
	}
	if err := ensureNode(n); err != nil {
		return fmt.Errorf("lab: network of %s/%s: %w", md.Cluster, md.InstanceID, err)
	}
	p.log.Debug("node network ready", "cluster", md.Cluster, "machine", md.InstanceID, "netns", n.ns, "address", n.addr)
	return nil
}

// Fence kills the node's processes (the local provider's confirmed fence)
// and then deletes its namespace and veth, so the VIPs its interface held
// and its address vanish from the network with it. PowerOn builds them
// again.
func (p *Provider) Fence(ctx context.Context, id providers.MachineID) error {
	md, n, err := p.meta(id)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.Provider.Fence(ctx, id); err != nil {
		return err
	}
	if err := removeNode(n); err != nil {
		return fmt.Errorf("lab: fence %s: %w", id, err)
	}
	p.log.Debug("fenced node and removed its network", "machine", id, "netns", n.ns, "cluster", md.Cluster)
	return nil
}

// Destroy destroys the node as the local provider does, then removes its
// namespace and veth; the last node of a cluster takes the bridge with it.
func (p *Provider) Destroy(ctx context.Context, id providers.MachineID) error {
	md, n, err := p.meta(id)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.Provider.Destroy(ctx, id); err != nil {
		return err
	}
	if err := removeNode(n); err != nil {
		return fmt.Errorf("lab: destroy %s: %w", id, err)
	}
	ms, err := p.List(ctx, md.Cluster)
	if err == nil && len(ms) == 0 {
		if err := removeBridge(n); err != nil {
			return fmt.Errorf("lab: destroy %s: %w", id, err)
		}
	}
	return nil
}

// Partition cuts machine id off from peers (everyone on the cluster's
// network, the host's bridge address included, when peers is empty).
func (p *Provider) Partition(ctx context.Context, id providers.MachineID, peers []providers.MachineID) error {
	_, n, err := p.meta(id)
	if err != nil {
		return fmt.Errorf("lab: partition %s: %w", id, err)
	}
	var addrs []string
	for _, peer := range peers {
		if peer == id {
			continue
		}
		_, pn, err := p.meta(peer)
		if err != nil {
			return fmt.Errorf("lab: partition %s from %s: %w", id, peer, err)
		}
		addrs = append(addrs, pn.addr.String())
	}
	if len(peers) == 0 {
		addrs = []string{n.prefix.String()}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("lab: partition %s: no peer other than itself", id)
	}
	if err := setPartition(ctx, n, addrs); err != nil {
		return fmt.Errorf("lab: partition %s: %w", id, err)
	}
	p.log.Info("partitioned node", "machine", id, "from", addrs)
	return nil
}

// DropShare drops percent of machine id's packets at random, both ways.
func (p *Provider) DropShare(ctx context.Context, id providers.MachineID, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("lab: packet loss on %s: %d%% is not in 0..100", id, percent)
	}
	_, n, err := p.meta(id)
	if err != nil {
		return fmt.Errorf("lab: packet loss on %s: %w", id, err)
	}
	if err := setLoss(ctx, n, percent); err != nil {
		return fmt.Errorf("lab: packet loss on %s: %w", id, err)
	}
	p.log.Info("packet loss on node", "machine", id, "percent", percent)
	return nil
}

// Heal removes the partition and packet loss of machine id. A machine that
// is gone, or fenced (its namespace, and its rules, deleted), has nothing
// to heal: that is not an error.
func (p *Provider) Heal(ctx context.Context, id providers.MachineID) error {
	_, n, err := p.meta(id)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lab: heal %s: %w", id, err)
	}
	if !exists(nsPath(n.ns)) {
		return nil
	}
	if err := heal(ctx, n); err != nil {
		return fmt.Errorf("lab: heal %s: %w", id, err)
	}
	p.log.Info("healed node", "machine", id)
	return nil
}

// Namespace returns the name of machine id's network namespace (under
// /run/netns), for tests and tools.
func (p *Provider) Namespace(id providers.MachineID) (string, error) {
	_, n, err := p.meta(id)
	return n.ns, err
}

// VIPHeld reports whether the network namespace of machine id has vip on
// its interface.
func (p *Provider) VIPHeld(ctx context.Context, id providers.MachineID, vip string) (bool, error) {
	_, n, err := p.meta(id)
	if err != nil {
		return false, err
	}
	a, err := netip.ParseAddr(vip)
	if err != nil {
		return false, fmt.Errorf("lab: vip %q: %w", vip, err)
	}
	return hasAddr(ctx, n.ns, a)
}

func nsPath(ns string) string { return filepath.Join(netnsDir, ns) }
