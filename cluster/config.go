package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// Config configures one Node. Start from DefaultConfig and set the identity,
// addresses and secrets. New validates it and never mutates it.
type Config struct {
	// Identity. Name is "<role>-<slot>" and is the gossip member name.
	Name       string
	Role       string
	Slot       int
	Generation int // rebuild counter of the slot (0 when unknown; a rebuilt slot's is higher)
	// Cluster is the cluster name (provider tag hactl-cluster).
	Cluster string

	// Voter makes this node eligible for the raft voter set.
	Voter bool
	// Witness marks a member that votes and serves nothing: it is never a
	// VIP holder, a data primary or a rebuild executor's target.
	Witness bool

	// BindAddr is the IP gossip and raft listen on (a 127.x.y.z loopback
	// address for local nodes). GossipPort and RaftPort 0 pick free ports at New.
	BindAddr   netip.Addr
	GossipPort int
	RaftPort   int

	// Keyring is the gossip encryption keyring: the first key encrypts, all
	// decrypt (16, 24 or 32 bytes each; see GenerateKeyring). Required.
	Keyring [][]byte
	// TLS holds the PEM-encoded cluster CA certificate and this node's
	// certificate and key (see GenerateCA and CA.Issue). Required.
	TLS TLSFiles

	// Join lists gossip addresses (host:port) of peers to join. Discover, when
	// set, is called for more (cloud auto-join through a provider listing).
	Join     []string
	Discover func(ctx context.Context) ([]string, error)
	// JoinRetry is the wait between join attempts while the node is alone.
	JoinRetry time.Duration

	// DataDir holds raft's bolt store and snapshots. Required.
	DataDir string
	// BootstrapExpect is the number of voter-eligible members that must be
	// seen before a fresh cluster bootstraps its voter set; the first
	// BootstrapExpect of them by name bootstrap together. 0 never bootstraps
	// (the node waits to be added by an existing leader).
	BootstrapExpect int
	// MaxVoters caps the voter set (5: tolerates two failures).
	MaxVoters int

	// Membership tuning (memberlist, from DefaultLANConfig, tightened for a
	// LAN; see docs/control-plane.md for the measurements behind them).
	ProbeInterval       time.Duration // 150ms: time between failure probes
	ProbeTimeout        time.Duration // 100ms: wait for a direct ack (a LAN round trip is far less)
	SuspicionMult       int           // 2: suspicion timeout = mult × max(1, log10 N) × ProbeInterval (300ms up to 10 nodes; ≥3 makes memberlist wait for confirmations)
	IndirectChecks      int           // 3: peers asked to probe a target that missed its direct ack
	GossipInterval      time.Duration // 100ms
	DeadNodeReclaimTime time.Duration // 5s: a rebuilt slot may rejoin under its name after this

	// Raft tuning. HeartbeatTimeout is how long a follower of a leader that
	// gossip still sees alive waits without hearing from it before it calls
	// an election (randomised up to 2×): the backstop for a leader cut off on
	// the raft port alone. A follower whose leader gossip declares dead, and
	// a node that has not heard from a leader since it started, run with
	// LeaderLeaseTimeout instead, so the usual election starts about a lease
	// after the last heartbeat (see Node.tuneHeartbeat).
	HeartbeatTimeout   time.Duration // 2s
	ElectionTimeout    time.Duration // 2s
	LeaderLeaseTimeout time.Duration // 1.5s
	// LeaderHeartbeatTimeout is the heartbeat timeout raft runs with while
	// this node leads. hashicorp/raft derives the leader's heartbeat period
	// from its own HeartbeatTimeout (one every HeartbeatTimeout/10, randomised
	// up to 2×), so the node switches to this value on becoming leader and
	// back on losing leadership: the leader sends each follower a heartbeat
	// every 500 ms-1 s. Its 2×/10 must stay under LeaderLeaseTimeout and at
	// most HeartbeatTimeout/2 (a follower hears at least two heartbeats before
	// it may time out). 0 keeps HeartbeatTimeout. 5s.
	LeaderHeartbeatTimeout time.Duration
	// CommitTimeout: an idle leader sends every follower an AppendEntries at
	// this period (randomised up to 2×) on top of the heartbeats; it is also
	// how late a follower may learn that the last entry committed when
	// nothing follows it, which is why the leader follows every record with
	// an empty commit marker. 3s (raft's default is 50ms); see
	// docs/performance.md.
	CommitTimeout time.Duration
	// NonvoterHeartbeat is the period of the leader's heartbeats to
	// non-voters. A non-voter counts for neither commits nor the lease, so
	// the leader holds its heartbeats and sends them together on the next
	// multiple of this period (one burst for all non-voters instead of one
	// per non-voter every 0.5-1 s); a non-voter's raft heartbeat timeout is
	// twice this, and it counts quorum while it heard the leader within
	// twice this. The leader paces and the non-voter waits, so every node
	// of a cluster needs the same value. 0 heartbeats non-voters like
	// voters. 2s.
	NonvoterHeartbeat time.Duration
	SnapshotThreshold uint64 // 1024 log entries between snapshots

	// Tick is the period of the node's control loop (quorum check, VIP
	// claims, voter management, fencing, reconcile). 500ms.
	Tick time.Duration
	// SelfFenceTimeout: a node that had quorum and lost it for this long calls
	// SelfFence(true) and releases its VIPs. Peers may treat it as fenced
	// after this time. 10s.
	SelfFenceTimeout time.Duration
	// FailureTimeout is how long a member must be dead in gossip before the
	// leader fences it and moves its VIPs. 5s.
	FailureTimeout time.Duration
	// LeaderAvoidsVIPs makes a leader that holds a VIP hand leadership to a
	// live voter holding none (a witness first), so that the death of a VIP
	// holder never also costs an election before its VIP can move. true.
	LeaderAvoidsVIPs bool
	// VIPFenceAfter replaces FailureTimeout for a dead member that the log
	// names as a VIP holder: its VIP can only move once it is fenced, so it
	// is fenced as soon as gossip declares it dead. Fencing is confirmed
	// through the provider, so a false death costs a rebuild, never two
	// holders. 0 (the default) fences at once.
	VIPFenceAfter time.Duration
	// FenceDelay is staggered per slot: the leader waits FenceDelay×(own slot−1)
	// before fencing and then verifies it is still leader, so that of two
	// would-be fencers the lower slot acts first. 250ms (far more than the
	// leader check that follows it takes on a LAN).
	FenceDelay time.Duration
	// LoneSurvivorAfter: a voter without quorum for this long checks whether
	// it is the lone survivor (every other voter off or gone according to the
	// provider) and, if so, resets the voter set to itself. 30s. 0 disables.
	LoneSurvivorAfter time.Duration

	// Provider is the provider that holds this cluster's machines; it is used
	// for fence confirmation and lone-survivor proof. Providers holds all
	// providers by configuration name for the reconciler (may be nil).
	Provider  providers.Provider
	Providers map[string]providers.Provider

	// VIPs this cluster manages; the leader chooses one holder per VIP.
	VIPs []VIPSpec
	// VIPChanged binds (held=true) or unbinds (held=false) a VIP on this node.
	// It is called from the node's control goroutine, never concurrently, and
	// must return promptly; the node claims the VIP in gossip only after it
	// returned nil.
	VIPChanged func(vip string, held bool) error
	// SelfFence is called with true when the node has lost quorum for longer
	// than SelfFenceTimeout (stop write primaries and other exclusive
	// services), and with false when quorum is back. Same calling rules as VIPChanged.
	SelfFence func(fenced bool)

	// Reconciler (leader only; disabled when Planner or Spec is nil).
	Planner Planner
	// Spec returns the desired configuration currently in force. It is called
	// from the node's control goroutine while the agent may swap configs, so
	// it must be safe for concurrent use; the returned value is not mutated.
	Spec func() *lang.Config
	// Execute carries out one step; nil uses the built-in executor on Providers.
	Execute StepExecutor
	// MaxConcurrentRebuilds (K) bounds slots being rebuilt at once. 1.
	MaxConcurrentRebuilds int
	// RebuildBackoff is the first wait after a failed rebuild of a slot,
	// doubled per failure up to 16×. 30s.
	RebuildBackoff time.Duration
	// RebuildTimeout fails a rebuild that has not finished in this time. 10m.
	RebuildTimeout time.Duration
	// ProviderListInterval is how long the reconciler plans from its last
	// provider inventory while nothing changes: same leader term and
	// configuration, the same members in the same states and health, no
	// rebuild in flight and nothing left to do. Anything else lists afresh
	// at once. Listing every tick cost an idle local leader a tenth of its
	// CPU in /proc reads and would spend DigitalOcean's 5,000 requests an
	// hour in 42 minutes. 0 lists every tick. 10s.
	ProviderListInterval time.Duration
	// MinUptime is how long a rebuilt member must be alive before its slot
	// counts as recovered (and frees budget). 30s.
	MinUptime time.Duration

	// WrapTransport and WrapStream, when set, wrap the gossip transport and
	// the raft stream layer (fault injection: see package faultnet).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	WrapStream    func(raft.StreamLayer) raft.StreamLayer

	// Logger receives the node's logs; memberlist and raft log at debug/warn through it.
	Logger *slog.Logger
}

