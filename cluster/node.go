package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/hactl/hactl/plan"
)

// Node is one member of the control plane. Create it with New and run it
// with Run; the other methods are safe for concurrent use at any time.
type Node struct {
	cfg  Config
	log  *slog.Logger
	ms   *membership
	stop chan struct{}
	kick chan struct{}  // wakes the control loop before its next tick (buffer 1)
	wg   sync.WaitGroup // every goroutine the node starts

	netTrans  *gossipNet
	raftAddr  string
	serverTLS *tls.Config
	clientTLS *tls.Config
	stream    raft.StreamLayer // bound at New, consumed by the first raft
	store     *raftboltdb.BoltStore
	snaps     raft.SnapshotStore
	ran       atomic.Bool
	inv       inventory // the reconciler's last provider listing (control loop only)
	// electing: raft runs with the short election timeouts (see
	// tuneHeartbeat). Set by startRaft, then owned by the control loop.
	electing    bool
	electWake   *time.Timer   // wakes the control loop when a dead leader has been quiet for a lease
	electJitter time.Duration // added to that lease, drawn once per dead leader

	mu       sync.Mutex // guards the fields below
	meta     nodeMeta
	r        *raft.Raft
	fsm      *fsm
	ml       *memberlist.Memberlist
	local    []Event // decisions taken without the log
	held     map[string]bool
	fenced   bool // self-fenced
	tasks    map[string]bool
	hadQuor  bool
	noQuorum time.Time // since when quorum is missing (zero when present)
	quorum   bool
	barrier  uint64 // term for which the leader has applied a barrier
	lastLone time.Time
	noted    map[string]bool
	planned  plannedAt // the reconciler's last plan (leader only)
	lastShed time.Time // last leadership hand-off (LeaderAvoidsVIPs)
	paced    *pacedTransport
}

// New validates cfg, opens the raft store and binds the gossip and raft
// sockets (so Addr is known before Run). Run must be called to release them.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("node", cfg.Name)
	n := &Node{cfg: cfg, log: lg, stop: make(chan struct{}), kick: make(chan struct{}, 1), held: map[string]bool{}, tasks: map[string]bool{}, fsm: newFSM()}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s data dir: %w", cfg.Name, err)
	}
	var err error
	if n.serverTLS, n.clientTLS, err = cfg.TLS.tlsConfigs(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	ip := cfg.BindAddr.String()
	if cfg.GossipPort < 0 || cfg.GossipPort > 65535 {
		return nil, fmt.Errorf("node %s: gossip port %d out of range", cfg.Name, cfg.GossipPort)
	}
	n.netTrans, err = listenGossip(cfg.BindAddr, cfg.GossipPort, lg.With("lib", "memberlist"))
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	ts, err := listenTLS(net.JoinHostPort(ip, strconv.Itoa(cfg.RaftPort)), n.serverTLS, n.clientTLS)
	if err != nil {
		n.netTrans.Shutdown()
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	n.raftAddr = ts.Addr().String()
	n.stream = ts
	if n.store, err = raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db")); err != nil {
		ts.Close()
		n.netTrans.Shutdown()
		return nil, fmt.Errorf("node %s raft store: %w", cfg.Name, err)
	}
	if n.snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, n.hcLogger()); err != nil {
		n.store.Close()
		ts.Close()
		n.netTrans.Shutdown()
		return nil, fmt.Errorf("node %s snapshots: %w", cfg.Name, err)
	}
	formed, err := raft.HasExistingState(n.store, n.store, n.snaps)
	if err != nil {
		n.store.Close()
		ts.Close()
		n.netTrans.Shutdown()
		return nil, fmt.Errorf("node %s raft state: %w", cfg.Name, err)
	}
	n.meta = nodeMeta{Role: cfg.Role, Slot: cfg.Slot, Generation: cfg.Generation, RaftAddr: n.raftAddr,
		Voter: cfg.Voter, Witness: cfg.Witness, Formed: formed}
	n.ms = newMembership(cfg.Name, n.localMeta, lg, &n.wg, n.stop)
	n.ms.onDead = n.wake
	return n, nil
}

// GossipAddr is the host:port peers join.
func (n *Node) GossipAddr() string {
	return net.JoinHostPort(n.cfg.BindAddr.String(), strconv.Itoa(n.netTrans.port()))
}

