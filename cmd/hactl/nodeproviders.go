package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
	"github.com/zclconf/go-cty/cty"
)

// secretProviders is the secret file (agent.Config.Secrets) that carries the
// settings of the cluster's non-local providers to every node, so the
// leader's reconciler can list, fence and rebuild through them. It holds the
// API token: user-data writes it with mode 0600 and nothing logs it.
const secretProviders = "providers.json"

// secretVariables is the secret file that carries the values of the
// configuration's variables as the CLI evaluated them (its -var and
// HACTL_VAR_* values): agents evaluate the same HCL and must get the same
// answers (a reserved IP given with -var, for one). Only string, number and
// bool variables travel; others take their defaults on the nodes. Values are
// those of the apply that created the machine.
const secretVariables = "variables.json"

// cloudInitUserData is where cloud-init keeps a machine's user-data; a
// rebuilt machine boots from the user-data of the node that rebuilds it.
const cloudInitUserData = "/var/lib/cloud/instance/user-data.txt"

// nodeProviderFile is the content of secretProviders.
type nodeProviderFile struct {
	// Cluster names the provider of the cluster block (fence confirmation,
	// lone-survivor proof).
	Cluster   string                  `json:"cluster_provider"`
	Providers map[string]nodeProvider `json:"providers"`
}

type nodeProvider struct {
	Type     string            `json:"type"`
	Settings map[string]string `json:"settings"`
}

// providerSecret renders secretProviders for the providers the roles use,
// local and lab ones excepted (such a node finds its provider from its
// directory).
// Settings are the provider block as this CLI evaluated it (its -var values
// included); a token this CLI took from a file or the environment is copied
// in, since the node has neither. It returns "" when there is nothing to
// deliver.
func (w *workspace) providerSecret() (string, error) {
	f := nodeProviderFile{Cluster: w.cfg.Cluster.Provider, Providers: map[string]nodeProvider{}}
	for _, name := range w.usedProviders() {
		typ, settings := name, map[string]string{}
		if pb, ok := w.cfg.Providers[name]; ok {
			typ, settings = pb.Type, ctyStrings(pb.Config)
		}
		if typ == "local" || typ == "lab" {
			continue
		}
		if typ == "digitalocean" && settings["token"] == "" {
			tok, err := digitaloceanToken(settings)
			if err != nil {
				return "", fmt.Errorf("provider %q: %w", name, err)
			}
			settings["token"] = tok
			delete(settings, "token_file")
		}
		f.Providers[name] = nodeProvider{Type: typ, Settings: settings}
	}
	if len(f.Providers) == 0 {
		return "", nil
	}
	b, err := json.Marshal(f)
	return string(b), err
}

// variablesSecret renders secretVariables; "" when there are none.
func (w *workspace) variablesSecret() (string, error) {
	vars := map[string]string{}
	for name, v := range w.cfg.Variables {
		if v == cty.NilVal || v.IsNull() || !v.IsKnown() {
			continue
		}
		if t := v.Type(); t == cty.String || t == cty.Number || t == cty.Bool {
			vars[name] = ctyString(v)
		}
	}
	if len(vars) == 0 {
		return "", nil
	}
	b, err := json.Marshal(vars)
	return string(b), err
}

// nodeLoader is the agent's configuration loader: agent.LangLoader's
// evaluation, with the variable values the CLI delivered in
// secretVariables (none: every variable takes its default).
func nodeLoader(schemas lang.Schemas, cfg agent.Config, id agent.Identity) (agent.Loader, error) {
	cfg = cfg.WithDefaults()
	path := filepath.Join(id.Root, cfg.SecretsDir, secretVariables)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return agent.LangLoader(schemas), nil
	}
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id.Name, err)
	}
	var vars map[string]string
	if err := json.Unmarshal(b, &vars); err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", id.Name, path, err)
	}
	return func(dir string) (*lang.Config, error) {
		lc, diags := lang.Load(dir, lang.LoadOptions{Schemas: schemas, Variables: vars, Getenv: func(string) string { return "" }})
		if diags.HasErrors() {
			var buf bytes.Buffer
			files := map[string][]byte{}
			if lc != nil {
				files = lc.Files
			}
			_ = lang.WriteDiagnostics(&buf, files, diags, false)
			return nil, fmt.Errorf("configuration in %s does not evaluate:\n%s", dir, buf.String())
		}
		return lc, nil
	}, nil
}

// digitaloceanToken finds the token the digitalocean provider would use
// when its block sets none: token_file, else the environment.
func digitaloceanToken(settings map[string]string) (string, error) {
	if p := settings["token_file"]; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("token_file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	for _, k := range []string{"DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"} {
		if v := os.Getenv(k); v != "" {
			return v, nil
		}
	}
	return "", errors.New("no API token for the nodes (set token, token_file or $DIGITALOCEAN_TOKEN)")
}

