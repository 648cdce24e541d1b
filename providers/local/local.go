package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/providers"
)

// File and directory names inside a node directory. The agent reads them.
const (
	MetaDataFile = "meta-data.json"
	UserDataFile = "user-data"
	RootDir      = "root"
	PIDFile      = "agent.pid"
	LogFile      = "agent.log"

	// NodeDirEnv is the environment variable that carries the node directory
	// to the node process (and every process it starts). Liveness checks and
	// fencing look for it in /proc/<pid>/environ.
	NodeDirEnv = "HACTL_NODE_DIR"

	// Region is the only region the local provider has.
	Region = "local"
)

// stopGrace is how long Destroy waits after SIGTERM before SIGKILL.
const stopGrace = 3 * time.Second

var (
	_ providers.Provider    = (*Provider)(nil)
	_ providers.Fencer      = (*Provider)(nil)
	_ providers.PowerOner   = (*Provider)(nil)
	_ providers.VIPAssigner = (*Provider)(nil)
)

// Config configures a local provider.
type Config struct {
	// StateDir holds every cluster's nodes. Empty means DefaultStateDir().
	// It is made absolute, because node directories are matched by path in
	// /proc to confirm liveness.
	StateDir string
	// Command returns the argv that boots a node whose directory is nodeDir
	// (the CLI passes []string{stableBinary, "agent", "--node-dir", nodeDir}).
	// It may be nil for a provider that only lists, fences and destroys;
	// Create and PowerOn then fail.
	Command func(nodeDir string) []string
	// Logger receives warnings (half-written node directories) and debug
	// events. Nil means slog.Default().
	Logger *slog.Logger

	// The fields below let another provider reuse this one with its own
	// network (the lab provider: nodes in network namespaces). Zero values
	// give the local provider.

	// Type is the provider type recorded in meta-data.json ("" = "local").
	Type string
	// FirstOctet is the first octet of every node and VIP address
	// (0 = 127, the loopback plan). The cluster's pair A.B and the last
	// octets are allocated as for 127.A.B.C.
	FirstOctet int
	// PairTaken, when set, reports whether FirstOctet.A.B.0/24 is unusable
	// (say, it overlaps a route of the host); allocation skips such pairs.
	PairTaken func(a, b int) bool
	// Prepare, when set, runs before a node process starts (Create and
	// PowerOn, under the cluster lock) with the node directory, whose
	// meta-data.json is complete; an error fails the start. It must be
	// idempotent.
	Prepare func(nodeDir string) error
}

// Provider manages local nodes. All methods are safe for concurrent use, also
// by several processes sharing one StateDir (they serialise on flock files).
type Provider struct {
	dir     string
	command func(nodeDir string) []string
	log     *slog.Logger
	typ     string
	first   int
	taken   func(a, b int) bool
	prepare func(nodeDir string) error

	mu   sync.Mutex
	sems map[string]chan struct{} // lock path → in-process semaphore
}

