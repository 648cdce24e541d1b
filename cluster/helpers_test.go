package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/cluster/faultnet"
	"github.com/hactl/hactl/providers"
)

type (
	memberlistTransport = memberlist.NodeAwareTransport
	raftStream          = raft.StreamLayer
)

// env is one test cluster: shared secrets, a fault-injecting network, an
// in-test provider and the running nodes.
type env struct {
	t    *testing.T
	dir  string
	ca   *CA
	keys [][]byte
	net  *faultnet.Net
	prov *testProvider
	logs *lockedBuffer

	mu    sync.Mutex
	nodes map[string]*testNode
}

type testNode struct {
	*Node
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// kill stops the node without leaving (a crash as far as peers can tell) and
// waits for Run to return.
func (tn *testNode) kill() {
	tn.cancel()
	<-tn.done
}

func (tn *testNode) stopped() bool {
	select {
	case <-tn.done:
		return true
	default:
		return false
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ca, err := GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	// The temp dir's removal is registered before the cleanup that stops the
	// nodes, so it runs after it (cleanups run last-in first-out).
	dir := t.TempDir()
	e := &env{t: t, dir: dir, ca: ca, keys: keys, net: faultnet.New(1), logs: &lockedBuffer{}, nodes: map[string]*testNode{}}
	e.prov = &testProvider{env: e, machines: map[providers.MachineID]*providers.Machine{}}
	t.Cleanup(func() {
		e.mu.Lock()
		nodes := make([]*testNode, 0, len(e.nodes))
		for _, n := range e.nodes {
			nodes = append(nodes, n)
		}
		e.mu.Unlock()
		for _, n := range nodes {
			n.kill()
		}
		if t.Failed() || os.Getenv("HACTL_TEST_LOGS") != "" {
			t.Logf("node logs:\n%s", e.logs.String())
		}
	})
	return e
}

// fastConfig is tuned for loopback on a loaded 2-core machine: fast enough
// to keep the suite short, slow enough not to flap under -race.
func (e *env) fastConfig(name, role string, slot, gen int) Config {
	e.t.Helper()
	c := DefaultConfig()
	c.Name, c.Role, c.Slot, c.Generation, c.Cluster = name, role, slot, gen, "test"
	c.Keyring = e.keys
	tf, err := e.ca.Issue(name, net.ParseIP("127.0.0.1"))
	if err != nil {
		e.t.Fatal(err)
	}
	c.TLS = tf
	c.DataDir = filepath.Join(e.dir, fmt.Sprintf("%s-g%d", name, gen))
	c.JoinRetry = 200 * time.Millisecond
	c.ProbeInterval = 300 * time.Millisecond
	c.ProbeTimeout = 200 * time.Millisecond
	c.SuspicionMult = 2
	c.DeadNodeReclaimTime = time.Second
	c.HeartbeatTimeout = 600 * time.Millisecond
	c.ElectionTimeout = 600 * time.Millisecond
	c.LeaderLeaseTimeout = 300 * time.Millisecond
	c.LeaderHeartbeatTimeout = 1200 * time.Millisecond // heartbeats every 120-240ms, under the 300ms lease
	c.NonvoterHeartbeat = 300 * time.Millisecond       // non-voters: every 300ms, raft timeout 600ms, quorum window 1.2s
	c.Tick = 100 * time.Millisecond
	c.SelfFenceTimeout = 2 * time.Second
	c.FailureTimeout = time.Second
	c.FenceDelay = 200 * time.Millisecond
	c.LoneSurvivorAfter = 2 * time.Second
	c.MinUptime = time.Second
	c.RebuildBackoff = time.Second
	c.Provider = e.prov
	c.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c.WrapTransport = func(t memberlistTransport) memberlistTransport { return e.net.Transport(name, t) }
	c.WrapStream = func(s raftStream) raftStream { return e.net.Stream(name, s) }
	c.Discover = func(ctx context.Context) ([]string, error) {
		ms, err := e.prov.List(ctx, "test")
		var out []string
		for _, m := range ms {
			if m.Address != "" && m.State == providers.PowerOn {
				out = append(out, m.Address)
			}
		}
		return out, err
	}
	return c
}

// start creates and runs a node, registers it in the provider (a machine
// that is on) and in the fault net.
func (e *env) start(c Config) *testNode {
	e.t.Helper()
	n, err := New(c)
	if err != nil {
		e.t.Fatal(err)
	}
	e.net.Register(c.Name, n.GossipAddr(), n.RaftAddr())
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{Node: n, cancel: cancel, done: make(chan struct{})}
	go func() {
		tn.err = n.Run(ctx)
		close(tn.done)
	}()
	e.mu.Lock()
	e.nodes[fmt.Sprintf("%s@%d", c.Name, c.Generation)] = tn
	e.mu.Unlock()
	e.prov.put(providers.Machine{ID: providers.MachineID(fmt.Sprintf("%s-g%d", c.Name, c.Generation)), Cluster: "test",
		Role: c.Role, Slot: c.Slot, Generation: c.Generation, Name: c.Name, Address: n.GossipAddr(), State: providers.PowerOn})
	return tn
}

// startCluster starts count nodes of role, all voters bootstrapping together.
func (e *env) startCluster(role string, count int, mod func(*Config)) []*testNode {
	e.t.Helper()
	var out []*testNode
	for i := 1; i <= count; i++ {
		c := e.fastConfig(fmt.Sprintf("%s-%d", role, i), role, i, 1)
		c.BootstrapExpect = count
		if mod != nil {
			mod(&c)
		}
		out = append(out, e.start(c))
	}
	return out
}

// eventually polls cond until it holds or the generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaderOf returns the single live leader among nodes, or nil.
func leaderOf(nodes []*testNode) *testNode {
	var l *testNode
	for _, n := range nodes {
		if !n.stopped() && n.IsLeader() && n.Status().Quorum {
			if l != nil {
				return nil
			}
			l = n
		}
	}
	return l
}

func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	eventually(t, "a leader with quorum", func() bool {
		l = leaderOf(nodes)
		return l != nil
	})
	return l
}

// onLeader runs a leader-only write on the current leader, again on the next
// one when leadership moved under it (a loaded machine can miss a 600 ms
// heartbeat), and fails the test on any other error. The writes it is used
// for are idempotent (set, upsert), so a retry after a lost leadership whose
// entry did commit is harmless.
func onLeader(t *testing.T, nodes []*testNode, what string, write func(l *testNode) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := waitLeader(t, nodes)
		err := write(l)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
			t.Fatalf("%s on leader %s: %v", what, l.Name(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: leadership kept moving: %v", what, err)
		}
		t.Logf("%s: leader %s lost leadership (%v); retrying on the next", what, l.Name(), err)
	}
}

func hasEvent(evs []Event, sub string) bool {
	return slices.ContainsFunc(evs, func(e Event) bool { return strings.Contains(e.Message, sub) })
}

// testProvider is an in-test provider backed by state the test controls.
// Fence really stops the node's process (its Run returns), as a power-off
// would; Create starts a real node when the test gave it a starter. (A
// stand-in for providers/local, which is being written in parallel.)
type testProvider struct {
	env *env

	mu       sync.Mutex
	machines map[providers.MachineID]*providers.Machine
	fences   int
	creates  int
	onCreate func(req providers.CreateRequest)
}

var (
	_ providers.Provider = (*testProvider)(nil)
	_ providers.Fencer   = (*testProvider)(nil)
)

func (p *testProvider) put(m providers.Machine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.machines[m.ID] = &m
}

func (p *testProvider) setState(id providers.MachineID, s providers.PowerState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m, ok := p.machines[id]; ok {
		m.State = s
	}
}

func (p *testProvider) fenceCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fences
}