// RaftAddr is the host:port of the raft transport.
func (n *Node) RaftAddr() string { return n.raftAddr }

// Name is the node's member name.
func (n *Node) Name() string { return n.cfg.Name }

// View returns the read-only membership view.
func (n *Node) View() View { return n.ms }

func serverID(name string, gen int) raft.ServerID {
	return raft.ServerID(fmt.Sprintf("%s@%d", name, gen))
}

// parseServerID splits "web-2@3".
func parseServerID(id raft.ServerID) (string, int) {
	name, g, ok := strings.Cut(string(id), "@")
	if !ok {
		return name, 0
	}
	gen, _ := strconv.Atoi(g)
	return name, gen
}

func (n *Node) localMeta() nodeMeta {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.meta
	m.VIPs = slices.Clone(m.VIPs)
	return m
}

// SetHealth publishes the node's health in gossip.
func (n *Node) SetHealth(h plan.Health) { n.updateMeta(func(m *nodeMeta) { m.Health = h }) }

// SetRevision publishes the configuration revision the node converged.
func (n *Node) SetRevision(rev string) { n.updateMeta(func(m *nodeMeta) { m.Revision = rev }) }

func (n *Node) updateMeta(f func(*nodeMeta)) {
	n.mu.Lock()
	old := n.meta
	old.VIPs = slices.Clone(old.VIPs)
	f(&n.meta)
	changed := !old.equal(n.meta)
	ml := n.ml
	n.mu.Unlock()
	if changed && ml != nil {
		if err := ml.UpdateNode(n.cfg.ProbeTimeout * 4); err != nil {
			n.log.Warn("gossip meta update", "err", err)
		}
	}
}

// pacer is the raft transport of the running raft.
func (n *Node) pacer() *pacedTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paced
}

func (n *Node) raft() (*raft.Raft, *fsm) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.r, n.fsm
}

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool {
	r, _ := n.raft()
	return r != nil && r.State() == raft.Leader
}

// Run starts gossip, raft and the control loop, and blocks until ctx is
// done. It then stops every goroutine it started, unbinds VIPs, shuts raft
// and gossip down without a graceful leave (a stopped node is a failed node
// to its peers), closes the store and returns. Run may be called once.
func (n *Node) Run(ctx context.Context) error {
	if !n.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("node %s: run called twice", n.cfg.Name)
	}
	defer n.store.Close()
	ml, err := n.startGossip()
	if err != nil {
		close(n.stop)
		n.stream.Close()
		n.netTrans.Shutdown()
		return err
	}
	defer ml.Shutdown()
	if err := n.startRaft(n.stream, false); err != nil {
		close(n.stop)
		n.stream.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.joinLoop(ctx, ml) }()
	loopDone := make(chan struct{})
	go func() { defer n.wg.Done(); defer close(loopDone); n.controlLoop(ctx) }()
	<-ctx.Done()
	<-loopDone
	close(n.stop)
	n.releaseAll("node stopping")
	r, _ := n.raft()
	if err := r.Shutdown().Error(); err != nil {
		n.log.Warn("raft shutdown", "err", err)
	}
	n.wg.Wait()
	return nil
}

func (n *Node) startGossip() (*memberlist.Memberlist, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = n.cfg.Name
	mc.BindAddr = n.cfg.BindAddr.String()
	mc.BindPort = n.netTrans.port()
	mc.AdvertiseAddr = mc.BindAddr
	mc.AdvertisePort = mc.BindPort
	kr, err := memberlist.NewKeyring(n.cfg.Keyring, n.cfg.Keyring[0])
	if err != nil {
		return nil, fmt.Errorf("node %s keyring: %w", n.cfg.Name, err)
	}
	mc.Keyring = kr
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate, mc.Events = n.ms, n.ms
	var tr memberlist.NodeAwareTransport = n.netTrans
	if n.cfg.WrapTransport != nil {
		tr = n.cfg.WrapTransport(tr)
	}
	mc.Transport = tr
	mc.ProbeInterval = n.cfg.ProbeInterval
	mc.ProbeTimeout = n.cfg.ProbeTimeout
	if n.cfg.SuspicionMult > 0 {
		mc.SuspicionMult = n.cfg.SuspicionMult
	}
	if n.cfg.IndirectChecks > 0 {
		mc.IndirectChecks = n.cfg.IndirectChecks
	}
	if n.cfg.GossipInterval > 0 {
		mc.GossipInterval = n.cfg.GossipInterval
	}
	mc.DeadNodeReclaimTime = n.cfg.DeadNodeReclaimTime
	// Gossip messages are a few hundred bytes on a LAN: LZW compression of
	// every ping and ack saved nothing and its allocations (a fresh table
	// per message) were most of an idle node's garbage. Peers still
	// decode compressed messages from nodes that send them.
	mc.EnableCompression = false
	mc.Logger = n.stdLogger("memberlist")
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("node %s gossip: %w", n.cfg.Name, err)
	}
	n.mu.Lock()
	n.ml = ml
	n.mu.Unlock()
	n.ms.mu.Lock()
	n.ms.ml = ml
	n.ms.mu.Unlock()
	return ml, nil
}