// New checks cfg and returns a provider. It creates StateDir if needed.
func New(cfg Config) (*Provider, error) {
	dir := cfg.StateDir
	if dir == "" {
		dir = DefaultStateDir()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local: state dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local: create state dir: %w", err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	typ := cfg.Type
	if typ == "" {
		typ = "local"
	}
	first := cfg.FirstOctet
	if first == 0 {
		first = 127
	}
	if first < 1 || first > 223 {
		return nil, fmt.Errorf("%s: first address octet %d out of range", typ, first)
	}
	return &Provider{
		dir:     abs,
		command: cfg.Command,
		log:     lg.With("provider", typ),
		typ:     typ,
		first:   first,
		taken:   cfg.PairTaken,
		prepare: cfg.Prepare,
		sems:    map[string]chan struct{}{},
	}, nil
}

// Factory returns a providers.Factory for provider blocks of type "local".
// The setting "state_dir" overrides base.StateDir; other settings are
// ignored. Command and Logger come from base.
func Factory(base Config) providers.Factory {
	return func(settings map[string]string) (providers.Provider, error) {
		cfg := base
		if d := settings["state_dir"]; d != "" {
			cfg.StateDir = d
		}
		return New(cfg)
	}
}

// DefaultStateDir returns $HACTL_STATE_DIR, else $XDG_STATE_HOME/hactl, else
// ~/.local/state/hactl. Without a home directory it falls back to
// <os.TempDir()>/hactl-state-<uid>.
func DefaultStateDir() string {
	if d := os.Getenv("HACTL_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "hactl")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "state", "hactl")
	}
	return filepath.Join(os.TempDir(), "hactl-state-"+strconv.Itoa(os.Getuid()))
}

// StateDir returns the provider's absolute state directory.
func (p *Provider) StateDir() string { return p.dir }

// MetaData is the content of meta-data.json, shaped like cloud-init NoCloud
// meta-data plus hactl's identity fields.
type MetaData struct {
	InstanceID    string   `json:"instance-id"`
	LocalHostname string   `json:"local-hostname"`
	LocalIPv4     string   `json:"local-ipv4"`
	Provider      string   `json:"provider"`
	Region        string   `json:"region"`
	Cluster       string   `json:"cluster"`
	Role          string   `json:"role"`
	Slot          int      `json:"slot"`
	Generation    int      `json:"generation"`
	Created       string   `json:"created"` // RFC 3339
	Tags          []string `json:"tags"`
	Image         string   `json:"image,omitempty"`
	Size          string   `json:"size,omitempty"`
}

// ReadMetaData reads and checks nodeDir/meta-data.json.
func ReadMetaData(nodeDir string) (MetaData, error) {
	var md MetaData
	b, err := os.ReadFile(filepath.Join(nodeDir, MetaDataFile))
	if err != nil {
		return md, err
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return md, fmt.Errorf("%s: %w", filepath.Join(nodeDir, MetaDataFile), err)
	}
	if md.InstanceID != filepath.Base(nodeDir) || md.Cluster == "" || md.Role == "" || md.LocalIPv4 == "" {
		return md, fmt.Errorf("%s: incomplete or foreign meta-data (instance-id %q)", filepath.Join(nodeDir, MetaDataFile), md.InstanceID)
	}
	return md, nil
}

// Compiled on first use, not at init: the counted repetitions make large
// programs that cost every hactl command 0.5 ms of start-up.
var (
	nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`) })
	idRE   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}-[0-9]+\.g[0-9]+$`)
	})
)

func checkName(kind, s string) error {
	if !nameRE().MatchString(s) {
		return fmt.Errorf("local: invalid %s name %q: use letters, digits, '-' and '_' (at most 63)", kind, s)
	}
	if kind == "cluster" && s == "bin" {
		return errors.New(`local: cluster name "bin" is reserved (it holds node binaries)`)
	}
	return nil
}

// machineID is the node directory name: "<role>-<slot>.g<generation>".
func machineID(role string, slot, gen int) string {
	return fmt.Sprintf("%s-%d.g%d", role, slot, gen)
}

func (p *Provider) clusterDir(cluster string) string { return filepath.Join(p.dir, cluster) }
func (p *Provider) nodesDir(cluster string) string   { return filepath.Join(p.dir, cluster, "nodes") }

// NodeDir returns the directory of machine id, or an error wrapping
// providers.ErrNotFound.
//
// Machine ids are "<cluster>/<role>-<slot>.g<gen>": the node directory name
// (the meta-data instance-id) qualified by its cluster, because several
// clusters may share a state directory and each may have a web-1.g1. The
// bare "<role>-<slot>.g<gen>" is accepted too and resolved by looking in
// every cluster; it is an error when it is ambiguous.
func (p *Provider) NodeDir(id providers.MachineID) (string, error) {
	_, dir, err := p.resolve(id)
	return dir, err
}