func (p *testProvider) Create(ctx context.Context, req providers.CreateRequest) (providers.Machine, error) {
	p.mu.Lock()
	for _, m := range p.machines {
		if m.Role == req.Role && m.Slot == req.Slot && m.Generation == req.Generation {
			defer p.mu.Unlock()
			return *m, nil
		}
	}
	p.creates++
	hook := p.onCreate
	p.mu.Unlock()
	if hook == nil {
		return providers.Machine{}, fmt.Errorf("test provider: no way to create %s", req.Name())
	}
	hook(req)
	ms, _ := p.List(ctx, req.Cluster)
	for _, m := range ms {
		if m.Role == req.Role && m.Slot == req.Slot && m.Generation == req.Generation {
			return m, nil
		}
	}
	return providers.Machine{}, fmt.Errorf("test provider: %s not created", req.Name())
}

func (p *testProvider) Destroy(ctx context.Context, id providers.MachineID) error {
	p.mu.Lock()
	_, ok := p.machines[id]
	delete(p.machines, id)
	p.mu.Unlock()
	if ok {
		p.killMachine(id)
	}
	return nil
}

func (p *testProvider) List(ctx context.Context, cluster string) ([]providers.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []providers.Machine
	for _, m := range p.machines {
		if m.Cluster == cluster {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b providers.Machine) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}

// Fence powers the machine off: the node process is stopped and the
// inventory says off.
func (p *testProvider) Fence(ctx context.Context, id providers.MachineID) error {
	p.mu.Lock()
	m, ok := p.machines[id]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("fence %s: %w", id, providers.ErrNotFound)
	}
	p.fences++
	m.State = providers.PowerOff
	p.mu.Unlock()
	p.killMachine(id)
	return nil
}

func (p *testProvider) killMachine(id providers.MachineID) {
	i := strings.LastIndex(string(id), "-g")
	name, gen := string(id)[:i], string(id)[i+2:]
	p.env.mu.Lock()
	tn := p.env.nodes[name+"@"+gen]
	p.env.mu.Unlock()
	if tn != nil {
		tn.kill()
	}
}

// lockedBuffer collects logs from every node for failure output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func jsonMarshal(c command) ([]byte, error) { return json.Marshal(c) }

func stateEqual(a, b State) bool { return cmp.Diff(a, b) == "" }

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ buf bytes.Buffer }

func (s *memSink) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memSink) Close() error                { return nil }
func (s *memSink) ID() string                  { return "mem" }
func (s *memSink) Cancel() error               { return nil }
