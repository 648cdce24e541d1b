package local

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hactl/hactl/providers"
)

// Address plan: a cluster owns 127.A.B.0/24 with A in [firstA, lastA] (never
// 127.0.x.x, where the usual loopback services live). Nodes get the last
// octet in [nodeFirst, nodeLast], VIPs in [vipFirst, vipLast].
const (
	firstA    = 16
	lastA     = 254
	nodeFirst = 10
	nodeLast  = 199
	vipFirst  = 200
	vipLast   = 250

	// NetFile records a cluster's address pair, node leases and VIP names.
	NetFile = "net.json"
	// VIPsFile records the desired holder of each VIP. A node agent finds it
	// at $HACTL_NODE_DIR/../../vips.json.
	VIPsFile = "vips.json"
)

type addrPair struct{ A, B int }

// addr is the address with last octet c in the pair's /24.
func (p *Provider) addr(ap addrPair, c int) string {
	return fmt.Sprintf("%d.%d.%d.%d", p.first, ap.A, ap.B, c)
}

// netFile is the content of <StateDir>/<cluster>/net.json.
type netFile struct {
	Prefix string         `json:"prefix"` // "127.A.B", informational
	A      int            `json:"a"`
	B      int            `json:"b"`
	Leases map[string]int `json:"leases"` // node name (web-2) → last octet it had
	VIPs   map[string]int `json:"vips"`   // VIP name → last octet
}

func (nf *netFile) pair() addrPair { return addrPair{nf.A, nf.B} }

// pairSpace is the number of possible (A, B) pairs.
const pairSpace = (lastA - firstA + 1) * 256

func pairAt(i int) addrPair { return addrPair{A: firstA + i/256, B: i % 256} }

// hashPair is the preferred pair of a cluster name.
func hashPair(cluster string) int {
	h := sha256.Sum256([]byte(cluster))
	return int(binary.BigEndian.Uint32(h[:4]) % pairSpace)
}

func (p *Provider) netPath(cluster string) string {
	return filepath.Join(p.clusterDir(cluster), NetFile)
}

// readNet reads a cluster's net.json; fs.ErrNotExist when it has none yet.
func (p *Provider) readNet(cluster string) (*netFile, error) {
	b, err := os.ReadFile(p.netPath(cluster))
	if err != nil {
		return nil, err
	}
	nf := &netFile{}
	if err := json.Unmarshal(b, nf); err != nil {
		return nil, fmt.Errorf("local: %s: %w", p.netPath(cluster), err)
	}
	if nf.A < firstA || nf.A > lastA || nf.B < 0 || nf.B > 255 {
		return nil, fmt.Errorf("local: %s: address pair 127.%d.%d out of range", p.netPath(cluster), nf.A, nf.B)
	}
	if nf.Leases == nil {
		nf.Leases = map[string]int{}
	}
	if nf.VIPs == nil {
		nf.VIPs = map[string]int{}
	}
	return nf, nil
}

func (p *Provider) writeNet(cluster string, nf *netFile) error {
	nf.Prefix = fmt.Sprintf("%d.%d.%d", p.first, nf.A, nf.B)
	return writeJSON(p.netPath(cluster), nf)
}