func (n *Node) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = serverID(n.cfg.Name, n.cfg.Generation)
	// A starting node knows no leader yet: it runs with the short election
	// timeouts until it hears from one (tuneHeartbeat).
	rc.HeartbeatTimeout, rc.ElectionTimeout = n.electionTimeouts()
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	if n.cfg.CommitTimeout > 0 {
		rc.CommitTimeout = n.cfg.CommitTimeout
	}
	if n.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	rc.Logger = n.hcLogger()
	return rc
}

func (n *Node) transport(s raft.StreamLayer) *pacedTransport {
	if n.cfg.WrapStream != nil {
		s = n.cfg.WrapStream(s)
	}
	return newPacedTransport(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s, MaxPool: 3, Timeout: 5 * time.Second, Logger: n.hcLogger(),
	}), n.cfg.NonvoterHeartbeat)
}

// startRaft starts raft on stream; with recover it first resets the voter
// set to this node alone (the lone-survivor path).
func (n *Node) startRaft(s raft.StreamLayer, recoverAlone bool) error {
	tr := n.transport(s)
	rc := n.raftConfig()
	f := newFSM()
	f.changed = n.wake
	if recoverAlone {
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(n.raftAddr)}}}
		if err := raft.RecoverCluster(rc, newFSM(), n.store, n.store, n.snaps, tr, conf); err != nil {
			tr.Close()
			return fmt.Errorf("node %s recover cluster: %w", n.cfg.Name, err)
		}
	}
	r, err := raft.NewRaft(rc, f, n.store, n.store, n.snaps, tr)
	if err != nil {
		tr.Close()
		return fmt.Errorf("node %s raft: %w", n.cfg.Name, err)
	}
	tr.leads(func(term uint64) bool { return r.State() == raft.Leader && r.CurrentTerm() == term })
	n.mu.Lock()
	n.r, n.fsm, n.paced = r, f, tr
	n.mu.Unlock()
	n.electing = true
	return nil
}

// joinLoop joins the configured and discovered peers, retrying while the
// node sees no other live member.
func (n *Node) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		if ml.NumMembers() < 2 {
			addrs := slices.Clone(n.cfg.Join)
			if n.cfg.Discover != nil {
				found, err := n.cfg.Discover(ctx)
				if err != nil {
					n.log.Warn("discover peers", "err", err)
				}
				addrs = append(addrs, found...)
			}
			self := n.GossipAddr()
			addrs = slices.DeleteFunc(addrs, func(a string) bool { return a == self })
			if len(addrs) > 0 {
				if k, err := ml.Join(addrs); err != nil && k == 0 {
					n.log.Debug("join", "peers", addrs, "err", err)
				}
			}
		}
		retry := n.cfg.JoinRetry
		if retry <= 0 {
			retry = 2 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

func (n *Node) controlLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.Tick)
	defer t.Stop()
	for {
		n.tick(ctx)
		r, _ := n.raft()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		case <-r.LeaderCh(): // leadership won or lost: retune heartbeats and act at once
		}
	}
}

