package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/hactl/hactl/internal/fsutil"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
	"github.com/zclconf/go-cty/cty"
)

// workspace is one configuration directory opened for plan, apply, status
// and destroy: the decoded config, its providers, and the cluster's local
// secrets.
type workspace struct {
	g     *globals
	dir   string
	cfg   *lang.Config
	state string // the local state directory (secrets, origin repo, local nodes)
	provs map[string]providers.Provider
}

// openWorkspace loads and validates dir and builds its providers. On
// configuration errors it renders the diagnostics and returns silentExit(1):
// nothing has been touched at that point.
func openWorkspace(g *globals, dir string, vars map[string]string) (*workspace, error) {
	cfg, diags := lang.Load(dir, lang.LoadOptions{Variables: vars, Schemas: resourceSchemas})
	if diags.HasErrors() {
		var files map[string][]byte
		if cfg != nil {
			files = cfg.Files
		}
		if g.jsonOut {
			_ = renderValidate(g, files, diags)
		} else {
			_ = lang.WriteDiagnostics(g.stderr, files, diags, g.color())
		}
		return nil, silentExit(1)
	}
	if len(diags) > 0 && !g.jsonOut {
		_ = lang.WriteDiagnostics(g.stderr, cfg.Files, diags, g.color())
	}
	w := &workspace{g: g, dir: dir, cfg: cfg, state: g.localStateDir(), provs: map[string]providers.Provider{}}
	for _, name := range w.usedProviders() {
		p, err := w.buildProvider(name)
		if err != nil {
			return nil, err
		}
		w.provs[name] = p
	}
	return w, nil
}

func (g *globals) localStateDir() string {
	if g.stateDir != "" {
		return g.stateDir
	}
	return local.DefaultStateDir()
}