// VIPSpec is one virtual IP and the role whose members may hold it.
type VIPSpec struct {
	Address string
	Role    string
	// Failback: lang.FailbackNever (default), FailbackImmediate or FailbackDelayed.
	Failback      string
	FailbackDelay time.Duration
}

// Planner computes steps from an observation. Production wiring passes
// func(in plan.Input) []plan.Step { return plan.Plan(in).Steps }. It must be pure.
type Planner func(plan.Input) []plan.Step

// StepExecutor carries out one step. It must be idempotent: the reconciler
// re-runs steps of a rebuild after a leader change or a crash.
type StepExecutor func(ctx context.Context, s plan.Step) error

// TLSFiles is PEM-encoded TLS material for the raft transport.
type TLSFiles struct {
	CACert []byte
	Cert   []byte
	Key    []byte
}

// DefaultConfig returns the defaults documented on Config; identity,
// addresses, secrets and DataDir are left for the caller.
func DefaultConfig() Config {
	return Config{
		Generation:             1,
		Voter:                  true,
		BindAddr:               netip.MustParseAddr("127.0.0.1"),
		JoinRetry:              2 * time.Second,
		MaxVoters:              5,
		ProbeInterval:          150 * time.Millisecond,
		ProbeTimeout:           100 * time.Millisecond,
		SuspicionMult:          2,
		IndirectChecks:         3,
		GossipInterval:         100 * time.Millisecond,
		DeadNodeReclaimTime:    5 * time.Second,
		HeartbeatTimeout:       2 * time.Second,
		ElectionTimeout:        2 * time.Second,
		LeaderLeaseTimeout:     1500 * time.Millisecond,
		LeaderHeartbeatTimeout: 5 * time.Second,
		CommitTimeout:          3 * time.Second,
		NonvoterHeartbeat:      2 * time.Second,
		SnapshotThreshold:      1024,
		Tick:                   500 * time.Millisecond,
		SelfFenceTimeout:       10 * time.Second,
		FailureTimeout:         5 * time.Second,
		FenceDelay:             250 * time.Millisecond,
		LeaderAvoidsVIPs:       true,
		LoneSurvivorAfter:      30 * time.Second,
		MaxConcurrentRebuilds:  1,
		RebuildBackoff:         30 * time.Second,
		RebuildTimeout:         10 * time.Minute,
		ProviderListInterval:   10 * time.Second,
		MinUptime:              30 * time.Second,
	}
}

