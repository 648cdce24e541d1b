package localbackend

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
	"github.com/hactl/hactl/providers/local"
)

// ReservedIPBase is the first reserved IP an emulator with this backend
// should hand out (doemu.Config.ReservedIPBase): 127.15.0.10 and up, a
// loopback range no local cluster uses (the local provider's pairs start at
// 127.16). DigitalOcean's network delivers a reserved IP to the droplet it is
// assigned to; here nothing routes a public address, so the emulated reserved
// IPs are loopback addresses and the holder's agent binds its reserved IP the
// way a local node binds its VIP (docs/providers/digitalocean.md).
var ReservedIPBase = netip.MustParseAddr("127.15.0.10")

// Backend implements doemu.Backend over a local provider.
type Backend struct {
	p *local.Provider

	mu    sync.Mutex
	nodes map[int]providers.MachineID // droplet id → local machine
	keys  map[string]int              // cluster/role/slot/gen → droplet id holding it
	byID  map[int]string              // droplet id → key
}

var _ doemu.Backend = (*Backend)(nil)

// New returns a backend that boots droplets as nodes of p.
func New(p *local.Provider) *Backend {
	return &Backend{p: p, nodes: map[int]providers.MachineID{}, keys: map[string]int{}, byID: map[int]string{}}
}

// request derives the local create request from the droplet's tags.
func request(d doemu.Droplet) providers.CreateRequest {
	req := providers.CreateRequest{Cluster: "doemu", Role: "droplet", Slot: d.ID, Generation: 1,
		UserData: d.UserData, Region: d.Region, Size: d.Size, Image: d.Image}
	tagged := 0
	for _, t := range d.Tags {
		switch {
		case strings.HasPrefix(t, providers.TagCluster+"-"):
			req.Cluster = strings.TrimPrefix(t, providers.TagCluster+"-")
			tagged++
		case strings.HasPrefix(t, providers.TagRole+"-"):
			req.Role = strings.TrimPrefix(t, providers.TagRole+"-")
			tagged++
		case strings.HasPrefix(t, providers.TagSlot+"-"):
			if n, err := strconv.Atoi(strings.TrimPrefix(t, providers.TagSlot+"-")); err == nil {
				req.Slot = n
				tagged++
			}
		case strings.HasPrefix(t, providers.TagGeneration+"-"):
			if n, err := strconv.Atoi(strings.TrimPrefix(t, providers.TagGeneration+"-")); err == nil {
				req.Generation = n
				tagged++
			}
		}
	}
	if tagged < 4 { // not an hactl droplet: one node per droplet
		req.Cluster, req.Role, req.Slot, req.Generation = "doemu", "droplet", d.ID, 1
	}
	return req
}

// Boot creates and starts the local node and returns its loopback address,
// which becomes the droplet's public IPv4.
func (b *Backend) Boot(ctx context.Context, d doemu.Droplet) (string, error) {
	req := request(d)
	key := fmt.Sprintf("%s/%s/%d/%d", req.Cluster, req.Role, req.Slot, req.Generation)
	b.mu.Lock()
	if other, taken := b.keys[key]; taken && other != d.ID {
		req.Cluster = req.Cluster + "-dup" + strconv.Itoa(d.ID)
		if len(req.Cluster) > 63 {
			req.Cluster = "dup" + strconv.Itoa(d.ID)
		}
		key = fmt.Sprintf("%s/%s/%d/%d", req.Cluster, req.Role, req.Slot, req.Generation)
	}
	b.keys[key] = d.ID
	b.byID[d.ID] = key
	b.mu.Unlock()
	m, err := b.p.Create(ctx, req)
	if err != nil {
		b.forget(d.ID)
		return "", fmt.Errorf("droplet %d: %w", d.ID, err)
	}
	b.mu.Lock()
	b.nodes[d.ID] = m.ID
	b.mu.Unlock()
	return m.Address, nil
}

func (b *Backend) forget(id int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.byID[id]; ok && b.keys[k] == id {
		delete(b.keys, k)
	}
	delete(b.byID, id)
	delete(b.nodes, id)
}

func (b *Backend) node(id int) (providers.MachineID, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.nodes[id]
	return m, ok
}

// PowerOff fences the node: it returns once its processes are gone.
func (b *Backend) PowerOff(ctx context.Context, id int) error {
	m, ok := b.node(id)
	if !ok {
		return nil
	}
	return b.p.Fence(ctx, m)
}

// PowerOn starts the node again.
func (b *Backend) PowerOn(ctx context.Context, id int) error {
	m, ok := b.node(id)
	if !ok {
		return nil
	}
	return b.p.PowerOn(ctx, m)
}

// Destroy stops the node and removes its directory.
func (b *Backend) Destroy(ctx context.Context, id int) error {
	m, ok := b.node(id)
	if !ok {
		return nil
	}
	if err := b.p.Destroy(ctx, m); err != nil {
		return err
	}
	b.forget(id)
	return nil
}

// Close destroys every node this backend booted; for tests and for
// "hactl emulate" shutting down.
func (b *Backend) Close(ctx context.Context) error {
	b.mu.Lock()
	ids := make([]int, 0, len(b.nodes))
	for id := range b.nodes {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	var first error
	for _, id := range ids {
		if err := b.Destroy(ctx, id); err != nil && first == nil {
			first = err
		}
	}
	return first
}
