package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/lang"
)

// ErrNoControlPlane is returned by ClusterConfig when the node was booted
// without the control plane's secrets (no gossip key or no cluster CA): the
// agent then runs alone, with a static membership of itself.
var ErrNoControlPlane = errors.New("no control-plane secrets (gossip keys and cluster CA)")

// ClusterConfig builds this node's control-plane configuration from the
// agent configuration, its identity and the secrets user-data wrote into
// SecretsDir:
//
//   - gossip and raft bind on the node's address, on Gossip.Port and
//     Raft.Port; the keyring is Gossip.Keys;
//   - the node issues its own raft TLS certificate from the cluster CA
//     (SecretsDir/ca.crt and ca.key) at every boot, for its name and address;
//   - join addresses are Gossip.Join (host or host:port; the gossip port is
//     added when missing);
//   - raft's data lives in <root>/var/lib/hactl/raft;
//   - with Raft.Voters set, the node is voter-eligible when its name is
//     listed, bootstraps with all of them, and the voter set never grows
//     beyond them; without it, Raft.Voter and Raft.BootstrapExpect apply;
//   - VIPs become cluster.VIPSpec.
//
// The caller adds the logger, Discover, the provider, the reconciler and the
// callbacks. It returns ErrNoControlPlane when the secrets are absent.
func ClusterConfig(cfg Config, id Identity) (cluster.Config, error) {
	cfg = cfg.WithDefaults()
	cc := cluster.DefaultConfig()
	secrets, err := underRoot(id.Root, cfg.SecretsDir)
	if err != nil {
		return cc, err
	}
	caCert, err1 := os.ReadFile(filepath.Join(secrets, SecretCACert))
	caKey, err2 := os.ReadFile(filepath.Join(secrets, SecretCAKey))
	if len(cfg.Gossip.Keys) == 0 || errors.Is(err1, fs.ErrNotExist) || errors.Is(err2, fs.ErrNotExist) {
		return cc, ErrNoControlPlane
	}
	if err := errors.Join(err1, err2); err != nil {
		return cc, fmt.Errorf("node %s: cluster ca: %w", id.Name, err)
	}
	addr, err := netip.ParseAddr(id.Address)
	if err != nil {
		return cc, fmt.Errorf("node %s: address %q: %w", id.Name, id.Address, err)
	}
	ca, err := cluster.LoadCA(caCert, caKey)
	if err != nil {
		return cc, fmt.Errorf("node %s: %s: %w", id.Name, filepath.Join(secrets, SecretCACert), err)
	}
	files, err := ca.Issue(id.Name, net.IP(addr.AsSlice()))
	if err != nil {
		return cc, fmt.Errorf("node %s: %w", id.Name, err)
	}
	for i, k := range cfg.Gossip.Keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			return cc, fmt.Errorf("node %s: gossip.keys[%d]: %w", id.Name, i, err)
		}
		cc.Keyring = append(cc.Keyring, b)
	}
	cc.Name, cc.Role, cc.Slot, cc.Cluster = id.Name, id.Role, id.Slot, cfg.Cluster
	if id.Generation > 0 {
		cc.Generation = id.Generation
	}
	cc.BindAddr, cc.GossipPort, cc.RaftPort = addr, cfg.Gossip.Port, cfg.Raft.Port
	cc.TLS = files
	for _, j := range cfg.Gossip.Join {
		cc.Join = append(cc.Join, withPort(j, cfg.Gossip.Port))
	}
	if cc.DataDir, err = underRoot(id.Root, "/var/lib/hactl/raft"); err != nil {
		return cc, err
	}
	switch {
	case len(cfg.Raft.Voters) > 0:
		cc.Voter = slices.Contains(cfg.Raft.Voters, id.Name)
		cc.MaxVoters = len(cfg.Raft.Voters)
		cc.BootstrapExpect = 0
		if cc.Voter {
			cc.BootstrapExpect = len(cfg.Raft.Voters)
		}
		if b := cfg.Raft.BootstrapExpect; b > 0 && cc.Voter {
			cc.BootstrapExpect = min(b, cc.MaxVoters)
		}
	default:
		if cfg.Raft.Voter != nil {
			cc.Voter = *cfg.Raft.Voter
		}
		cc.BootstrapExpect = cfg.Raft.BootstrapExpect
		cc.MaxVoters = max(cc.MaxVoters, cc.BootstrapExpect)
	}
	for _, v := range cfg.VIPs {
		cc.VIPs = append(cc.VIPs, cluster.VIPSpec{Address: v.Address, Role: v.Role, Failback: v.Failback, FailbackDelay: v.FailbackDelay.D()})
	}
	return cc, nil
}