// resolve finds the cluster and directory of a machine id.
func (p *Provider) resolve(id providers.MachineID) (cluster, dir string, err error) {
	s := string(id)
	name := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		cluster, name = s[:i], s[i+1:]
		if err := checkName("cluster", cluster); err != nil {
			return "", "", err
		}
	}
	if !idRE().MatchString(name) {
		return "", "", fmt.Errorf("local: invalid machine id %q: want <role>-<slot>.g<generation>", s)
	}
	if cluster != "" {
		dir = filepath.Join(p.nodesDir(cluster), name)
		if _, err := os.Stat(dir); err != nil {
			return "", "", fmt.Errorf("local: machine %s: %w", s, providers.ErrNotFound)
		}
		return cluster, dir, nil
	}
	clusters, err := p.clusters()
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, c := range clusters {
		if _, err := os.Stat(filepath.Join(p.nodesDir(c), name)); err == nil {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("local: machine %s: %w", s, providers.ErrNotFound)
	case 1:
		return found[0], filepath.Join(p.nodesDir(found[0]), name), nil
	}
	return "", "", fmt.Errorf("local: machine id %s is ambiguous (clusters %s): qualify it as <cluster>/%s", s, strings.Join(found, ", "), name)
}

// clusters lists the cluster directories under the state directory.
func (p *Provider) clusters() ([]string, error) {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("local: read state dir: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "bin" || strings.HasPrefix(e.Name(), ".") || checkName("cluster", e.Name()) != nil {
			continue
		}
		out = append(out, e.Name())
	}
	return out, nil
}

// Create starts the machine for (Cluster, Role, Slot, Generation). If its
// directory already exists (a retried step, or a crash between writing the
// directory and starting the process) Create adopts it: it starts the process
// when it is not running and returns the machine. The directory, with
// meta-data.json, user-data and root/, appears atomically (built under a
// temporary name and renamed) before the process starts.
func (p *Provider) Create(ctx context.Context, req providers.CreateRequest) (providers.Machine, error) {
	if err := checkName("cluster", req.Cluster); err != nil {
		return providers.Machine{}, err
	}
	if err := checkName("role", req.Role); err != nil {
		return providers.Machine{}, err
	}
	if req.Slot < 0 || req.Generation < 0 {
		return providers.Machine{}, fmt.Errorf("local: create %s: slot and generation must not be negative", req.Name())
	}
	if p.command == nil {
		return providers.Machine{}, fmt.Errorf("local: create %s: no node command configured", req.Name())
	}
	id := machineID(req.Role, req.Slot, req.Generation)
	pair, err := p.ensurePair(ctx, req.Cluster)
	if err != nil {
		return providers.Machine{}, err
	}
	unlock, err := p.lockCluster(ctx, req.Cluster)
	if err != nil {
		return providers.Machine{}, err
	}
	defer unlock()
	p.sweep(req.Cluster)

	dir := filepath.Join(p.nodesDir(req.Cluster), id)
	md, err := ReadMetaData(dir)
	switch {
	case err == nil:
		p.log.Debug("adopting existing node", "cluster", req.Cluster, "machine", id)
	case errors.Is(err, fs.ErrNotExist):
		if _, serr := os.Stat(dir); serr == nil {
			return providers.Machine{}, fmt.Errorf("local: create %s/%s: directory %s exists without %s; remove it or destroy the machine", req.Cluster, id, dir, MetaDataFile)
		}
		md, err = p.makeNode(req, id, pair, dir)
		if err != nil {
			return providers.Machine{}, err
		}
	default:
		return providers.Machine{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	if _, err := p.ensureRunning(dir); err != nil {
		return providers.Machine{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	return p.machine(md, dir), nil
}

// makeNode allocates an address and writes the node directory atomically.
// The caller holds the cluster lock.
func (p *Provider) makeNode(req providers.CreateRequest, id string, pair addrPair, dir string) (MetaData, error) {
	nf, err := p.readNet(req.Cluster)
	if err != nil {
		return MetaData{}, err
	}
	used, err := p.usedAddrs(req.Cluster)
	if err != nil {
		return MetaData{}, err
	}
	name := req.Name()
	c, err := pickNodeOctet(nf, used, name, func(c int) string { return p.addr(nf.pair(), c) })
	if err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	md := MetaData{
		InstanceID:    id,
		LocalHostname: name,
		LocalIPv4:     p.addr(pair, c),
		Provider:      p.typ,
		Region:        Region,
		Cluster:       req.Cluster,
		Role:          req.Role,
		Slot:          req.Slot,
		Generation:    req.Generation,
		Created:       time.Now().UTC().Format(time.RFC3339),
		Tags: []string{
			providers.TagCluster + ":" + req.Cluster,
			providers.TagRole + ":" + req.Role,
			providers.TagSlot + ":" + strconv.Itoa(req.Slot),
			providers.TagGeneration + ":" + strconv.Itoa(req.Generation),
		},
		Image: req.Image,
		Size:  req.Size,
	}
	nodes := p.nodesDir(req.Cluster)
	if err := os.MkdirAll(nodes, 0o755); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	tmp, err := os.MkdirTemp(nodes, ".tmp-"+id+"-")
	if err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return MetaData{}, err
	}
	if err := writeAtomic(filepath.Join(tmp, MetaDataFile), append(b, '\n'), 0o644); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	if err := writeAtomic(filepath.Join(tmp, UserDataFile), []byte(req.UserData), 0o600); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, RootDir), 0o755); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return MetaData{}, fmt.Errorf("local: create %s/%s: %w", req.Cluster, id, err)
	}
	ok = true
	syncDir(nodes)
	nf.Leases[name] = c
	if err := p.writeNet(req.Cluster, nf); err != nil {
		// The address is recorded in meta-data.json, so allocation stays
		// correct; only the preference for a later rebuild is lost.
		p.log.Warn("could not record address lease", "cluster", req.Cluster, "node", name, "err", err)
	}
	p.log.Debug("created node directory", "cluster", req.Cluster, "machine", id, "address", md.LocalIPv4)
	return md, nil
}