// tuneHeartbeat sets raft's heartbeat and election timeouts for the part
// this node plays. It runs on every control-loop pass, at once when raft
// reports a leadership change and when gossip declares a member dead.
//   - Leading: LeaderHeartbeatTimeout, from which raft derives the heartbeat
//     period (one every LeaderHeartbeatTimeout/10, randomised up to 2×).
//   - Following a leader that gossip declares dead, or whose slot gossip
//     knows in a newer generation, and that has been quiet for a lease (plus
//     a random fifth of one, so that two followers do not switch together): the
//     short election timeouts (LeaderLeaseTimeout, the least raft accepts).
//     A reload that shortens the heartbeat timeout makes raft compare its
//     last contact with it at once, so the election starts a lease after
//     the last heartbeat instead of HeartbeatTimeout (randomised up to 2×)
//     after it. A leader that is only suspect, or a false death while
//     heartbeats still arrive, changes nothing.
//   - Knowing no leader (starting, or an election under way): the short
//     timeouts stay as they were set, without reloads.
//   - Following a leader that is alive: HeartbeatTimeout and ElectionTimeout,
//     the backstop when gossip cannot tell (raft cut off, gossip fine); a
//     non-voter, whose heartbeats come every NonvoterHeartbeat, waits twice
//     that (it never calls an election; the timeout only ends its leader).
func (n *Node) tuneHeartbeat(r *raft.Raft, nonvoter bool) {
	hb, el := n.cfg.HeartbeatTimeout, n.cfg.ElectionTimeout
	if r.State() == raft.Leader {
		n.electing = false
		if n.cfg.LeaderHeartbeatTimeout > 0 {
			hb, el = n.cfg.LeaderHeartbeatTimeout, max(el, n.cfg.LeaderHeartbeatTimeout)
		}
	} else if _, id := r.LeaderWithID(); id == "" {
		if n.electing {
			hb, el = n.electionTimeouts()
		}
	} else if !n.leaderGone(id) {
		n.electing, n.electJitter = false, 0
		if nonvoter {
			hb = max(hb, 2*n.cfg.NonvoterHeartbeat)
			el = max(el, hb)
		}
	} else {
		if n.electJitter == 0 {
			// Followers that heard the leader last at the same moment (it
			// had just been elected) would otherwise switch together and
			// split the vote; the later switch wins the election.
			n.electJitter = time.Duration(1 + rand.Int64N(max(1, int64(n.cfg.LeaderLeaseTimeout/5))))
		}
		// Switch once the leader has been quiet for a lease: raft checks
		// its last contact only when a reload shortens the heartbeat
		// timeout, so the switch itself must find the contact old enough.
		if quiet, after := time.Since(r.LastContact()), n.cfg.LeaderLeaseTimeout+n.electJitter; n.electing || quiet >= after {
			n.electing = true
			hb, el = n.electionTimeouts()
		} else {
			n.wakeAfter(after - quiet)
		}
	}
	rc := r.ReloadableConfig()
	if rc.HeartbeatTimeout == hb && rc.ElectionTimeout == el {
		return
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout = hb, el
	if err := r.ReloadConfig(rc); err != nil {
		n.log.Warn("raft timeouts", "heartbeat", hb, "election", el, "err", err)
	}
}

// wakeAfter runs the control loop's next pass after d (one pending timer;
// control loop only).
func (n *Node) wakeAfter(d time.Duration) {
	if n.electWake == nil {
		n.electWake = time.AfterFunc(d, n.wake)
		return
	}
	n.electWake.Reset(d)
}

// electionTimeouts are the heartbeat and election timeouts of a node that
// knows no live leader: LeaderLeaseTimeout for both, the shortest raft
// accepts (validate keeps it at most HeartbeatTimeout).
func (n *Node) electionTimeouts() (hb, el time.Duration) {
	return n.cfg.LeaderLeaseTimeout, n.cfg.LeaderLeaseTimeout
}

// leaderGone reports whether gossip declares the raft leader id dead or gone,
// or knows a newer generation of its slot.
func (n *Node) leaderGone(id raft.ServerID) bool {
	name, gen := parseServerID(id)
	m, ok := n.ms.member(name)
	if !ok {
		return false
	}
	return m.Generation > gen || (m.Generation == gen && (m.State == StateDead || m.State == StateLeft))
}

// wake runs the control loop's next pass now instead of at the next tick: a
// member died, or a fence or a VIP owner was applied to the log. It never
// blocks; wakes while a pass is pending coalesce.
func (n *Node) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// tick is one level-based pass: it looks at the world and acts on it.
func (n *Node) tick(ctx context.Context) {
	r, _ := n.raft()
	nonvoter := n.isNonvoter(r)
	n.tuneHeartbeat(r, nonvoter)
	now := time.Now()
	quorum := n.checkQuorum(r, nonvoter, now)
	n.watchdog(quorum, now)
	n.maybeBootstrap(r)
	n.claimVIPs(quorum)
	if r.State() == raft.Leader && quorum {
		n.leaderTick(ctx, r)
	} else if !quorum {
		n.noQuorumTick(ctx, r, now)
	}
}

// isNonvoter reports whether this node follows as a non-voter whose
// heartbeats the leader paces (Config.NonvoterHeartbeat).
func (n *Node) isNonvoter(r *raft.Raft) bool {
	if n.cfg.NonvoterHeartbeat <= 0 || r.State() != raft.Follower {
		return false
	}
	cf := r.GetConfiguration()
	if cf.Error() != nil {
		return false
	}
	self := serverID(n.cfg.Name, n.cfg.Generation)
	for _, s := range cf.Configuration().Servers {
		if s.ID == self {
			return s.Suffrage == raft.Nonvoter
		}
	}
	return false
}

// checkQuorum: a leader has quorum (raft steps a leader down once it cannot
// reach a majority for LeaderLeaseTimeout); a follower has it while it hears
// from a leader (within Config.contactWindow).
func (n *Node) checkQuorum(r *raft.Raft, nonvoter bool, now time.Time) bool {
	var q bool
	switch r.State() {
	case raft.Leader:
		q = true
	case raft.Follower:
		addr, _ := r.LeaderWithID()
		q = addr != "" && now.Sub(r.LastContact()) < n.cfg.contactWindow(nonvoter)
	}
	n.mu.Lock()
	n.quorum = q
	if q {
		n.noQuorum = time.Time{}
	} else if n.noQuorum.IsZero() {
		n.noQuorum = now
	}
	n.mu.Unlock()
	if q {
		n.updateMeta(func(m *nodeMeta) { m.Formed = true })
	}
	return q
}

// watchdog self-fences a node that had quorum and lost it for longer than
// SelfFenceTimeout, and lifts the fence when quorum is back.
func (n *Node) watchdog(quorum bool, now time.Time) {
	n.mu.Lock()
	had, fenced, since := n.hadQuor, n.fenced, n.noQuorum
	if quorum {
		n.hadQuor = true
	}
	n.mu.Unlock()
	switch {
	case quorum && fenced:
		n.mu.Lock()
		n.fenced = false
		n.mu.Unlock()
		n.note("self-fence", "quorum regained; exclusive services may resume")
		if n.cfg.SelfFence != nil {
			n.cfg.SelfFence(false)
		}
	case !quorum && had && !fenced && n.cfg.SelfFenceTimeout > 0 && now.Sub(since) >= n.cfg.SelfFenceTimeout:
		n.mu.Lock()
		n.fenced = true
		n.mu.Unlock()
		n.note("self-fence", fmt.Sprintf("no quorum for %s: releasing VIPs and stopping exclusive services", now.Sub(since).Round(time.Millisecond)))
		n.releaseAll("self-fenced")
		if n.cfg.SelfFence != nil {
			n.cfg.SelfFence(true)
		}
	}
}

// note records a local decision (not replicated) and logs it.
func (n *Node) note(kind, msg string) {
	n.log.Info(msg, "kind", kind)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.local = append(n.local, Event{Time: time.Now(), Kind: kind, Node: n.cfg.Name, Message: msg, Local: true})
	if len(n.local) > historyLimit {
		n.local = slices.Clone(n.local[len(n.local)-historyLimit:])
	}
}

// noteOnce notes a decision once per key (repeated refusals are not news).
func (n *Node) noteOnce(key, kind, msg string) {
	n.mu.Lock()
	seen := n.noted[key]
	if n.noted == nil {
		n.noted = map[string]bool{}
	}
	n.noted[key] = true
	n.mu.Unlock()
	if !seen {
		n.note(kind, msg)
	}
}

// maybeBootstrap forms a fresh cluster once BootstrapExpect voter-eligible
// members are alive and none of them already belongs to a cluster.
func (n *Node) maybeBootstrap(r *raft.Raft) {
	if n.cfg.BootstrapExpect == 0 || !n.cfg.Voter || n.localMeta().Formed {
		return
	}
	var voters []Member
	for _, m := range n.ms.Members() {
		if m.State != StateAlive || !m.Voter || m.RaftAddr == "" {
			continue
		}
		if m.Formed && m.Name != n.cfg.Name {
			return // an existing cluster will add us
		}
		voters = append(voters, m)
	}
	if len(voters) < n.cfg.BootstrapExpect {
		return
	}
	voters = voters[:n.cfg.BootstrapExpect] // Members is sorted by name
	if !slices.ContainsFunc(voters, func(m Member) bool { return m.Name == n.cfg.Name }) {
		return
	}
	var conf raft.Configuration
	for _, m := range voters {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: serverID(m.Name, m.Generation), Address: raft.ServerAddress(m.RaftAddr)})
	}
	if err := r.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Warn("bootstrap", "err", err)
		return
	}
	n.note("bootstrap", fmt.Sprintf("bootstrapped voter set of %d", len(conf.Servers)))
	n.updateMeta(func(m *nodeMeta) { m.Formed = true })
}