// ensurePair returns the cluster's address pair, allocating and recording it
// on first use: the pair derived from a hash of the name, or the next free
// one when another cluster under the state directory holds it.
func (p *Provider) ensurePair(ctx context.Context, cluster string) (addrPair, error) {
	if nf, err := p.readNet(cluster); err == nil {
		return nf.pair(), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return addrPair{}, err
	}
	unlock, err := p.lockState(ctx)
	if err != nil {
		return addrPair{}, fmt.Errorf("local: allocate addresses for %s: %w", cluster, err)
	}
	defer unlock()
	if nf, err := p.readNet(cluster); err == nil {
		return nf.pair(), nil
	}
	taken := map[addrPair]bool{}
	others, err := p.clusters()
	if err != nil {
		return addrPair{}, err
	}
	for _, c := range others {
		if c == cluster {
			continue
		}
		if nf, err := p.readNet(c); err == nil {
			taken[nf.pair()] = true
		}
	}
	// Clusters of other state directories (another user's, or a test's
	// temporary one) are invisible above; their running nodes are not.
	for ap := range pairsBound() {
		taken[ap] = true
	}
	// Clusters of other state directories that have allocated a pair but
	// not bound it yet are seen through the machine-wide claims.
	claims, unlockClaims := p.openClaims(ctx)
	defer unlockClaims()
	netPath, _ := filepath.Abs(p.netPath(cluster))
	i := hashPair(cluster)
	for n := 0; ; n++ {
		if n == pairSpace {
			return addrPair{}, fmt.Errorf("local: allocate addresses for %s: every 127.A.B pair is taken", cluster)
		}
		if ap := pairAt(i); !taken[ap] && (p.taken == nil || !p.taken(ap.A, ap.B)) && claims.claim(ap, netPath) {
			break
		}
		i = (i + 1) % pairSpace
	}
	ap := pairAt(i)
	if err := os.MkdirAll(p.clusterDir(cluster), 0o755); err != nil {
		return addrPair{}, fmt.Errorf("local: allocate addresses for %s: %w", cluster, err)
	}
	nf := &netFile{A: ap.A, B: ap.B, Leases: map[string]int{}, VIPs: map[string]int{}}
	if err := p.writeNet(cluster, nf); err != nil {
		return addrPair{}, fmt.Errorf("local: allocate addresses for %s: %w", cluster, err)
	}
	return ap, nil
}

// pairClaims is the machine-wide record of allocated address pairs: one file
// per pair in a directory shared by every state directory on the machine,
// holding the absolute path of the net.json that owns it. Used under the
// claims lock only. A nil *pairClaims (the directory cannot be used, e.g.
// another user owns it) claims everything: allocation then relies on the
// state directory and bound sockets alone, as before claims existed.
type pairClaims struct{ dir string }

// claimsDir is where the claims live; a variable so tests can move it.
var claimsDir = filepath.Join(os.TempDir(), "hactl-local-pairs")

// openClaims takes the machine-wide claims lock. Failing to, it returns nil
// claims and a no-op unlock.
func (p *Provider) openClaims(ctx context.Context) (*pairClaims, func()) {
	if err := os.MkdirAll(claimsDir, 0o1777); err != nil {
		return nil, func() {}
	}
	unlock, err := p.lock(ctx, filepath.Join(claimsDir, ".lock"))
	if err != nil {
		return nil, func() {}
	}
	pc := &pairClaims{dir: claimsDir}
	pc.prune()
	return pc, unlock
}

// prune removes the claims whose owner's net.json is gone (its state
// directory was deleted, as every test's temporary one is), so the claims
// directory holds about as many files as there are live clusters instead
// of one per pair ever allocated. Best effort; used under the claims lock.
func (pc *pairClaims) prune() {
	ents, err := os.ReadDir(pc.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "127.") {
			continue
		}
		f := filepath.Join(pc.dir, e.Name())
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		owner := strings.TrimSpace(string(b))
		if _, err := os.Stat(owner); errors.Is(err, fs.ErrNotExist) {
			os.Remove(f)
		}
	}
}

// claim records ap for the cluster whose net.json is at netPath and reports
// whether it did. A claim is stale, and taken over, when the net.json it
// names no longer exists or records another pair (its cluster was destroyed
// or its state directory deleted).
func (pc *pairClaims) claim(ap addrPair, netPath string) bool {
	if pc == nil {
		return true
	}
	f := filepath.Join(pc.dir, fmt.Sprintf("127.%d.%d", ap.A, ap.B))
	if b, err := os.ReadFile(f); err == nil {
		owner := strings.TrimSpace(string(b))
		if owner != netPath && claimLive(owner, ap) {
			return false
		}
	}
	return os.WriteFile(f, []byte(netPath+"\n"), 0o644) == nil
}

