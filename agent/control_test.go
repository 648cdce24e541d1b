package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/lang"
)

// TestRenderUserData_Secrets_RoundTrip: secrets are written as separate
// 0600 files under the secrets directory, never inside agent.json, and read
// back by ParseUserData; ApplyWriteFiles puts them under the node root.
func TestRenderUserData_Secrets_RoundTrip(t *testing.T) {
	cfg := testAgentConfig(t)
	cfg.Secrets = map[string]string{SecretClusterToken: "s3cret-token\n", SecretCACert: "CERT"}
	ud, err := RenderUserData(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(ud), "s3cret-token") {
		t.Fatal("user-data carries a secret in clear text")
	}
	back, err := ParseUserData(ud)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg.Secrets, back.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	root := t.TempDir()
	if err := ApplyWriteFiles(ud, root); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "etc/hactl/secrets", SecretClusterToken)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
	}
	js, _ := os.ReadFile(filepath.Join(root, "etc/hactl/agent.json"))
	if strings.Contains(string(js), "s3cret") {
		t.Error("agent.json contains a secret")
	}
}

// TestConfig_Validate_SecretNames: secret names must be plain file names.
func TestConfig_Validate_SecretNames(t *testing.T) {
	cfg := testAgentConfig(t)
	cfg.Secrets = map[string]string{"../escape": "x"}
	if err := cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "plain file name") {
		t.Fatalf("Validate = %v, want a plain-file-name error", err)
	}
}