// usedAddrs returns the addresses of every node directory of the cluster.
func (p *Provider) usedAddrs(cluster string) (map[string]bool, error) {
	used := map[string]bool{}
	ents, err := os.ReadDir(p.nodesDir(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return used, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local: read nodes of %s: %w", cluster, err)
	}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if md, err := ReadMetaData(filepath.Join(p.nodesDir(cluster), e.Name())); err == nil {
			used[md.LocalIPv4] = true
		}
	}
	return used, nil
}

// sweep removes leftovers of crashed creates and destroys. The caller holds
// the cluster lock, so nobody else is writing them.
func (p *Provider) sweep(cluster string) {
	ents, err := os.ReadDir(p.nodesDir(cluster))
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, ".destroy-") {
			if err := os.RemoveAll(filepath.Join(p.nodesDir(cluster), n)); err != nil {
				p.log.Warn("could not remove leftover node directory", "cluster", cluster, "dir", n, "err", err)
			}
		}
	}
}

func (p *Provider) machine(md MetaData, dir string) providers.Machine {
	created, _ := time.Parse(time.RFC3339, md.Created)
	st := providers.PowerOff
	if alive(dir) {
		st = providers.PowerOn
	}
	return providers.Machine{
		ID:         providers.MachineID(md.Cluster + "/" + md.InstanceID),
		Cluster:    md.Cluster,
		Role:       md.Role,
		Slot:       md.Slot,
		Generation: md.Generation,
		Name:       providers.NodeName(md.Role, md.Slot),
		Address:    md.LocalIPv4,
		State:      st,
		Created:    created,
		Region:     md.Region,
		Size:       md.Size,
		Image:      md.Image,
	}
}