// claimLive reports whether the net.json at path still records pair ap.
func claimLive(path string, ap addrPair) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	var nf netFile
	if json.Unmarshal(b, &nf) != nil {
		return true // being written: assume live
	}
	return nf.A == ap.A && nf.B == ap.B
}

// pairsBound returns the 127.A.B pairs (A in range) that have a bound socket
// in this network namespace, from /proc/net/{tcp,udp}. Best effort: an
// unreadable file yields nothing.
func pairsBound() map[addrPair]bool {
	out := map[addrPair]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/udp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 2 {
				continue
			}
			host, _, ok := strings.Cut(fields[1], ":")
			if !ok || len(host) != 8 {
				continue
			}
			v, err := strconv.ParseUint(host, 16, 32)
			if err != nil {
				continue
			}
			// The kernel prints the address as a native-endian integer
			// holding the network-order bytes.
			var ip [4]byte
			binary.NativeEndian.PutUint32(ip[:], uint32(v))
			if ip[0] == 127 && int(ip[1]) >= firstA && int(ip[1]) <= lastA {
				out[addrPair{int(ip[1]), int(ip[2])}] = true
			}
		}
	}
	return out
}

// pickNodeOctet chooses a node's last octet: the one its name had before if
// no existing node directory uses it, else the lowest one neither used nor
// leased to another name, else the lowest one not used.
func pickNodeOctet(nf *netFile, used map[string]bool, name string, addr func(c int) string) (int, error) {
	if c, ok := nf.Leases[name]; ok && c >= nodeFirst && c <= nodeLast && !used[addr(c)] {
		return c, nil
	}
	leased := map[int]bool{}
	for n, c := range nf.Leases {
		if n != name {
			leased[c] = true
		}
	}
	for c := nodeFirst; c <= nodeLast; c++ {
		if !used[addr(c)] && !leased[c] {
			return c, nil
		}
	}
	for c := nodeFirst; c <= nodeLast; c++ {
		if !used[addr(c)] {
			return c, nil
		}
	}
	return 0, fmt.Errorf("no free node address in %s-%d", addr(nodeFirst), nodeLast)
}

// AllocateVIP returns the VIP address for name in cluster: 127.A.B.C with C
// in 200..250, the same address every time for the same name.
func (p *Provider) AllocateVIP(cluster, name string) (string, error) {
	if err := checkName("cluster", cluster); err != nil {
		return "", err
	}
	if err := checkName("vip", name); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := p.ensurePair(ctx, cluster); err != nil {
		return "", err
	}
	unlock, err := p.lockCluster(ctx, cluster)
	if err != nil {
		return "", fmt.Errorf("local: allocate vip %s/%s: %w", cluster, name, err)
	}
	defer unlock()
	nf, err := p.readNet(cluster)
	if err != nil {
		return "", err
	}
	if c, ok := nf.VIPs[name]; ok {
		return p.addr(nf.pair(), c), nil
	}
	taken := map[int]bool{}
	for _, c := range nf.VIPs {
		taken[c] = true
	}
	for c := vipFirst; c <= vipLast; c++ {
		if !taken[c] {
			nf.VIPs[name] = c
			if err := p.writeNet(cluster, nf); err != nil {
				return "", fmt.Errorf("local: allocate vip %s/%s: %w", cluster, name, err)
			}
			return p.addr(nf.pair(), c), nil
		}
	}
	return "", fmt.Errorf("local: allocate vip %s/%s: all %d VIP addresses are taken", cluster, name, vipLast-vipFirst+1)
}