// apply proposes one command through the log (leader only). r is nil
// until Run has started raft: the agent may record an event (its data
// restored at first boot) before that, and gets ErrNotLeader, not a panic.
func (n *Node) apply(r *raft.Raft, c command) error {
	if r == nil {
		return fmt.Errorf("node %s: %s command before raft started: %w", n.cfg.Name, c.Op, ErrNotLeader)
	}
	c.By = n.cfg.Name
	if c.Time.IsZero() {
		c.Time = time.Now().UTC()
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode %s command: %w", c.Op, err)
	}
	f := r.Apply(b, 5*time.Second)
	if err := f.Error(); err != nil {
		return fmt.Errorf("apply %s: %w", c.Op, err)
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return err
	}
	if c.Op != opCommit {
		// Carry the new commit index to the followers now (a VIP holder
		// binds, a primary starts, only once its applied log says so)
		// instead of at the next idle AppendEntries, up to 2×CommitTimeout
		// later. The record itself committed; a lost marker only delays.
		if err := n.apply(r, command{Op: opCommit}); err != nil {
			n.log.Debug("commit marker", "after", c.Op, "err", err)
		}
	}
	return nil
}

// Record appends an event to the replicated history (leader only).
func (n *Node) Record(kind, node, msg string) error {
	r, _ := n.raft()
	return n.apply(r, command{Op: opEvent, Kind: kind, Node: node, Message: msg})
}

