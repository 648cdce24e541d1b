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