// vipRef resolves what a caller passes as a VIP to its cluster and address.
// Accepted forms:
//   - an address: from AllocateVIP, or any 127.A.B.C with C in 200..250 of a
//     cluster's pair (a VIP address declared in HCL);
//   - a name ("lb", as the planner uses when the provider allocates), or
//     "<cluster>/<name>", allocated with AllocateVIP on first assignment.
//
// cluster is the machine's cluster when known ("" for VIPHolder). With
// assign, a declared address or a new name is recorded in net.json. An
// address or name that no cluster knows yields ("", "", nil) without assign
// when it is a name, and an error wrapping providers.ErrNotFound otherwise.
func (p *Provider) vipRef(ctx context.Context, vip, cluster string, assign bool) (cl, addr string, err error) {
	if a, perr := netip.ParseAddr(vip); perr == nil {
		var o [4]byte
		if a.Is4() {
			o = a.As4()
		}
		if int(o[0]) != p.first || o[3] < vipFirst || o[3] > vipLast {
			return "", "", fmt.Errorf("%s: vip %s: %s VIPs are %d.A.B.%d-%d of the cluster's pair; omit the address to let the provider allocate one", p.typ, vip, p.typ, p.first, vipFirst, vipLast)
		}
		clusters, err := p.clusters()
		if err != nil {
			return "", "", err
		}
		for _, c := range clusters {
			nf, err := p.readNet(c)
			if err != nil || nf.A != int(o[1]) || nf.B != int(o[2]) {
				continue
			}
			if cluster != "" && c != cluster {
				return "", "", fmt.Errorf("local: vip %s belongs to cluster %s, not %s", vip, c, cluster)
			}
			if assign {
				if err := p.recordVIP(ctx, c, vip, int(o[3])); err != nil {
					return "", "", err
				}
			}
			return c, a.String(), nil
		}
		return "", "", fmt.Errorf("local: vip %s is in no cluster's address range: %w", vip, providers.ErrNotFound)
	}
	name := vip
	if c, n, ok := strings.Cut(vip, "/"); ok {
		if cluster != "" && c != cluster {
			return "", "", fmt.Errorf("local: vip %s belongs to cluster %s, not %s", vip, c, cluster)
		}
		cluster, name = c, n
	}
	if err := checkName("vip", name); err != nil {
		return "", "", err
	}
	if assign {
		if cluster == "" {
			return "", "", fmt.Errorf("local: vip %s: no cluster to allocate it in", vip)
		}
		addr, err := p.AllocateVIP(cluster, name)
		return cluster, addr, err
	}
	var found []string
	var addrs []string
	clusters := []string{cluster}
	if cluster == "" {
		if clusters, err = p.clusters(); err != nil {
			return "", "", err
		}
	}
	for _, c := range clusters {
		if nf, err := p.readNet(c); err == nil {
			if oc, ok := nf.VIPs[name]; ok {
				found = append(found, c)
				addrs = append(addrs, p.addr(nf.pair(), oc))
			}
		}
	}
	switch len(found) {
	case 0:
		return "", "", nil
	case 1:
		return found[0], addrs[0], nil
	}
	return "", "", fmt.Errorf("local: vip name %s is ambiguous (clusters %s): qualify it as <cluster>/%s", name, strings.Join(found, ", "), name)
}

// recordVIP records a declared VIP address in the cluster's net.json (under
// the address as its name) unless an allocated name already has it.
func (p *Provider) recordVIP(ctx context.Context, cluster, addr string, octet int) error {
	unlock, err := p.lockCluster(ctx, cluster)
	if err != nil {
		return fmt.Errorf("local: record vip %s: %w", addr, err)
	}
	defer unlock()
	nf, err := p.readNet(cluster)
	if err != nil {
		return err
	}
	for _, c := range nf.VIPs {
		if c == octet {
			return nil
		}
	}
	nf.VIPs[addr] = octet
	return p.writeNet(cluster, nf)
}

// vipName returns the name net.json records for a VIP address.
func vipName(nf *netFile, addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return ""
	}
	oc := int(a.As4()[3])
	for n, c := range nf.VIPs {
		if c == oc {
			return n
		}
	}
	return ""
}