// withPort adds port to a join address that has none.
func withPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(port))
}

// MembersOf returns the facts' membership function over a cluster view:
// members alive (or merely suspected) by role, ordered by slot. Dead and
// departed members are left out, so templates such as the lb's backend list
// follow membership. self is always included.
func MembersOf(v cluster.View, self Identity) func() map[string][]lang.Member {
	return func() map[string][]lang.Member {
		out := map[string][]lang.Member{}
		seen := false
		for _, m := range v.Members() {
			if m.State != cluster.StateAlive && m.State != cluster.StateSuspect {
				continue
			}
			if m.Role == "" {
				continue
			}
			if m.Name == self.Name {
				seen = true
			}
			out[m.Role] = append(out[m.Role], lang.Member{Name: m.Name, Address: m.Addr.Addr().String(), Slot: m.Slot})
		}
		if !seen {
			out[self.Role] = append(out[self.Role], lang.Member{Name: self.Name, Address: self.Address, Slot: self.Slot})
		}
		for _, ms := range out {
			slices.SortFunc(ms, func(a, b lang.Member) int {
				if d := a.Slot - b.Slot; d != 0 {
					return d
				}
				return strings.Compare(a.Name, b.Name)
			})
		}
		return out
	}
}

// FollowMembers re-converges the node soon after membership changes, and
// pulls at once when a peer has converged a revision this node does not
// know. Every change of the view is debounced (a burst of joins becomes one
// run); then:
//
//   - when the membership the facts would carry differs from the last one
//     followed, the agent is notified;
//   - when a live peer gossips a converged revision that is neither this
//     node's last good revision, nor its last fetched tip, nor one it
//     refused, nor one it was already notified about, the agent is notified
//     (once per revision). So a revision that `hactl apply` or a notified
//     node converged reaches every node within a gossip round instead of
//     at its next interval. The pull still goes through the node's own
//     remotes and signature check: gossip only says "look now". A peer on
//     an older revision costs at most one pull that finds nothing new.
//
// It returns when ctx is done or the view stops.
func (a *Agent) FollowMembers(ctx context.Context, v cluster.View, debounce time.Duration) {
	evs := v.Events(ctx)
	last := membersKey(a.members())
	seen := map[string]bool{}
	var t *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case _, ok := <-evs:
			if !ok {
				if t != nil {
					t.Stop()
				}
				return
			}
			if t == nil {
				t = time.NewTimer(debounce)
			} else {
				t.Reset(debounce)
			}
			fire = t.C
		case <-fire:
			fire = nil
			notify := false
			if k := membersKey(a.members()); k != last {
				last = k
				a.log.Info("membership changed; converging again")
				notify = true
			}
			if rev, peer := a.peerRevision(v.Members(), seen); rev != "" {
				a.log.Info("a peer converged a revision this node does not have; pulling now", "peer", peer, "revision", short(rev))
				notify = true
			}
			if notify {
				a.Notify()
			}
		}
	}
}

// peerRevision returns the first revision a live peer gossips that this
// node does not know (see FollowMembers) and the peer's name, and marks it
// seen; "" when there is none.
func (a *Agent) peerRevision(ms []cluster.Member, seen map[string]bool) (rev, peer string) {
	a.mu.Lock()
	known := map[string]bool{a.st.LastGood: true, a.st.Tip: true}
	for _, r := range a.st.Refused {
		known[r.Commit] = true
	}
	a.mu.Unlock()
	for _, m := range ms {
		if m.Name == a.id.Name || m.State != cluster.StateAlive || m.Revision == "" || known[m.Revision] || seen[m.Revision] {
			continue
		}
		if len(seen) >= 256 {
			clear(seen) // bounded; a forgotten revision costs one more no-op pull
		}
		seen[m.Revision] = true
		return m.Revision, m.Name
	}
	return "", ""
}

func membersKey(ms map[string][]lang.Member) string {
	roles := make([]string, 0, len(ms))
	for r := range ms {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	var b strings.Builder
	for _, r := range roles {
		b.WriteString(r)
		for _, m := range ms[r] {
			fmt.Fprintf(&b, " %s=%s", m.Name, m.Address)
		}
		b.WriteByte(';')
	}
	return b.String()
}