// SetPrimary records the primary of a data set (leader only).
func (n *Node) SetPrimary(data, node string) error {
	r, _ := n.raft()
	return n.apply(r, command{Op: opPrimary, Data: data, Node: node})
}

// Primary returns the node the applied log names for key (SetPrimary),
// "" when none. On a follower it is the log as applied here, which may
// lag the leader's a little, and is stale without quorum.
func (n *Node) Primary(key string) string {
	_, f := n.raft()
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.Primaries[key]
}

func (n *Node) stdLogger(name string) *log.Logger {
	return log.New(levelWriter{n.log.With("lib", name)}, "", 0)
}

func (n *Node) hcLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, DisableTime: true, Output: levelWriter{n.log.With("lib", "raft")}})
}

// levelWriter forwards memberlist's and raft's text log lines to slog, at
// the level their "[LEVEL]" prefix names (debug when there is none).
type levelWriter struct{ l *slog.Logger }

func (w levelWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	lvl := slog.LevelDebug
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{{"[ERR", slog.LevelError}, {"[WARN", slog.LevelWarn}, {"[INFO", slog.LevelInfo}} {
		if i := strings.Index(msg, p.prefix); i >= 0 && i < 4 {
			lvl = p.level
			if j := strings.IndexByte(msg, ']'); j > i {
				msg = strings.TrimSpace(msg[j+1:])
			}
			break
		}
	}
	w.l.Log(context.Background(), lvl, msg)
	return len(b), nil
}

var _ io.Writer = levelWriter{}
