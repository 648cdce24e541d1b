package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/plan"
)

func TestCA_Issue_MutualTLS(t *testing.T) {
	ca, err := GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Issue("web-1", net.ParseIP("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Issue("web-2")
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, _, err := a.tlsConfigs()
	if err != nil {
		t.Fatal(err)
	}
	s, err := listenTLS("127.0.0.1:0", srvCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	go func() {
		for {
			c, err := s.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if tc, ok := c.(*tls.Conn); ok && tc.Handshake() == nil {
					io.Copy(c, c)
				}
			}()
		}
	}()
	_, cliB, err := b.tlsConfigs()
	if err != nil {
		t.Fatal(err)
	}
	good := &tlsStream{client: cliB}
	c, err := good.Dial(raft.ServerAddress(s.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("dial with a cluster certificate: %v", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	c.Close()

	other, err := GenerateCA("other")
	if err != nil {
		t.Fatal(err)
	}
	o, err := other.Issue("intruder")
	if err != nil {
		t.Fatal(err)
	}
	o.CACert = ca.CertPEM // trusts the server, but is not trusted by it
	_, cliO, err := o.tlsConfigs()
	if err != nil {
		t.Fatal(err)
	}
	bad := &tlsStream{client: cliO}
	c2, err := bad.Dial(raft.ServerAddress(s.Addr().String()), 5*time.Second)
	if err == nil {
		// TLS 1.3: the server's rejection of the client certificate arrives on first read.
		c2.Write([]byte("x"))
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, rerr := c2.Read(buf); rerr == nil {
			t.Fatal("a certificate from another CA was accepted")
		}
		c2.Close()
	}
}

func TestGenerateKeyring(t *testing.T) {
	k, err := GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != 1 || len(k[0]) != 32 {
		t.Fatalf("keyring = %d keys, first %d bytes; want one 32-byte key", len(k), len(k[0]))
	}
}

func TestNodeMeta_FitsLimit(t *testing.T) {
	m := nodeMeta{Role: "mail", Slot: 12, Generation: 345, Revision: "0123456789abcdef0123456789abcdef01234567",
		Health: plan.HealthFailing, RaftAddr: "127.255.255.254:65535", Voter: true, Witness: true, Formed: true,
		VIPs: []string{"127.100.0.1", "127.100.0.2", "fd00::1234:5678"}}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMeta(b)
	if err != nil || !got.equal(m) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if len(b) > metaLimit/2 {
		t.Errorf("meta is %d bytes; keep it well under %d", len(b), metaLimit)
	}
}

func TestConfig_Validate(t *testing.T) {
	c := DefaultConfig()
	if err := c.validate(); err == nil {
		t.Fatal("empty identity and secrets accepted")
	}
}

func TestConfig_Validate_RaftTimings(t *testing.T) {
	e := newEnv(t)
	d := DefaultConfig()
	const s = time.Second
	const ms = time.Millisecond
	for _, tc := range []struct {
		name                       string
		heartbeat, election, lease time.Duration
		leaderHeartbeat            time.Duration
		wantErr                    string
	}{
		{"defaults", d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout, d.LeaderHeartbeatTimeout, ""},
		{"heartbeat above election", 2 * s, s, 500 * ms, 0, "election timeout 1s is shorter than the heartbeat timeout 2s"},
		{"lease above heartbeat", s, s, 2 * s, 0, "leader lease timeout 2s is longer than the heartbeat timeout 1s"},
		{"leader heartbeat off", s, s, 500 * ms, 0, ""},
		{"leader heartbeats more often than the follower's timeout implies", 20 * s, 20 * s, 2 * s, 8 * s, ""},
		{"leader heartbeats lapse past the lease", 3 * s, 3 * s, 900 * ms, 5 * s, "lets heartbeats lapse 1s, not under the leader lease timeout 900ms"},
		{"leader heartbeats lapse past half the follower's timeout", 1900 * ms, 3 * s, 1500 * ms, 5 * s, "lets heartbeats lapse 1s, more than half the heartbeat timeout 1.9s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.fastConfig("web-1", "web", 1, 1)
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = tc.heartbeat, tc.election, tc.lease
			c.LeaderHeartbeatTimeout = tc.leaderHeartbeat
			err := c.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// A node's agent may record an event (its data restored at first boot)
// before Run has started raft: that must fail with ErrNotLeader, not
// panic and take the agent down (mail and repo nodes never became healthy).
func TestNode_Record_BeforeRaftStarted(t *testing.T) {
	e := newEnv(t)
	n, err := New(e.fastConfig("repo-1", "repo", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Run with a done context releases what New bound.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = n.Run(ctx)
	})
	if err := n.Record("data-restored", "repo-1", "repo/git on repo-1 from empty (new cluster)"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Record before Run = %v, want ErrNotLeader", err)
	}
	if err := n.SetPrimary("repo/git", "repo-1"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("SetPrimary before Run = %v, want ErrNotLeader", err)
	}
}

func TestNode_Membership_MetaAndDeath(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes := e.startCluster("web", 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := nodes[0].View().Events(ctx)

	eventually(t, "every node sees three alive members with metadata", func() bool {
		for _, n := range nodes {
			ms := n.View().Members()
			if len(ms) != 3 {
				return false
			}
			for i, m := range ms {
				if m.State != StateAlive || m.Role != "web" || m.Slot != i+1 || m.Generation != 1 || m.RaftAddr == "" || !m.Voter {
					return false
				}
			}
		}
		return true
	})
	nodes[1].SetHealth(plan.HealthFailing)
	nodes[1].SetRevision("abc123")
	eventually(t, "health and revision gossiped", func() bool {
		m, ok := nodes[2].ms.member("web-2")
		return ok && m.Health == plan.HealthFailing && m.Revision == "abc123"
	})
	if l := nodes[0].View().Local(); l.Name != "web-1" || !l.Addr.IsValid() {
		t.Errorf("Local() = %+v", l)
	}

	nodes[2].kill()
	killed := time.Now()
	eventually(t, "web-3 marked dead by both survivors", func() bool {
		for _, n := range nodes[:2] {
			m, ok := n.ms.member("web-3")
			if !ok || m.State != StateDead {
				return false
			}
		}
		return true
	})
	t.Logf("failure detection (probe 300ms, suspicion mult 2, 3 nodes): dead on both survivors %v after the kill", time.Since(killed).Round(time.Millisecond))
	sawDead := false
	eventually(t, "a dead event for web-3 on the view's channel", func() bool {
		for {
			select {
			case ev := <-evs:
				if ev.Type == EventDead && ev.Member.Name == "web-3" {
					sawDead = true
				}
			default:
				return sawDead
			}
		}
	})
	cancel()
	for range evs { // closed by the view once ctx is done
	}
}

func TestNode_Raft_LeaderFailover(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes := e.startCluster("db", 3, nil)
	l := waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(l.Status().Voters) == 3 })
	onLeader(t, nodes, "Record", func(l *testNode) error { return l.Record("test", "db-1", "before failover") })
	// The node killed is the leader that wrote the primary record.
	var old *testNode
	onLeader(t, nodes, "SetPrimary", func(l *testNode) error { old = l; return l.SetPrimary("db", l.Name()) })
	old.kill()
	killed := time.Now()
	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	nl := waitLeader(t, rest)
	t.Logf("leader failover (heartbeat/election timeout 600ms): new leader with quorum %v after the kill", time.Since(killed).Round(time.Millisecond))
	// A new leader applies its predecessor's entries once it commits in its term.
	eventually(t, "the new leader's state to hold the entries of the old one", func() bool {
		st := nl.LogState()
		return hasEvent(st.History, "before failover") && st.Primaries["db"] == old.Name()
	})
	if err := nl.Record("test", "", "after failover"); err != nil {
		t.Fatalf("new leader cannot commit: %v", err)
	}
}

// The leader runs raft with LeaderHeartbeatTimeout (fewer heartbeats) and
// every other node with HeartbeatTimeout (unchanged election trigger); a
// leader that hands leadership over goes back to the follower's timeouts.
func TestNode_Raft_LeaderHeartbeatTimeout(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes := e.startCluster("db", 3, nil)
	l := waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(l.Status().Voters) == 3 })
	cfg := l.cfg
	if cfg.LeaderHeartbeatTimeout <= cfg.HeartbeatTimeout {
		t.Fatalf("test config: leader heartbeat timeout %s is not above %s", cfg.LeaderHeartbeatTimeout, cfg.HeartbeatTimeout)
	}
	timeouts := func(n *testNode) (time.Duration, time.Duration) {
		r, _ := n.raft()
		rc := r.ReloadableConfig()
		return rc.HeartbeatTimeout, rc.ElectionTimeout
	}
	tuned := func(leader *testNode) func() bool {
		return func() bool {
			for _, n := range nodes {
				hb, el := timeouts(n)
				want := cfg.HeartbeatTimeout
				if n == leader {
					want = cfg.LeaderHeartbeatTimeout
				}
				if hb != want || el < hb {
					return false
				}
				if n != leader && el != cfg.ElectionTimeout {
					return false
				}
			}
			return true
		}
	}
	eventually(t, "the leader on the leader heartbeat timeout, followers on theirs", tuned(l))
	r, _ := l.raft()
	if err := r.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	var nl *testNode
	eventually(t, "another leader", func() bool {
		nl = leaderOf(nodes)
		return nl != nil && nl != l
	})
	eventually(t, "the new leader on the leader heartbeat timeout, the old one back on the follower's", tuned(nl))
	if err := nl.Record("test", "", "after transfer"); err != nil {
		t.Fatalf("new leader cannot commit: %v", err)
	}
}

func TestFSM_SnapshotRestore(t *testing.T) {
	f := newFSM()
	cmds := []command{
		{Op: opFence, Fence: &FenceRecord{Name: "web-2", Generation: 1, Machine: "m2"}},
		{Op: opRebuild, Rebuild: &Rebuild{Name: "web-2", Generation: 2, State: RebuildRunning, Steps: []StepRecord{{Step: plan.Step{Action: plan.ActionReplace, Name: "web-2", Generation: 2}, MachineGeneration: 1}}}},
		{Op: opVIP, VIP: &VIPOwner{VIP: "127.0.0.100", Holder: "web-1", Generation: 1}},
		{Op: opPrimary, Data: "db", Node: "web-1"},
	}
	for i, c := range cmds {
		b, err := jsonMarshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if res := f.Apply(&raft.Log{Index: uint64(i + 1), Data: b}); res != nil {
			t.Fatalf("apply %s: %v", c.Op, res)
		}
	}
	if res := f.Apply(&raft.Log{Index: 9, Data: []byte(`{"op":"bogus"}`)}); res == nil {
		t.Fatal("unknown op accepted")
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(&sink.buf)); err != nil {
		t.Fatal(err)
	}
	if a, b := f.state(), g.state(); !stateEqual(a, b) {
		t.Fatalf("restored state differs:\n%+v\n%+v", a, b)
	}
}

func TestNode_Run_RestartKeepsStateFromSnapshot(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	var cfgs []Config
	nodes := e.startCluster("db", 3, func(c *Config) { cfgs = append(cfgs, *c) })
	var l *testNode
	onLeader(t, nodes, "Record", func(n *testNode) error { l = n; return l.Record("test", "", "kept across restart") })
	var f *testNode
	var fc Config
	for i, n := range nodes {
		if n != l {
			f, fc = n, cfgs[i]
			break
		}
	}
	eventually(t, "the follower to apply the entry", func() bool { return hasEvent(f.LogState().History, "kept across restart") })
	r, _ := f.raft()
	if err := r.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	f.kill()
	// Same slot, generation, data dir and ports: a process restart, not a rebuild.
	_, gp, _ := net.SplitHostPort(f.GossipAddr())
	_, rp, _ := net.SplitHostPort(f.RaftAddr())
	fc.GossipPort, fc.RaftPort = atoi(t, gp), atoi(t, rp)
	fc.Join = []string{l.GossipAddr()}
	g := e.start(fc)
	if !g.localMeta().Formed {
		t.Fatal("restarted node does not know it belongs to a cluster")
	}
	eventually(t, "the restarted node to follow with quorum and its state restored", func() bool {
		st := g.Status()
		return st.Quorum && !st.IsLeader && st.Leader != "" && hasEvent(g.LogState().History, "kept across restart")
	})
	// The restarted node took no snapshot of its own: a non-zero index is the
	// one it restored from disk.
	if gr, _ := g.raft(); gr.Stats()["last_snapshot_index"] == "0" {
		t.Fatal("restarted node did not restore its snapshot")
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNode_Run_SingleNodeBootstrapsAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	nodes := e.startCluster("blog", 1, nil)
	l := waitLeader(t, nodes)
	if st := l.Status(); !slices.Equal(st.Voters, []string{"blog-1@1"}) {
		t.Fatalf("voters = %v", st.Voters)
	}
}