// nodeProviders builds, on a node, the providers delivered in
// secretProviders, and returns them with the cluster's provider name. It
// returns nil when the node has no such secret (local clusters).
func nodeProviders(cfg agent.Config, id agent.Identity, log *slog.Logger) (map[string]providers.Provider, string, error) {
	cfg = cfg.WithDefaults()
	path := filepath.Join(id.Root, cfg.SecretsDir, secretProviders)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("node %s: %w", id.Name, err)
	}
	var f nodeProviderFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, "", fmt.Errorf("node %s: %s: %w", id.Name, path, err)
	}
	factories := providerFactories(&globals{logger: log}, "")
	out := map[string]providers.Provider{}
	names := make([]string, 0, len(f.Providers))
	for n := range f.Providers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		np := f.Providers[n]
		fac, ok := factories[np.Type]
		if !ok || np.Type == "local" || np.Type == "lab" {
			return nil, "", fmt.Errorf("node %s: %s: provider %q: type %q cannot be built on a node", id.Name, path, n, np.Type)
		}
		p, err := fac(np.Settings)
		if err != nil {
			return nil, "", fmt.Errorf("node %s: provider %q: %w", id.Name, n, err)
		}
		out[n] = p
	}
	if len(out) == 0 {
		return nil, "", nil
	}
	cp := f.Cluster
	if _, ok := out[cp]; !ok {
		cp = names[0]
	}
	return out, cp, nil
}

// nodeUserData is the user-data this node booted with; the reconciler boots
// the machines it creates with it (identity comes from the machine's name
// and tags, so one user-data fits every node).
func nodeUserData(id agent.Identity) (string, error) {
	path := cloudInitUserData
	if id.Root != "/" {
		path = filepath.Join(filepath.Dir(id.Root), local.UserDataFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("node %s: user-data for rebuilt nodes: %w", id.Name, err)
	}
	return string(b), nil
}

// providerDiscover finds gossip peers in the provider's inventory: every
// running machine of the cluster, at the gossip port. Nodes created by the
// first apply know no peer addresses in advance.
func providerDiscover(p providers.Provider, cluster string, port int) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		ms, err := p.List(ctx, cluster)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, m := range ms {
			if m.State == providers.PowerOn && m.Address != "" {
				out = append(out, net.JoinHostPort(m.Address, strconv.Itoa(port)))
			}
		}
		return out, nil
	}
}

// vipKeeper makes the provider agree with the cluster log about the VIPs
// this node holds: while it holds one, it reads the provider's holder and
// assigns the VIP to this node's machine when it differs (after a move in
// the log, after the old holder's machine was deleted, which unassigns a
// reserved IP, or after an apply assigned it elsewhere). It runs in its own
// goroutine: an API round trip must not stall the cluster node.
type vipKeeper struct {
	p             providers.VIPAssigner
	list          providers.Provider
	cluster, name string
	gen           int
	log           *slog.Logger

	mu   sync.Mutex
	held map[string]bool
	self providers.MachineID
	kick chan struct{}
}

func newVIPKeeper(p providers.Provider, cluster string, id agent.Identity, log *slog.Logger) *vipKeeper {
	va, ok := p.(providers.VIPAssigner)
	if !ok {
		return nil
	}
	return &vipKeeper{p: va, list: p, cluster: cluster, name: id.Name, gen: id.Generation, log: log,
		held: map[string]bool{}, kick: make(chan struct{}, 1)}
}

// set records that this node holds (or no longer holds) vip.
func (k *vipKeeper) set(vip string, held bool) {
	k.mu.Lock()
	if held {
		k.held[vip] = true
	} else {
		delete(k.held, vip)
	}
	k.mu.Unlock()
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run keeps the provider's holders right until ctx is done: at once after
// a change, and every interval.
func (k *vipKeeper) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-t.C:
		}
		k.mu.Lock()
		vips := make([]string, 0, len(k.held))
		for v := range k.held {
			vips = append(vips, v)
		}
		k.mu.Unlock()
		for _, v := range vips {
			k.assert(ctx, v)
		}
	}
}

func (k *vipKeeper) assert(ctx context.Context, vip string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	self, err := k.machine(ctx)
	if err != nil {
		k.log.Warn("vip: find this node's machine", "vip", vip, "err", err)
		return
	}
	holder, err := k.p.VIPHolder(ctx, vip)
	if err != nil {
		k.log.Warn("vip: read the provider's holder", "vip", vip, "err", err)
		return
	}
	if holder == self {
		return
	}
	k.mu.Lock()
	still := k.held[vip]
	k.mu.Unlock()
	if !still {
		return
	}
	if err := k.p.AssignVIP(ctx, vip, self); err != nil {
		k.log.Warn("vip: assign with the provider", "vip", vip, "machine", self, "err", err)
		return
	}
	k.log.Info("vip assigned to this node by the provider", "vip", vip, "machine", self, "previous", holder)
}

// machine finds this node's machine in the provider's inventory (by name
// and generation) once.
func (k *vipKeeper) machine(ctx context.Context) (providers.MachineID, error) {
	k.mu.Lock()
	self := k.self
	k.mu.Unlock()
	if self != "" {
		return self, nil
	}
	ms, err := k.list.List(ctx, k.cluster)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		name := m.Name
		if name == "" {
			name = providers.NodeName(m.Role, m.Slot)
		}
		if name == k.name && (k.gen == 0 || m.Generation == k.gen) {
			k.mu.Lock()
			k.self = m.ID
			k.mu.Unlock()
			return m.ID, nil
		}
	}
	return "", fmt.Errorf("no machine %s generation %d in cluster %s", k.name, k.gen, k.cluster)
}

// bindable reports whether an agent can bind vip itself: a loopback address
// (a local node, or a reserved IP of the DigitalOcean emulator, which hands
// them out on loopback). A real reserved IP is delivered by the provider's
// network and is not bound on the machine.
func bindable(vip string) bool {
	a, err := netip.ParseAddr(vip)
	return err == nil && a.IsLoopback()
}