// TestClusterConfig_FromSecrets: without secrets the control plane is off;
// with them the node issues its own certificate from the CA, binds on its
// address, and takes its vote from the voter list.
func TestClusterConfig_FromSecrets(t *testing.T) {
	root := t.TempDir()
	id := Identity{Name: "lb-1", Role: "lb", Slot: 1, Generation: 2, Address: "127.0.0.1", Root: root}
	cfg := testAgentConfig(t)
	if _, err := ClusterConfig(cfg, id); !errors.Is(err, ErrNoControlPlane) {
		t.Fatalf("without secrets: %v, want ErrNoControlPlane", err)
	}
	ring, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.GenerateCA("blog")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gossip.Keys = []string{b64(ring[0])}
	cfg.Gossip.Join = []string{"127.0.0.9", "127.0.0.8:9000"}
	cfg.Raft.Voters = []string{"lb-1", "mail-1", "repo-1"}
	cfg.VIPs = []VIPConfig{{Address: "127.0.0.200", Role: "lb", Ports: []int{8000}}}
	cfg.Secrets = map[string]string{SecretCACert: string(ca.CertPEM), SecretCAKey: string(ca.KeyPEM)}
	ud, err := RenderUserData(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ApplyWriteFiles(ud, root); err != nil {
		t.Fatal(err)
	}
	cc, err := ClusterConfig(cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	if !cc.Voter || cc.BootstrapExpect != 3 || cc.MaxVoters != 3 || cc.Generation != 2 || cc.BindAddr.String() != "127.0.0.1" {
		t.Errorf("voter %v expect %d max %d gen %d bind %s", cc.Voter, cc.BootstrapExpect, cc.MaxVoters, cc.Generation, cc.BindAddr)
	}
	if diff := cmp.Diff([]string{"127.0.0.9:7946", "127.0.0.8:9000"}, cc.Join); diff != "" {
		t.Errorf("join (-want +got):\n%s", diff)
	}
	if len(cc.VIPs) != 1 || cc.VIPs[0].Address != "127.0.0.200" || cc.VIPs[0].Role != "lb" {
		t.Errorf("vips %+v", cc.VIPs)
	}
	if cc.DataDir != filepath.Join(root, "var/lib/hactl/raft") {
		t.Errorf("data dir %s", cc.DataDir)
	}
	// The issued certificate is the node's own, signed by the cluster CA.
	n, err := cluster.New(withFreePorts(cc))
	if err != nil {
		t.Fatalf("cluster.New with the built config: %v", err)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(stopped); err != nil { // releases the sockets and the store
		t.Fatal(err)
	}
	id.Name, id.Role = "web-1", "web"
	cc, err = ClusterConfig(cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Voter || cc.BootstrapExpect != 0 {
		t.Errorf("web-1 is not listed: voter %v, bootstrap %d; want false, 0", cc.Voter, cc.BootstrapExpect)
	}
}

func withFreePorts(cc cluster.Config) cluster.Config {
	cc.GossipPort, cc.RaftPort = 0, 0
	return cc
}

// TestMembersOf_AliveByRole: facts list live members by role, sorted by
// slot, and always include this node.
func TestMembersOf_AliveByRole(t *testing.T) {
	v := staticView{members: []cluster.Member{
		{Name: "web-2", Role: "web", Slot: 2, State: cluster.StateAlive, Addr: ap("127.0.0.12:7946")},
		{Name: "web-1", Role: "web", Slot: 1, State: cluster.StateSuspect, Addr: ap("127.0.0.11:7946")},
		{Name: "web-3", Role: "web", Slot: 3, State: cluster.StateDead, Addr: ap("127.0.0.13:7946")},
	}}
	got := MembersOf(v, Identity{Name: "lb-1", Role: "lb", Slot: 1, Address: "127.0.0.2"})()
	want := map[string][]lang.Member{
		"web": {{Name: "web-1", Address: "127.0.0.11", Slot: 1}, {Name: "web-2", Address: "127.0.0.12", Slot: 2}},
		"lb":  {{Name: "lb-1", Address: "127.0.0.2", Slot: 1}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
}

// TestForwarder_BindForwardRelease: a held VIP forwards to the node's
// address on the same port; releasing it closes the listener and the
// connections accepted through it.
func TestForwarder_BindForwardRelease(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	port := backend.Addr().(*net.TCPAddr).Port
	const vip = "127.0.0.201"
	if ln, err := net.Listen("tcp", net.JoinHostPort(vip, strconv.Itoa(port))); err != nil {
		t.Skipf("cannot bind %s on loopback: %v", vip, err)
	} else {
		ln.Close()
	}
	f := NewForwarder("127.0.0.1", map[string][]int{vip: {port}}, nil)
	t.Cleanup(f.Close)
	if err := f.Set(vip, true); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(vip, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo through the VIP: %q, %v", buf, err)
	}
	if err := f.Set(vip, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Error("a connection through a released VIP stays open")
	}
	if c2, err := net.DialTimeout("tcp", net.JoinHostPort(vip, strconv.Itoa(port)), 2*time.Second); err == nil {
		c2.Close()
		t.Error("the released VIP still accepts connections")
	}
	if err := f.Set("127.0.0.202", true); err == nil {
		t.Error("a VIP without ports was bound")
	}
}

// TestAgent_FollowMembers_NotifiesOnChange: a burst of membership events
// that changes the members the facts carry queues one run; events that
// change nothing queue none.
func TestAgent_FollowMembers_NotifiesOnChange(t *testing.T) {
	var mu sync.Mutex
	members := map[string][]lang.Member{"web": {{Name: "web-1", Address: "127.0.0.11", Slot: 1}}}
	a := &Agent{notify: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler), opts: Options{Members: func() map[string][]lang.Member {
		mu.Lock()
		defer mu.Unlock()
		return members
	}}}
	v := &chanView{ch: make(chan cluster.MemberEvent)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.FollowMembers(ctx, v, 10*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })

	v.ch <- cluster.MemberEvent{Type: cluster.EventUpdate}
	select {
	case <-a.notify:
		t.Fatal("notified although the members did not change")
	case <-time.After(200 * time.Millisecond):
	}
	mu.Lock()
	members = map[string][]lang.Member{"web": {{Name: "web-1", Address: "127.0.0.11", Slot: 1}, {Name: "web-2", Address: "127.0.0.12", Slot: 2}}}
	mu.Unlock()
	v.ch <- cluster.MemberEvent{Type: cluster.EventJoin}
	v.ch <- cluster.MemberEvent{Type: cluster.EventUpdate}
	select {
	case <-a.notify:
	case <-time.After(30 * time.Second):
		t.Fatal("no run queued after web-2 joined")
	}
}

type chanView struct{ ch chan cluster.MemberEvent }

func (v *chanView) Local() cluster.Member     { return cluster.Member{} }
func (v *chanView) Members() []cluster.Member { return nil }
func (v *chanView) Events(ctx context.Context) <-chan cluster.MemberEvent {
	return v.ch
}

type staticView struct{ members []cluster.Member }

func (v staticView) Local() cluster.Member     { return cluster.Member{} }
func (v staticView) Members() []cluster.Member { return v.members }
func (v staticView) Events(ctx context.Context) <-chan cluster.MemberEvent {
	ch := make(chan cluster.MemberEvent)
	close(ch)
	return ch
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestAgent_FollowMembers_PeerRevisionPullsAtOnce: two nodes with the
// control plane and a ten-minute interval; only web-1 is told that a new
// signed commit exists. web-2 learns through gossip that web-1 converged a
// revision it does not have and pulls it at once: within the test's 30 s
// deadline, far inside its interval.
func TestAgent_FollowMembers_PeerRevisionPullsAtOnce(t *testing.T) {
	f := newFixture(t)
	c1 := f.publish(fileRole("v1"), f.key)
	ring, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cluster.GenerateCA("demo")
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.config()
	cfg.Interval = Duration(10 * time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	type peer struct {
		a     *Agent
		node  *cluster.Node
		index string
	}
	start := func(slot int, join []string) peer {
		t.Helper()
		id := Identity{Name: "web-" + strconv.Itoa(slot), Role: "web", Slot: slot, Generation: 1, Address: "127.0.0.1", Root: t.TempDir()}
		cc := cluster.DefaultConfig()
		cc.Name, cc.Role, cc.Slot, cc.Cluster = id.Name, id.Role, id.Slot, "demo"
		cc.Keyring, cc.Join, cc.DataDir = ring, join, t.TempDir()
		cc.Voter, cc.BootstrapExpect = false, 0 // gossip is enough here
		if cc.TLS, err = ca.Issue(id.Name, net.IPv4(127, 0, 0, 1)); err != nil {
			t.Fatal(err)
		}
		n, err := cluster.New(cc)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conv := &fileConverger{root: id.Root}
		t.Cleanup(func() { conv.Close() })
		a, err := New(Options{
			Config: cfg, Identity: id, Converger: conv, Loader: LangLoader(nil), Listener: ln,
			// Static members (no Members option): a membership change
			// queues no run, so only the gossiped revision can.
			OnRun:  func(st Status) { n.SetRevision(st.LastGood) },
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("agent", id.Name),
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(3)
		go func() { defer wg.Done(); _ = n.Run(ctx) }()
		go func() { defer wg.Done(); a.FollowMembers(ctx, n.View(), 20*time.Millisecond) }()
		go func() { defer wg.Done(); _ = a.Run(ctx) }()
		return peer{a: a, node: n, index: filepath.Join(id.Root, "srv/www/index.html")}
	}
	p1 := start(1, nil)
	p2 := start(2, []string{p1.node.GossipAddr()})
	waitFor(t, "both nodes to converge v1 and see each other's revision", func() bool {
		for _, p := range []peer{p1, p2} {
			if p.a.Status().LastGood != c1 {
				return false
			}
			ms := p.node.View().Members()
			if len(ms) != 2 || ms[0].Revision != c1 || ms[1].Revision != c1 {
				return false
			}
		}
		return true
	})

	c2 := f.publish(fileRole("v2"), f.key)
	p1.a.Notify() // as POST /v1/notify or /v1/apply would on one node
	waitFor(t, "web-1 to converge v2", func() bool { return p1.a.Status().LastGood == c2 })
	waitFor(t, "web-2 to converge v2 without being notified", func() bool {
		return p2.a.Status().LastGood == c2 && readFile(t, p2.index) == "v2"
	})
	if runs := p2.a.Status().Runs; runs != 2 {
		t.Errorf("web-2 ran %d times, want 2 (first boot, then the gossiped revision)", runs)
	}
}

// TestAgent_PeerRevision_OncePerUnknownRevision: a peer's revision queues a
// pull only when this node does not know it, once.
func TestAgent_PeerRevision_OncePerUnknownRevision(t *testing.T) {
	a := &Agent{id: Identity{Name: "web-1"}}
	a.st = Status{LastGood: "aaa", Tip: "bbb", Refused: []Refusal{{Commit: "ccc"}}}
	seen := map[string]bool{}
	ms := []cluster.Member{
		{Name: "web-1", Revision: "zzz", State: cluster.StateAlive}, // itself
		{Name: "web-2", Revision: "aaa", State: cluster.StateAlive}, // its last good
		{Name: "web-3", Revision: "bbb", State: cluster.StateAlive}, // its tip
		{Name: "web-4", Revision: "ccc", State: cluster.StateAlive}, // refused
		{Name: "web-5", Revision: "ddd", State: cluster.StateDead},  // not live
		{Name: "web-6", Revision: "", State: cluster.StateAlive},    // none yet
		{Name: "web-7", Revision: "eee", State: cluster.StateAlive},
	}
	if rev, peer := a.peerRevision(ms, seen); rev != "eee" || peer != "web-7" {
		t.Errorf("peerRevision = %q from %q, want eee from web-7", rev, peer)
	}
	if rev, _ := a.peerRevision(ms, seen); rev != "" {
		t.Errorf("second peerRevision = %q, want none (already notified)", rev)
	}
}
