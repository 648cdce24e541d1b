package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/data"
	"github.com/hactl/hactl/lang"
)

// dataNode is one node's DataManager on its own root and loopback address.
type dataNode struct {
	id Identity
	m  *DataManager
}

func newDataNode(t *testing.T, ca *cluster.CA, slot, gen int) *dataNode {
	t.Helper()
	root := t.TempDir()
	secrets := filepath.Join(root, "etc/hactl/secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{SecretCACert: ca.CertPEM, SecretCAKey: ca.KeyPEM} {
		if err := os.WriteFile(filepath.Join(secrets, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A random 127/8 address: DataPort is fixed, and other tests run nodes too.
	var addr string
	for range 20 {
		addr = fmt.Sprintf("127.%d.%d.%d", 100+rand.N(100), rand.N(250)+1, rand.N(250)+1)
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(DataPort)))
		if err == nil {
			ln.Close()
			break
		}
	}
	id := Identity{Name: "mail-" + strconv.Itoa(slot), Role: "mail", Slot: slot, Generation: gen, Address: addr, Root: root}
	m, err := NewDataManager(Config{Cluster: "test"}, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.PeerGrace = 0
	t.Cleanup(m.Close)
	return &dataNode{id: id, m: m}
}

func (n *dataNode) member() lang.Member {
	return lang.Member{Name: n.id.Name, Address: n.id.Address, Slot: n.id.Slot}
}

func (n *dataNode) dir() string { return filepath.Join(n.id.Root, "var/mail/blog") }

func (n *dataNode) status(t *testing.T) DataStatus {
	t.Helper()
	st := n.m.Status()
	if len(st) != 1 {
		t.Fatalf("%s: %d data statuses, want 1", n.id.Name, len(st))
	}
	return st[0]
}

func mailConfig(target string) *lang.Config {
	return &lang.Config{Roles: []*lang.Role{{Name: "mail", Count: 2, Data: []lang.Data{{
		Name: "maildir", Path: "/var/mail/blog", Mode: lang.ReplicationSync,
		Backups: []lang.Backup{{Name: "offsite", Target: target, Schedule: "@every 1h"}},
	}}}}}
}

// A new cluster starts empty; a rebuilt node pulls from the live replica,
// and without one restores the newest backup; the lowest slot alone runs
// the backups.
func TestDataManager_Prepare_NewReplicaBackup(t *testing.T) {
	ctx := context.Background()
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	target := "dir://" + filepath.Join(t.TempDir(), "backups")
	lc := mailConfig(target)

	a := newDataNode(t, ca, 1, 1)
	b := newDataNode(t, ca, 2, 2)
	members := map[string][]lang.Member{"mail": {a.member(), b.member()}}

	// A new cluster: the other replica is not serving, no backup exists.
	if err := a.m.Prepare(ctx, lc, members); err != nil {
		t.Fatalf("new cluster: %v", err)
	}
	if st := a.status(t); st.State != DataReady || st.Restore.Kind != data.SourceEmpty || !st.BackupRunner {
		t.Fatalf("mail-1 on a new cluster: %+v", st)
	}
	for i := range 3 {
		p := filepath.Join(a.dir(), "new", fmt.Sprintf("m%d", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("message "+strconv.Itoa(i)), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	// A rebuilt mail-2 pulls mail-1's data and does not run backups.
	if err := b.m.Prepare(ctx, lc, members); err != nil {
		t.Fatalf("rebuilt mail-2: %v", err)
	}
	st := b.status(t)
	if st.State != DataReady || st.Restore.Kind != data.SourceReplica || st.Restore.Peer != "mail-1" || st.Restore.Files != 3 || st.BackupRunner {
		t.Fatalf("rebuilt mail-2: %+v restore %+v", st, st.Restore)
	}
	if got, err := os.ReadFile(filepath.Join(b.dir(), "new", "m2")); err != nil || string(got) != "message 2" {
		t.Fatalf("m2 on mail-2: %q, %v", got, err)
	}

	// A rebuilt node with no replica and no backup refuses to start empty
	// (its own target: mail-1 backs up to the first one at once).
	target2 := "dir://" + filepath.Join(t.TempDir(), "backups2")
	lc2 := mailConfig(target2)
	c := newDataNode(t, ca, 2, 3)
	alone := map[string][]lang.Member{"mail": {c.member()}}
	if err := c.m.Prepare(ctx, lc2, alone); !errors.Is(err, ErrDataNotReady) {
		t.Fatalf("rebuilt node without a source: %v, want ErrDataNotReady", err)
	}
	if st := c.status(t); st.State != DataWaiting || st.Error == "" {
		t.Fatalf("waiting node: %+v", st)
	}
	// It does not serve its empty directory to others meanwhile.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.id.Address, strconv.Itoa(DataPort)), time.Second); err == nil {
		conn.Close()
		t.Fatal("a node waiting for its data serves it")
	}

	// Once a backup exists it restores it, and reports its age.
	tg, err := data.OpenTarget(ctx, target2, data.TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := data.Backup(ctx, a.dir(), tg)
	tg.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.m.Prepare(ctx, lc2, alone); err != nil {
		t.Fatalf("restore from backup: %v", err)
	}
	st = c.status(t)
	if st.Restore.Kind != data.SourceBackup || st.Restore.Backup != info.ID || st.Restore.Files != 3 || st.Restore.Age <= 0 {
		t.Fatalf("restore from backup: %+v", st.Restore)
	}
	kinds := map[string]bool{}
	for _, ev := range c.m.Events() {
		kinds[ev.Kind] = true
	}
	if !kinds["data-waiting"] || !kinds["data-restored"] {
		t.Errorf("events of mail-2 gen 3: %+v", c.m.Events())
	}
}

// A node whose data directory is not empty (a restart, not a rebuild)
// keeps its data.
func TestDataManager_Prepare_KeepsLocalData(t *testing.T) {
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	n := newDataNode(t, ca, 1, 4)
	if err := os.MkdirAll(filepath.Join(n.dir(), "new"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := n.m.Prepare(context.Background(), mailConfig("dir://"+t.TempDir()), map[string][]lang.Member{"mail": {n.member()}}); err != nil {
		t.Fatal(err)
	}
	if st := n.status(t); st.Restore.Kind != data.SourceLocal || st.Serving == "" {
		t.Fatalf("restarted node: %+v", st)
	}
}

func TestDataManager_TargetURL_State(t *testing.T) {
	for _, c := range []struct{ root, in, want string }{
		{"/s/blog/nodes/mail-1.g2/root", "dir:///@state/blog-backups", "dir:///s/blog-backups"},
		{"/s/blog/nodes/mail-1.g2/root", "dir:///srv/b", "dir:///srv/b"},
		{"/s/blog/nodes/mail-1.g2/root", "sftp://u@h:22/@state/x", "sftp://u@h:22/@state/x"},
		{"/", "dir:///@state/blog-backups", "dir:///@state/blog-backups"},
	} {
		m := &DataManager{id: Identity{Root: c.root}}
		if got := m.targetURL(c.in); got != c.want {
			t.Errorf("targetURL(%q) on root %s = %q, want %q", c.in, c.root, got, c.want)
		}
	}
}

// The backup runner takes a first backup as soon as it starts.
func TestDataManager_Prepare_FirstBackupAtOnce(t *testing.T) {
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	n := newDataNode(t, ca, 1, 1)
	target := "dir://" + filepath.Join(t.TempDir(), "backups")
	if err := n.m.Prepare(context.Background(), mailConfig(target), map[string][]lang.Member{"mail": {n.member()}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.status(t)
		if len(st.Backups) == 1 && st.Backups[0].LastBackup != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backup 30 s after the runner started (schedule @every 1h): %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A rebuilt node skips a corrupted newest backup for the one before it,
// and says so in its report.
func TestDataManager_Prepare_CorruptBackupSkipped(t *testing.T) {
	ctx := context.Background()
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	dirT := filepath.Join(t.TempDir(), "backups")
	tg, err := data.OpenTarget(ctx, "dir://"+dirT, data.TargetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if err := os.WriteFile(filepath.Join(src, "old"), []byte("kept"), 0o640); err != nil {
		t.Fatal(err)
	}
	older, err := data.Backup(ctx, src, tg)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("only in the newest backup")
	if err := os.WriteFile(filepath.Join(src, "new"), content, 0o640); err != nil {
		t.Fatal(err)
	}
	newest, err := data.Backup(ctx, src, tg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := data.LoadManifest(ctx, tg, newest.ID)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := m.Lookup("new")
	h := e.Sum
	if err := os.WriteFile(filepath.Join(dirT, "objects", h[:2], h), []byte("bit rot"), 0o640); err != nil {
		t.Fatal(err)
	}

	n := newDataNode(t, ca, 1, 2)
	if err := n.m.Prepare(ctx, mailConfig("dir://"+dirT), map[string][]lang.Member{"mail": {n.member()}}); err != nil {
		t.Fatal(err)
	}
	st := n.status(t)
	if st.Restore.Kind != data.SourceBackup || st.Restore.Backup != older.ID || len(st.Restore.Failed) == 0 {
		t.Fatalf("restore: %+v; want backup %s after skipping %s", st.Restore, older.ID, newest.ID)
	}
	if _, err := os.Stat(filepath.Join(n.dir(), "new")); err == nil {
		t.Error("the corrupt backup's file was restored")
	}
	if b, err := os.ReadFile(filepath.Join(n.dir(), "old")); err != nil || string(b) != "kept" {
		t.Errorf("old: %q, %v", b, err)
	}
}

// startControlNode runs a real control-plane node (gossip + raft) on a
// random loopback address. bootstrap makes it a single-voter cluster, so
// it becomes the leader; without it the node never bootstraps and is
// never the leader.
func startControlNode(t *testing.T, ca *cluster.CA, ring [][]byte, name string, bootstrap bool) *cluster.Node {
	t.Helper()
	addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.N(100), rand.N(250)+1, rand.N(250)+1)
	cc := cluster.DefaultConfig()
	role, slot, _ := strings.Cut(name, "-")
	cc.Name, cc.Role, cc.Cluster = name, role, "test"
	cc.Slot, _ = strconv.Atoi(slot)
	cc.BindAddr = netip.MustParseAddr(addr)
	cc.GossipPort, cc.RaftPort = 0, 0
	cc.Keyring = ring
	files, err := ca.Issue(name, net.ParseIP(addr))
	if err != nil {
		t.Fatal(err)
	}
	cc.TLS = files
	cc.DataDir = t.TempDir()
	cc.BootstrapExpect = 0
	if bootstrap {
		cc.BootstrapExpect = 1
	}
	n, err := cluster.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func postEvent(t *testing.T, url string, ev EventPost) int {
	t.Helper()
	b, _ := json.Marshal(ev)
	resp, err := http.Post(url+"/v1/events", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A data event on a node that is not the raft leader reaches the cluster
// history through the leader's POST /v1/events, retried while the leader
// is unknown; a follower refuses such a POST with 421.
func TestDataManager_Events_FollowerForwardsToLeader(t *testing.T) {
	old := recordBackoff
	recordBackoff = 50 * time.Millisecond
	t.Cleanup(func() { recordBackoff = old })
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	leader := startControlNode(t, ca, ring, "lb-1", true)
	follower := startControlNode(t, ca, ring, "lb-2", false)
	waitFor(t, "lb-1 to lead its one-voter cluster", leader.IsLeader)
	lsrv := httptest.NewServer(serveRecordEvent(leader))
	t.Cleanup(lsrv.Close)
	fsrv := httptest.NewServer(serveRecordEvent(follower))
	t.Cleanup(fsrv.Close)

	if code := postEvent(t, fsrv.URL, EventPost{Kind: data.EventBackupFailed, Node: "mail-9", Message: "x"}); code != http.StatusMisdirectedRequest {
		t.Errorf("POST /v1/events on a follower = %d, want 421", code)
	}
	if code := postEvent(t, lsrv.URL, EventPost{Kind: "rebuild", Node: "mail-9", Message: "x"}); code != http.StatusBadRequest {
		t.Errorf("POST of a non-data event = %d, want 400", code)
	}

	// mail-2's own Record is the follower's (not the leader: it fails);
	// the leader is unknown for the first two attempts.
	n := newDataNode(t, ca, 2, 1)
	var asked atomic.Int32
	n.m.Record = follower.Record
	n.m.LeaderAPI = func() string {
		if asked.Add(1) <= 2 {
			return ""
		}
		return lsrv.URL
	}
	target := "dir://" + filepath.Join(t.TempDir(), "backups")
	if err := n.m.Prepare(context.Background(), mailConfig(target), map[string][]lang.Member{"mail": {n.member()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mail-2's data-restored event in the leader's history", func() bool {
		for _, e := range leader.Events() {
			if e.Kind == "data-restored" && e.Node == "mail-2" && strings.Contains(e.Message, "mail/maildir on mail-2") {
				return true
			}
		}
		return false
	})
	if asked.Load() < 3 {
		t.Errorf("leader asked %d times, want the event retried until the leader was known", asked.Load())
	}
	for _, e := range follower.Events() {
		if e.Kind == "data-restored" {
			t.Errorf("the follower's own history holds %+v", e)
		}
	}
}

// leaderAPIURL finds the leader's address in the view; "" on the leader.
func TestLeaderAPIURL_SelfIsLeader_Empty(t *testing.T) {
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	leader := startControlNode(t, ca, ring, "lb-1", true)
	waitFor(t, "lb-1 to lead", leader.IsLeader)
	if u := leaderAPIURL(leader, 7480); u != "" {
		t.Errorf("leaderAPIURL on the leader = %q, want \"\"", u)
	}
}

// After a partition, mail-2 sees only itself and is the lowest live slot
// in its own view; the cluster log names mail-1, which the leader sees
// alive, so mail-2 does not run the backups. The lowest slot takes the
// role from a higher one; a claim against a live lower slot is refused.
func TestDataManager_BackupRunner_FollowsLog(t *testing.T) {
	ctx := context.Background()
	ca, err := cluster.GenerateCA("test")
	if err != nil {
		t.Fatal(err)
	}
	ring, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	// The control plane: a one-voter cluster whose gossip member mail-1
	// is alive. Both data managers read its log (each stands for its
	// node's applied copy).
	ctl := startControlNode(t, ca, ring, "mail-1", true)
	waitFor(t, "quorum", func() bool { s := ctl.Status(); return s.IsLeader && s.Quorum })
	lc := mailConfig("dir://" + filepath.Join(t.TempDir(), "backups"))
	a := newDataNode(t, ca, 1, 1)
	b := newDataNode(t, ca, 2, 1)
	a.m.Log, b.m.Log = ctl, ctl
	key := RunnerKey("mail")

	// mail-2 first, alone in its view: the log names nobody, it claims.
	if err := b.m.Prepare(ctx, lc, map[string][]lang.Member{"mail": {b.member()}}); err != nil {
		t.Fatal(err)
	}
	if got := ctl.Primary(key); got != "mail-2" || !b.status(t).BackupRunner {
		t.Fatalf("log names %q, mail-2 runner %v; want mail-2 running", got, b.status(t).BackupRunner)
	}
	// mail-1, the lower slot, takes it over.
	if err := a.m.Prepare(ctx, lc, map[string][]lang.Member{"mail": {a.member(), b.member()}}); err != nil {
		t.Fatal(err)
	}
	if got := ctl.Primary(key); got != "mail-1" || !a.status(t).BackupRunner {
		t.Fatalf("log names %q, mail-1 runner %v; want mail-1 running", got, a.status(t).BackupRunner)
	}
	if b.status(t).BackupRunner || b.m.stillRunner("mail") == nil {
		t.Errorf("mail-2 still reports or may run the backups after mail-1 took them over")
	}
	// mail-2 still sees only itself (a partition that healed for the
	// leader, not yet for mail-2's gossip): it stops and cannot claim.
	if err := b.m.Prepare(ctx, lc, map[string][]lang.Member{"mail": {b.member()}}); err != nil {
		t.Fatal(err)
	}
	if got := ctl.Primary(key); got != "mail-1" || b.status(t).BackupRunner {
		t.Fatalf("log names %q, mail-2 runner %v; want mail-1 only", got, b.status(t).BackupRunner)
	}
	if err := b.m.stillRunner("mail"); err == nil {
		t.Errorf("mail-2's scheduler would still run")
	}

	srv := httptest.NewServer(serveClaimRunner(ctl))
	t.Cleanup(srv.Close)
	post := func(rc RunnerClaim) int {
		body, _ := json.Marshal(rc)
		resp, err := http.Post(srv.URL+"/v1/backup-runner", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(RunnerClaim{Key: key, Node: "mail-2"}); code != http.StatusConflict {
		t.Errorf("claim by mail-2 while mail-1 is alive = %d, want 409", code)
	}
	if code := post(RunnerClaim{Key: "vip/x", Node: "mail-2"}); code != http.StatusBadRequest {
		t.Errorf("claim of a non-runner key = %d, want 400", code)
	}
	if code := post(RunnerClaim{Key: RunnerKey("web"), Node: "web-3"}); code != http.StatusNoContent || ctl.Primary(RunnerKey("web")) != "web-3" {
		t.Errorf("claim of an unnamed role = %d (log %q), want 204 naming web-3", code, ctl.Primary(RunnerKey("web")))
	}
}