// contactWindow is how long a follower counts quorum after it last heard
// from the leader: twice the heartbeat timeout, and for a non-voter twice
// the longer of that and NonvoterHeartbeat (it hears the leader less often).
func (c *Config) contactWindow(nonvoter bool) time.Duration {
	if nonvoter {
		return 2 * max(c.HeartbeatTimeout, c.NonvoterHeartbeat)
	}
	return 2 * c.HeartbeatTimeout
}

// selfFencedAfter is how long after its death in gossip a member has
// certainly self-fenced (when it could not be fenced from outside). Its
// last contact with a leader can be up to a lease after the partition (a
// leader cut off with it keeps heartbeating until its lease runs out); it
// then counts quorum for its contact window, notices the loss on a tick,
// waits SelfFenceTimeout and fences on the next tick.
func (c *Config) selfFencedAfter() time.Duration {
	return c.LeaderLeaseTimeout + c.contactWindow(true) + c.SelfFenceTimeout + 2*c.Tick
}

func (c *Config) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if c.Slot < 0 || c.Generation < 0 {
		errs = append(errs, fmt.Errorf("slot %d / generation %d out of range", c.Slot, c.Generation))
	}
	if !c.BindAddr.IsValid() {
		errs = append(errs, errors.New("bind address is not set"))
	}
	if len(c.Keyring) == 0 {
		errs = append(errs, errors.New("gossip keyring is empty"))
	}
	for i, k := range c.Keyring {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			errs = append(errs, fmt.Errorf("gossip key %d is %d bytes, want 16, 24 or 32", i, n))
		}
	}
	if len(c.TLS.CACert) == 0 || len(c.TLS.Cert) == 0 || len(c.TLS.Key) == 0 {
		errs = append(errs, errors.New("tls material (ca, cert, key) is incomplete"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is empty"))
	}
	if c.NonvoterHeartbeat < 0 {
		errs = append(errs, fmt.Errorf("non-voter heartbeat %s is negative", c.NonvoterHeartbeat))
	}
	if c.ProviderListInterval < 0 {
		errs = append(errs, fmt.Errorf("provider list interval %s is negative", c.ProviderListInterval))
	}
	if c.Tick <= 0 || c.ProbeInterval <= 0 || c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 {
		errs = append(errs, errors.New("tick, probe interval and raft timeouts must be positive"))
	}
	// raft.NewRaft refuses these, but only when Run starts raft, after
	// the agent has begun without a control plane: refuse them here.
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("raft election timeout %s is shorter than the heartbeat timeout %s", c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("raft leader lease timeout %s is longer than the heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if lh := c.LeaderHeartbeatTimeout; lh != 0 {
		gap := 2 * lh / 10 // the longest wait between two heartbeats of a leader
		switch {
		case gap >= c.LeaderLeaseTimeout:
			errs = append(errs, fmt.Errorf("raft leader heartbeat timeout %s lets heartbeats lapse %s, not under the leader lease timeout %s", lh, gap, c.LeaderLeaseTimeout))
		case gap > c.HeartbeatTimeout/2:
			errs = append(errs, fmt.Errorf("raft leader heartbeat timeout %s lets heartbeats lapse %s, more than half the heartbeat timeout %s", lh, gap, c.HeartbeatTimeout))
		}
	}
	if c.MaxVoters < 1 {
		errs = append(errs, errors.New("max voters must be at least 1"))
	}
	if c.BootstrapExpect > c.MaxVoters {
		errs = append(errs, fmt.Errorf("bootstrap expect %d exceeds max voters %d", c.BootstrapExpect, c.MaxVoters))
	}
	if c.Witness && !c.Voter {
		errs = append(errs, errors.New("a witness must be a voter"))
	}
	for _, v := range c.VIPs {
		if _, err := netip.ParseAddr(v.Address); err != nil {
			errs = append(errs, fmt.Errorf("vip %q: %w", v.Address, err))
		}
		switch v.Failback {
		case "", lang.FailbackNever, lang.FailbackImmediate, lang.FailbackDelayed:
		default:
			errs = append(errs, fmt.Errorf("vip %s: unknown failback %q", v.Address, v.Failback))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster config for node %q: %w", c.Name, err)
	}
	return nil
}