// vipsFile is the content of <StateDir>/<cluster>/vips.json.
type vipsFile struct {
	VIPs map[string]vipEntry `json:"vips"` // address → assignment
}

type vipEntry struct {
	Name    string `json:"name"`
	Holder  string `json:"holder"` // instance-id (node directory name) of the holder
	Updated string `json:"updated"`
}

func (p *Provider) vipsPath(cluster string) string {
	return filepath.Join(p.clusterDir(cluster), VIPsFile)
}

func (p *Provider) readVIPs(cluster string) (*vipsFile, error) {
	vf := &vipsFile{VIPs: map[string]vipEntry{}}
	b, err := os.ReadFile(p.vipsPath(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return vf, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, vf); err != nil {
		return nil, fmt.Errorf("local: %s: %w", p.vipsPath(cluster), err)
	}
	if vf.VIPs == nil {
		vf.VIPs = map[string]vipEntry{}
	}
	return vf, nil
}

// AssignVIP records id as the desired holder of vip in vips.json. The holder's
// agent binds the address when it runs; the previous holder's agent releases
// it when it sees the change. vip is an address (allocated, or declared in the
// cluster's VIP range) or a VIP name, which is allocated on first use; see
// vipRef. id must be a machine of the VIP's cluster.
func (p *Provider) AssignVIP(ctx context.Context, vip string, id providers.MachineID) error {
	cluster, dir, err := p.resolve(id)
	if err != nil {
		return fmt.Errorf("local: assign vip %s: %w", vip, err)
	}
	cluster, addr, err := p.vipRef(ctx, vip, cluster, true)
	if err != nil {
		return err
	}
	mid := filepath.Base(dir)
	unlock, err := p.lockCluster(ctx, cluster)
	if err != nil {
		return fmt.Errorf("local: assign vip %s: %w", vip, err)
	}
	defer unlock()
	if _, err := ReadMetaData(dir); err != nil {
		return fmt.Errorf("local: assign vip %s to %s: %w", vip, id, providers.ErrNotFound)
	}
	nf, err := p.readNet(cluster)
	if err != nil {
		return err
	}
	vf, err := p.readVIPs(cluster)
	if err != nil {
		return err
	}
	if e, ok := vf.VIPs[addr]; ok && e.Holder == mid {
		return nil
	}
	vf.VIPs[addr] = vipEntry{Name: vipName(nf, addr), Holder: mid, Updated: time.Now().UTC().Format(time.RFC3339)}
	if err := writeJSON(p.vipsPath(cluster), vf); err != nil {
		return fmt.Errorf("local: assign vip %s: %w", vip, err)
	}
	p.log.Debug("assigned vip", "cluster", cluster, "vip", addr, "holder", mid)
	return nil
}

// VIPHolder returns the machine recorded as the holder of vip (an address or
// a name, see vipRef), "" when none.
func (p *Provider) VIPHolder(ctx context.Context, vip string) (providers.MachineID, error) {
	cluster, addr, err := p.vipRef(ctx, vip, "", false)
	if err != nil || cluster == "" {
		return "", err
	}
	vf, err := p.readVIPs(cluster)
	if err != nil {
		return "", err
	}
	h := vf.VIPs[addr].Holder
	if h == "" {
		return "", nil
	}
	return providers.MachineID(cluster + "/" + h), nil
}

// dropHolder removes the VIP assignments held by machine id. The caller
// holds the cluster lock.
func (p *Provider) dropHolder(cluster, id string) error {
	vf, err := p.readVIPs(cluster)
	if err != nil {
		return err
	}
	var drop []string
	for a, e := range vf.VIPs {
		if e.Holder == id {
			drop = append(drop, a)
		}
	}
	if len(drop) == 0 {
		return nil
	}
	sort.Strings(drop)
	for _, a := range drop {
		delete(vf.VIPs, a)
	}
	return writeJSON(p.vipsPath(cluster), vf)
}