func (g *globals) color() bool {
	if g.noColor || os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := g.stdout.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// usedProviders lists the provider names that roles use, sorted.
func (w *workspace) usedProviders() []string {
	seen := map[string]bool{}
	for _, r := range w.cfg.Roles {
		seen[r.Provider] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (w *workspace) buildProvider(name string) (providers.Provider, error) {
	typ := name
	settings := map[string]string{}
	if pb, ok := w.cfg.Providers[name]; ok {
		typ = pb.Type
		settings = ctyStrings(pb.Config)
	}
	f, ok := providerFactories(w.g, w.state)[typ]
	if !ok {
		return nil, fmt.Errorf("provider %q: type %q is not built into this hactl", name, typ)
	}
	p, err := f(settings)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", name, err)
	}
	return p, nil
}

// ctyStrings flattens an object of primitive attributes into strings (the
// providers.Factory contract). Lists are joined with commas.
func ctyStrings(v cty.Value) map[string]string {
	out := map[string]string{}
	if v == cty.NilVal || v.IsNull() || !v.IsKnown() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		return out
	}
	for k, av := range v.AsValueMap() {
		out[k] = ctyString(av)
	}
	return out
}

func ctyString(v cty.Value) string {
	if v.IsNull() || !v.IsKnown() {
		return ""
	}
	switch {
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case v.Type() == cty.Bool:
		return strconv.FormatBool(v.True())
	case v.CanIterateElements():
		var parts []string
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			parts = append(parts, ctyString(e))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// clusterDir holds the cluster's local files: its secrets and the origin
// repository agents pull the configuration from.
func (w *workspace) clusterDir() string { return filepath.Join(w.state, w.cfg.Cluster.Name) }

func (w *workspace) originRepo() string { return filepath.Join(w.clusterDir(), "origin.git") }

// secrets are the cluster's generated keys, created on first apply and kept
// (0600) under the cluster's state directory.
type secrets struct {
	signer *agent.SSHSigner
	gossip []string // base64 keys
	// files are delivered to every node's secrets directory through
	// user-data: the cluster token and the cluster CA.
	files map[string]string
}

func (w *workspace) loadSecrets(create bool) (*secrets, error) {
	dir := filepath.Join(w.clusterDir(), "secrets")
	keyPath := filepath.Join(dir, "signing_key")
	gossipPath := filepath.Join(dir, "gossip.key")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("cluster %s has no secrets in %s (run hactl apply first)", w.cfg.Cluster.Name, dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if _, err := agent.GenerateSigningKey(keyPath); err != nil {
			return nil, err
		}
	}
	signer, err := agent.LoadSigningKey(keyPath)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(gossipPath)
	if errors.Is(err, os.ErrNotExist) && create {
		ring, gerr := cluster.GenerateKeyring()
		if gerr != nil {
			return nil, gerr
		}
		b = []byte(base64.StdEncoding.EncodeToString(ring[0]) + "\n")
		if err := writeSecretFile(gossipPath, b); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	sec := &secrets{signer: signer, gossip: strings.Fields(string(b)), files: map[string]string{}}
	if err := loadNodeSecrets(dir, create, sec.files); err != nil {
		return nil, err
	}
	return sec, nil
}

// loadNodeSecrets reads (creating them when missing and create is set) the
// cluster token and the cluster CA into files, by the names nodes find them
// under.
func loadNodeSecrets(dir string, create bool, files map[string]string) error {
	tokenPath := filepath.Join(dir, agent.SecretClusterToken)
	b, err := os.ReadFile(tokenPath)
	if errors.Is(err, os.ErrNotExist) && create {
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return fmt.Errorf("generate cluster token: %w", err)
		}
		b = []byte(hex.EncodeToString(tok) + "\n")
		if err := writeSecretFile(tokenPath, b); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	files[agent.SecretClusterToken] = string(b)
	certPath, keyPath := filepath.Join(dir, agent.SecretCACert), filepath.Join(dir, agent.SecretCAKey)
	cert, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) && create {
		ca, err := cluster.GenerateCA(filepath.Base(filepath.Dir(dir)))
		if err != nil {
			return err
		}
		if err := writeSecretFile(keyPath, ca.KeyPEM); err != nil {
			return err
		}
		if err := writeSecretFile(certPath, ca.CertPEM); err != nil {
			return err
		}
		cert = ca.CertPEM
	} else if err != nil {
		return err
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("cluster ca key: %w", err)
	}
	if _, err := cluster.LoadCA(cert, key); err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	files[agent.SecretCACert], files[agent.SecretCAKey] = string(cert), string(key)
	return nil
}

func writeSecretFile(path string, b []byte) error {
	return fsutil.WriteFile(path, b, 0o600)
}

// observe lists every machine of the cluster on every provider it uses and
// probes the agents' health endpoints.
func (w *workspace) observe(ctx context.Context) ([]plan.Observed, error) {
	var out []plan.Observed
	for _, name := range w.usedProviders() {
		ms, err := w.provs[name].List(ctx, w.cfg.Cluster.Name)
		if err != nil {
			return nil, fmt.Errorf("list machines on provider %q: %w", name, err)
		}
		for _, m := range ms {
			out = append(out, plan.Observed{Provider: name, Machine: m})
		}
	}
	probeHealth(ctx, out)
	if err := w.observeVIPs(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

// observeVIPs records which machine holds each role's VIP, as the provider
// reports it, under the name the planner uses (plan.VIPName).
func (w *workspace) observeVIPs(ctx context.Context, obs []plan.Observed) error {
	for _, r := range w.cfg.Roles {
		name := plan.VIPName(r)
		if name == "" {
			continue
		}
		va, ok := w.provs[r.Provider].(providers.VIPAssigner)
		if !ok {
			continue
		}
		holder, err := va.VIPHolder(ctx, name)
		if err != nil {
			return fmt.Errorf("VIP of role %s: %w", r.Name, err)
		}
		for i := range obs {
			if holder != "" && obs[i].Provider == r.Provider && obs[i].Machine.ID == holder {
				obs[i].VIPs = append(obs[i].VIPs, name)
			}
		}
	}
	return nil
}

// probeHealth asks each running machine's agent for /healthz, in parallel.
// Without a control plane the CLI's view is the provider's plus this probe.
func probeHealth(ctx context.Context, obs []plan.Observed) {
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 2 * time.Second}
	for i := range obs {
		o := &obs[i]
		if o.Machine.State != providers.PowerOn || o.Machine.Address == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.Health = plan.HealthFailing
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL(o.Machine.Address, "/healthz"), nil)
			if err != nil {
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				o.Health = plan.HealthUnreached
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				o.Health = plan.HealthPassing
			}
		}()
	}
	wg.Wait()
}

func agentURL(addr, path string) string {
	return "http://" + netJoin(addr, agent.DefaultAPIPort) + path
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// planInput builds the planner's input from an observation.
func (w *workspace) planInput(obs []plan.Observed) plan.Input {
	caps := map[string]providers.Capabilities{}
	for n, p := range w.provs {
		caps[n] = providers.CapabilitiesOf(p)
	}
	return plan.Input{Config: w.cfg, Observed: obs, Now: time.Now(), Capabilities: caps}
}

// userData returns the function the executor calls for every machine it
// creates: the agent configuration (where to pull, whom to trust, how to
// join) rendered as cloud-init user-data.
func (w *workspace) userData(sec *secrets, obs []plan.Observed) func(role string, slot, gen int) (string, error) {
	var join []string
	for _, o := range obs {
		if o.Machine.Address != "" {
			join = append(join, o.Machine.Address)
		}
	}
	sort.Strings(join)
	pub := sec.signer.PublicKey()
	vips, vipErr := w.agentVIPs()
	files := make(map[string]string, len(sec.files)+2)
	for k, v := range sec.files {
		files[k] = v
	}
	provSecret, provErr := w.providerSecret()
	if provSecret != "" {
		files[secretProviders] = provSecret
	}
	varSecret, varErr := w.variablesSecret()
	if varSecret != "" {
		files[secretVariables] = varSecret
	}
	return func(role string, slot, gen int) (string, error) {
		if err := errors.Join(vipErr, provErr, varErr); err != nil {
			return "", err
		}
		cfg := agent.Config{
			Cluster:     w.cfg.Cluster.Name,
			Remotes:     w.remotes(),
			TrustedKeys: []string{pub},
			Gossip:      agent.GossipConfig{Keys: sec.gossip, Join: join},
			Raft:        agent.RaftConfig{Voters: cluster.VoterSlots(w.cfg)},
			VIPs:        vips,
			Secrets:     files,
		}
		b, err := agent.RenderUserData(cfg, "")
		return string(b), err
	}
}

// vipAllocator is a provider that hands out VIP addresses on its own
// network (local: loopback, lab: the cluster's bridge).
type vipAllocator interface {
	AllocateVIP(cluster, name string) (string, error)
}

// agentVIPs lists the VIPs the control plane manages: each role's declared
// address, or on the local provider the loopback address it allocates for
// the role (plan.VIPName). A VIP without an address on another provider is
// left to that provider (a reserved IP) and not bound by agents.
func (w *workspace) agentVIPs() ([]agent.VIPConfig, error) {
	var out []agent.VIPConfig
	for _, r := range w.cfg.Roles {
		if r.VIP == nil {
			continue
		}
		addr := r.VIP.Address
		if lp, ok := w.provs[r.Provider].(vipAllocator); ok && addr == "" {
			a, err := lp.AllocateVIP(w.cfg.Cluster.Name, plan.VIPName(r))
			if err != nil {
				return nil, fmt.Errorf("VIP of role %s: %w", r.Name, err)
			}
			addr = a
		}
		if addr == "" {
			continue
		}
		v := agent.VIPConfig{Address: addr, Role: r.Name, Failback: r.VIP.Failback, FailbackDelay: agent.Duration(r.VIP.FailbackDelay)}
		if r.VIP.Port > 0 {
			v.Ports = []int{r.VIP.Port}
		}
		out = append(out, v)
	}
	return out, nil
}

// remotes are the git URLs agents pull from, in order. Today that is the
// cluster's origin repository; repo nodes come first once they serve it.
func (w *workspace) remotes() []string {
	return []string{w.originRepo()}
}

// publish commits the configuration directory, signed with the cluster key,
// to the origin repository, and returns the commit.
func (w *workspace) publish(ctx context.Context, sec *secrets) (string, error) {
	staging, err := os.MkdirTemp("", "hactl-publish-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	if err := copyTreeDeref(w.dir, staging); err != nil {
		return "", fmt.Errorf("publish %s: %w", w.dir, err)
	}
	return agent.Publish(ctx, staging, w.originRepo(), sec.signer, "hactl apply "+time.Now().UTC().Format(time.RFC3339))
}