// List returns every node directory of the cluster, every generation, sorted
// by name and generation. State is on when the node process is alive, off
// otherwise (also for a directory whose process was never started).
// Directories without readable meta-data are skipped with a warning.
func (p *Provider) List(ctx context.Context, cluster string) ([]providers.Machine, error) {
	if err := checkName("cluster", cluster); err != nil {
		return nil, err
	}
	out := []providers.Machine{}
	ents, err := os.ReadDir(p.nodesDir(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("local: list %s: %w", cluster, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		dir := filepath.Join(p.nodesDir(cluster), e.Name())
		md, err := ReadMetaData(dir)
		if err != nil {
			if _, serr := os.Stat(dir); serr != nil {
				continue // destroyed while we listed
			}
			p.log.Warn("skipping half-written node directory", "cluster", cluster, "dir", dir, "err", err)
			continue
		}
		if md.Cluster != cluster {
			p.log.Warn("skipping node directory of another cluster", "cluster", cluster, "dir", dir, "meta_cluster", md.Cluster)
			continue
		}
		out = append(out, p.machine(md, dir))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Generation < out[j].Generation
	})
	return out, nil
}

// Destroy stops the node (SIGTERM to its process group, SIGKILL after a short
// grace), waits until /proc shows every process of the node gone, then
// removes its directory and any VIP assignment it held. A machine that is
// already gone is not an error.
func (p *Provider) Destroy(ctx context.Context, id providers.MachineID) error {
	cluster, dir, err := p.resolve(id)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.stop(ctx, dir, stopGrace); err != nil {
		return fmt.Errorf("local: destroy %s: %w", id, err)
	}
	unlock, err := p.lockCluster(ctx, cluster)
	if err != nil {
		return fmt.Errorf("local: destroy %s: %w", id, err)
	}
	// A concurrent PowerOn may have started it again; stop it for good under
	// the lock, where nobody can start it.
	if err := p.stop(ctx, dir, 0); err != nil {
		unlock()
		return fmt.Errorf("local: destroy %s: %w", id, err)
	}
	name := filepath.Base(dir)
	gone := filepath.Join(filepath.Dir(dir), fmt.Sprintf(".destroy-%s-%d", name, time.Now().UnixNano()))
	if err := os.Rename(dir, gone); err != nil {
		unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("local: destroy %s: %w", id, err)
	}
	syncDir(filepath.Dir(dir))
	if err := p.dropHolder(cluster, name); err != nil {
		p.log.Warn("could not clear VIP assignments of destroyed machine", "cluster", cluster, "machine", name, "err", err)
	}
	unlock()
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("local: destroy %s: remove disk %s: %w", id, gone, err)
	}
	p.log.Debug("destroyed node", "cluster", cluster, "machine", name)
	return nil
}

// Fence kills every process of the node (SIGKILL to its process group and to
// each process whose environment names the node directory) and returns only
// once /proc shows none of them alive. The directory stays. A machine that is
// already off or gone is not an error.
func (p *Provider) Fence(ctx context.Context, id providers.MachineID) error {
	_, dir, err := p.resolve(id)
	if errors.Is(err, providers.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.stop(ctx, dir, 0); err != nil {
		return fmt.Errorf("local: fence %s: %w", id, err)
	}
	p.log.Debug("fenced node", "machine", id)
	return nil
}

// PowerOn starts a fenced (or never started) node again. It is a no-op when
// the node is running, and wraps providers.ErrNotFound for an unknown id.
func (p *Provider) PowerOn(ctx context.Context, id providers.MachineID) error {
	cluster, dir, err := p.resolve(id)
	if err != nil {
		return err
	}
	if p.command == nil {
		return fmt.Errorf("local: power on %s: no node command configured", id)
	}
	unlock, err := p.lockCluster(ctx, cluster)
	if err != nil {
		return fmt.Errorf("local: power on %s: %w", id, err)
	}
	defer unlock()
	if _, err := ReadMetaData(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("local: power on %s: %w", id, providers.ErrNotFound)
		}
		return fmt.Errorf("local: power on %s: %w", id, err)
	}
	if _, err := p.ensureRunning(dir); err != nil {
		return fmt.Errorf("local: power on %s: %w", id, err)
	}
	return nil
}
