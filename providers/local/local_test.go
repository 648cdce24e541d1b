package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/providertest"
)

// The test binary doubles as the node program: with HACTL_TEST_NODE=1 it
// reads meta-data.json from HACTL_NODE_DIR, binds local-ipv4:7480 and serves
// GET /healthz ("ok") and GET /whoami (the instance-id) until it is killed.
//
// With HACTL_TEST_CREATE="<stateDir>|<cluster>|<role>|<slot>" it is instead
// a short-lived "CLI" that creates one node and exits.
func TestMain(m *testing.M) {
	if spec := os.Getenv("HACTL_TEST_CREATE"); spec != "" {
		os.Unsetenv("HACTL_TEST_CREATE") // the node it starts is a node
		os.Exit(runCreator(spec))
	}
	if os.Getenv("HACTL_TEST_NODE") == "1" {
		os.Exit(runTestNode())
	}
	// Node processes inherit the environment, so this marks them.
	os.Setenv("HACTL_TEST_NODE", "1")
	os.Exit(m.Run())
}

const testNodePort = "7480"

func runTestNode() int {
	dir := os.Getenv(NodeDirEnv)
	md, err := ReadMetaData(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 2
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(md.LocalIPv4, testNodePort))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 3
	}
	fmt.Println("test node", md.InstanceID, "listening on", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, md.InstanceID) })
	err = http.Serve(ln, mux)
	fmt.Fprintln(os.Stderr, "test node:", err)
	return 1
}

func runCreator(spec string) int {
	f := strings.Split(spec, "|")
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "creator: bad spec", spec)
		return 2
	}
	slot, _ := strconv.Atoi(f[3])
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "creator:", err)
		return 2
	}
	p, err := New(Config{StateDir: f[0], Command: func(string) []string { return []string{exe, "-test.run=^$"} }})
	if err != nil {
		fmt.Fprintln(os.Stderr, "creator:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := p.Create(ctx, req(f[1], f[2], slot, 1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "creator:", err)
		return 1
	}
	fmt.Println(m.ID, m.Address)
	return 0
}

// testCommand boots a test node from the test binary.
func testCommand(t *testing.T) func(string) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return func(string) []string { return []string{exe, "-test.run=^$"} }
}

// newTestProvider returns a provider on a fresh state directory. Its cleanup
// kills every process that belongs to a node under that directory, whatever
// the test did, before the directory is removed.
func newTestProvider(t *testing.T) *Provider {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { killUnder(t, dir) })
	p, err := New(Config{
		StateDir: dir,
		Command:  testCommand(t),
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func killUnder(t *testing.T, stateDir string) {
	match := func(d string) bool { return strings.HasPrefix(d, stateDir+string(filepath.Separator)) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs := scanProcs(match)
		if len(procs) == 0 {
			return
		}
		for pid := range procs {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: node processes under %s survive SIGKILL: %v", stateDir, procs)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe asks the node's own address for /healthz.
func probe(ctx context.Context, m providers.Machine) error {
	return get(ctx, m.Address, "/healthz", "ok")
}

func get(ctx context.Context, addr, path, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(addr, testNodePort)+path, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(b) != want {
		return fmt.Errorf("GET %s%s = %d %q, want %q", addr, path, resp.StatusCode, b, want)
	}
	return nil
}

// eventually polls f until it returns nil or 30 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 30s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func req(cluster, role string, slot, gen int) providers.CreateRequest {
	return providers.CreateRequest{Cluster: cluster, Role: role, Slot: slot, Generation: gen, UserData: "#cloud-config\nhactl: {role: " + role + "}\n"}
}

// uniqueCluster returns a random cluster name, so that parallel test runs
// on this machine get distinct 127.A.B pairs (with high probability).
func uniqueCluster(t *testing.T) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

func TestProvider_Conformance(t *testing.T) {
	providertest.RunConformance(t, func(t *testing.T) providers.Provider { return newTestProvider(t) }, providertest.Options{
		Probe:   probe,
		Timeout: 30 * time.Second,
		Poll:    20 * time.Millisecond,
		VIP: func(t *testing.T, p providers.Provider, cluster string) string {
			v, err := p.(*Provider).AllocateVIP(cluster, "www")
			if err != nil {
				t.Fatalf("AllocateVIP: %v", err)
			}
			return v
		},
	})
}

func TestProvider_Create_NodeServesOnOwnAddress(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	r := req(cl, "web", 2, 3)
	r.Image = "hactl-test"
	m, err := p.Create(t.Context(), r)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	eventually(t, "health on "+m.Address, func() error { return probe(t.Context(), m) })
	if err := get(t.Context(), m.Address, "/whoami", "web-2.g3"); err != nil {
		t.Fatal(err)
	}

	dir, err := p.NodeDir(m.ID)
	if err != nil {
		t.Fatalf("NodeDir(%s): %v", m.ID, err)
	}
	if want := filepath.Join(p.StateDir(), cl, "nodes", "web-2.g3"); dir != want {
		t.Errorf("NodeDir = %s, want %s", dir, want)
	}
	var raw map[string]any
	b, err := os.ReadFile(filepath.Join(dir, MetaDataFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	created, _ := raw["created"].(string)
	if _, err := time.Parse(time.RFC3339, created); err != nil {
		t.Errorf("created %q is not RFC 3339: %v", created, err)
	}
	delete(raw, "created")
	want := map[string]any{
		"instance-id": "web-2.g3", "local-hostname": "web-2", "local-ipv4": m.Address,
		"provider": "local", "region": "local", "cluster": cl, "role": "web",
		"slot": float64(2), "generation": float64(3), "image": "hactl-test",
		"tags": []any{"hactl-cluster:" + cl, "hactl-role:web", "hactl-slot:2", "hactl-gen:3"},
	}
	if d := cmp.Diff(want, raw); d != "" {
		t.Errorf("meta-data.json mismatch (-want +got):\n%s", d)
	}
	ud, err := os.ReadFile(filepath.Join(dir, UserDataFile))
	if err != nil || string(ud) != r.UserData {
		t.Errorf("user-data = %q, %v; want %q", ud, err, r.UserData)
	}
	if fi, err := os.Stat(filepath.Join(dir, RootDir)); err != nil || !fi.IsDir() {
		t.Errorf("root/ missing: %v", err)
	}
	eventually(t, "agent.log shows the node listening", func() error {
		b, err := os.ReadFile(filepath.Join(dir, LogFile))
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), "listening on "+m.Address) {
			return fmt.Errorf("agent.log = %q", b)
		}
		return nil
	})
	want2 := providers.Machine{ID: providers.MachineID(cl + "/web-2.g3"), Cluster: cl, Role: "web", Slot: 2, Generation: 3,
		Name: "web-2", Address: m.Address, State: providers.PowerOn, Region: "local", Image: "hactl-test"}
	if d := cmp.Diff(want2, m, cmpIgnoreCreated); d != "" {
		t.Errorf("Create returned (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(m.Address, "127.") || strings.HasPrefix(m.Address, "127.0.") {
		t.Errorf("address %s is not in 127.16-254.x.x", m.Address)
	}
}

var cmpIgnoreCreated = cmp.Transformer("noCreated", func(m providers.Machine) providers.Machine {
	m.Created = time.Time{}
	return m
})

func TestProvider_Create_DetachedFromCaller(t *testing.T) {
	p := newTestProvider(t)
	ctx, cancel := context.WithCancel(t.Context())
	m, err := p.Create(ctx, req(uniqueCluster(t), "web", 1, 1))
	cancel()
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	eventually(t, "node answers after the create context was cancelled", func() error { return probe(t.Context(), m) })
	dir, _ := p.NodeDir(m.ID)
	pid := pidFromFile(dir)
	sid, err := getsid(pid)
	if err != nil {
		t.Fatalf("getsid(%d): %v", pid, err)
	}
	if sid != pid {
		t.Errorf("node pid %d is in session %d, want its own session", pid, sid)
	}
	own, _ := getsid(os.Getpid())
	if sid == own {
		t.Errorf("node shares the test's session %d", own)
	}
}

func getsid(pid int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_GETSID, uintptr(pid), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func TestProvider_Fence_RefusesConnectionsKeepsDisk(t *testing.T) {
	p := newTestProvider(t)
	m, err := p.Create(t.Context(), req(uniqueCluster(t), "db", 1, 1))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	eventually(t, "health", func() error { return probe(t.Context(), m) })
	dir, _ := p.NodeDir(m.ID)
	if err := os.WriteFile(filepath.Join(dir, RootDir, "data"), []byte("acknowledged"), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := pidFromFile(dir)
	if err := p.Fence(t.Context(), m.ID); err != nil {
		t.Fatalf("Fence: %v", err)
	}
	// Confirmed, not hoped: right after Fence returns nothing listens.
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(m.Address, testNodePort), 5*time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("%s:%s accepts connections after Fence", m.Address, testNodePort)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after Fence: %v, want connection refused", err)
	}
	if env, argv, ok := procInfo(pid); ok && belongsTo(env, argv, dir) {
		t.Errorf("node pid %d still running after Fence", pid)
	}
	if b, err := os.ReadFile(filepath.Join(dir, RootDir, "data")); err != nil || string(b) != "acknowledged" {
		t.Errorf("disk after fence: %q, %v", b, err)
	}
	ms, err := p.List(t.Context(), m.Cluster)
	if err != nil || len(ms) != 1 || ms[0].State != providers.PowerOff {
		t.Fatalf("List after fence = %v, %v; want one machine, off", ms, err)
	}
}

// A node process that forks a child which leaves the process group (an
// agent-supervised service that calls setsid) is still fenced: fencing finds
// it through HACTL_NODE_DIR in its environment.
func TestProvider_Fence_KillsEscapedChildren(t *testing.T) {
	p := newTestProvider(t)
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip("no sh: ", err)
	}
	setsid, err := lookPath("setsid")
	if err != nil {
		t.Skip("no setsid: ", err)
	}
	p.command = func(dir string) []string {
		return []string{sh, "-c", setsid + " sleep 300 & exec sleep 300"}
	}
	m, err := p.Create(t.Context(), req(uniqueCluster(t), "svc", 1, 1))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	dir, _ := p.NodeDir(m.ID)
	eventually(t, "two node processes", func() error {
		if n := len(nodeProcs(dir)); n != 2 {
			return fmt.Errorf("%d processes", n)
		}
		return nil
	})
	if err := p.Fence(t.Context(), m.ID); err != nil {
		t.Fatalf("Fence: %v", err)
	}
	if pids := nodeProcs(dir); len(pids) != 0 {
		t.Fatalf("processes %v survive Fence", pids)
	}
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/local/bin"} {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && fi.Mode()&0o111 != 0 {
			return filepath.Join(d, name), nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func TestProvider_Destroy_RemovesDiskAndVIP(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	m, err := p.Create(t.Context(), req(cl, "lb", 1, 1))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	eventually(t, "health", func() error { return probe(t.Context(), m) })
	vip, err := p.AllocateVIP(cl, "www")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AssignVIP(t.Context(), vip, m.ID); err != nil {
		t.Fatal(err)
	}
	dir, _ := p.NodeDir(m.ID)
	if err := p.Destroy(t.Context(), m.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node dir after Destroy: %v, want not exist", err)
	}
	if err := probe(t.Context(), m); err == nil {
		t.Errorf("node still answers after Destroy")
	}
	if h, err := p.VIPHolder(t.Context(), vip); err != nil || h != "" {
		t.Errorf("VIPHolder after destroying the holder = %q, %v; want none", h, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range ents {
		t.Errorf("leftover in nodes/: %s", e.Name())
	}
	if err := p.Destroy(t.Context(), m.ID); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := p.PowerOn(t.Context(), m.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("PowerOn of destroyed machine = %v, want ErrNotFound", err)
	}
}

// A crash after the node directory was written but before the process was
// started (or after it died without a pid file) leaves a directory that List
// reports off and that Create adopts instead of duplicating.
func TestProvider_Create_AdoptsStoppedDirectory(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	dir, _ := p.NodeDir(m.ID)
	if err := p.Fence(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, PIDFile))
	// Leftovers of a crashed create and a half-written directory.
	if err := os.MkdirAll(filepath.Join(p.nodesDir(cl), ".tmp-web-2.g1-123"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.nodesDir(cl), "web-3.g1"), 0o755); err != nil {
		t.Fatal(err)
	}
	ms, err := p.List(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].ID != m.ID || ms[0].State != providers.PowerOff {
		t.Fatalf("List = %+v; want only %s, off", ms, m.ID)
	}
	again, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatalf("re-Create: %v", err)
	}
	if again.ID != m.ID || again.Address != m.Address || again.State != providers.PowerOn {
		t.Fatalf("re-Create = %+v; want %s at %s, on", again, m.ID, m.Address)
	}
	eventually(t, "adopted node answers", func() error { return probe(t.Context(), again) })
	if _, err := os.Stat(filepath.Join(p.nodesDir(cl), ".tmp-web-2.g1-123")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("crashed create's temp dir not swept: %v", err)
	}
	if _, err := p.Create(t.Context(), req(cl, "web", 3, 1)); err == nil {
		t.Errorf("Create over a directory without meta-data succeeded; want an error naming it")
	}
}

// A running node whose pid file was lost is adopted, not started twice.
func TestProvider_Create_AdoptsRunningWithoutPIDFile(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := p.NodeDir(m.ID)
	pid := pidFromFile(dir)
	os.Remove(filepath.Join(dir, PIDFile))
	if _, err := p.Create(t.Context(), req(cl, "web", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if got := pidFromFile(dir); got != pid {
		t.Errorf("pid after re-Create = %d, want the running %d", got, pid)
	}
	if n := len(nodeProcs(dir)); n != 1 {
		t.Errorf("%d node processes, want 1", n)
	}
}

func TestProvider_Create_AddressStableAcrossRebuild(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	var addrs []string
	var ids []providers.MachineID
	for slot := 1; slot <= 3; slot++ {
		m, err := p.Create(t.Context(), req(cl, "web", slot, 1))
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, m.Address)
		ids = append(ids, m.ID)
	}
	prefix := addrs[0][:strings.LastIndexByte(addrs[0], '.')]
	if d := cmp.Diff([]string{prefix + ".10", prefix + ".11", prefix + ".12"}, addrs); d != "" {
		t.Errorf("first addresses (-want +got):\n%s", d)
	}
	// web-2 dies and is rebuilt with the next generation: same address.
	if err := p.Destroy(t.Context(), ids[1]); err != nil {
		t.Fatal(err)
	}
	// A new slot created meanwhile does not take web-2's leased address.
	m4, err := p.Create(t.Context(), req(cl, "web", 4, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m4.Address != prefix+".13" {
		t.Errorf("web-4 got %s, want %s.13 (web-2's .11 stays leased)", m4.Address, prefix)
	}
	m2, err := p.Create(t.Context(), req(cl, "web", 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	if m2.Address != addrs[1] {
		t.Errorf("rebuilt web-2 got %s, want its old %s", m2.Address, addrs[1])
	}
	// While the old generation still exists, a new one gets another address.
	m2b, err := p.Create(t.Context(), req(cl, "web", 2, 3))
	if err != nil {
		t.Fatal(err)
	}
	if m2b.Address == m2.Address {
		t.Errorf("web-2 gen 3 shares %s with gen 2, which still exists", m2.Address)
	}
	// A second provider on the same state directory (another CLI) agrees.
	p2, err := New(Config{StateDir: p.StateDir(), Command: p.command})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := p2.List(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 5 {
		t.Errorf("second provider lists %d machines, want 5", len(ms))
	}
}

func TestProvider_AllocateVIP_StablePerName(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	a, err := p.AllocateVIP(cl, "www")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.AllocateVIP(cl, "mail")
	if err != nil {
		t.Fatal(err)
	}
	a2, err := p.AllocateVIP(cl, "www")
	if err != nil {
		t.Fatal(err)
	}
	if a != a2 || a == b {
		t.Fatalf("AllocateVIP: www=%s then %s, mail=%s; want www stable and distinct from mail", a, a2, b)
	}
	if !strings.HasSuffix(a, ".200") || !strings.HasSuffix(b, ".201") {
		t.Errorf("VIPs %s, %s; want .200 and .201", a, b)
	}
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if pre := m.Address[:strings.LastIndexByte(m.Address, '.')]; !strings.HasPrefix(a, pre+".") {
		t.Errorf("VIP %s not in the cluster's prefix %s", a, pre)
	}
	// The holder is recorded where a node's agent finds it.
	if err := p.AssignVIP(t.Context(), a, m.ID); err != nil {
		t.Fatal(err)
	}
	dir, _ := p.NodeDir(m.ID)
	b2, err := os.ReadFile(filepath.Join(dir, "..", "..", VIPsFile))
	if err != nil {
		t.Fatal(err)
	}
	var vf vipsFile
	if err := json.Unmarshal(b2, &vf); err != nil {
		t.Fatal(err)
	}
	if e := vf.VIPs[a]; e.Holder != "web-1.g1" || e.Name != "www" {
		t.Errorf("vips.json[%s] = %+v, want holder web-1.g1 name www", a, e)
	}
	if err := p.AssignVIP(t.Context(), "127.1.2.3", m.ID); err == nil {
		t.Errorf("AssignVIP of an address outside the VIP range succeeded")
	}
	if err := p.AssignVIP(t.Context(), "::1", m.ID); err == nil {
		t.Errorf("AssignVIP of an IPv6 address succeeded")
	}
	if err := p.AssignVIP(t.Context(), "127.1.2.200", m.ID); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("AssignVIP of an address in no cluster's range = %v, want ErrNotFound", err)
	}
	// A VIP address declared in HCL, inside the cluster's range.
	declared := a[:strings.LastIndexByte(a, '.')] + ".230"
	if err := p.AssignVIP(t.Context(), declared, m.ID); err != nil {
		t.Fatalf("AssignVIP(declared %s): %v", declared, err)
	}
	if h, err := p.VIPHolder(t.Context(), declared); err != nil || h != m.ID {
		t.Errorf("VIPHolder(%s) = %q, %v; want %s", declared, h, err, m.ID)
	}
	// A VIP by name (the planner's form when the provider allocates).
	if h, err := p.VIPHolder(t.Context(), "lb"); err != nil || h != "" {
		t.Errorf("VIPHolder(lb) before assignment = %q, %v; want none", h, err)
	}
	if err := p.AssignVIP(t.Context(), "lb", m.ID); err != nil {
		t.Fatalf("AssignVIP(lb): %v", err)
	}
	if h, err := p.VIPHolder(t.Context(), "lb"); err != nil || h != m.ID {
		t.Errorf("VIPHolder(lb) = %q, %v; want %s", h, err, m.ID)
	}
	lbAddr, err := p.AllocateVIP(cl, "lb")
	if err != nil || lbAddr == declared || lbAddr == a || lbAddr == b {
		t.Errorf("AllocateVIP(lb) = %s, %v; want a fresh address", lbAddr, err)
	}
	if h, err := p.VIPHolder(t.Context(), lbAddr); err != nil || h != m.ID {
		t.Errorf("VIPHolder(%s) = %q, %v; want %s", lbAddr, h, err, m.ID)
	}
	if err := p.AssignVIP(t.Context(), a, providers.MachineID(cl+"/web-9.g1")); !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("AssignVIP to an unknown machine = %v, want ErrNotFound", err)
	}
}

// When the pair a cluster name hashes to is held by another cluster under
// the same state directory, the next free pair is taken and recorded.
func TestProvider_Create_PairCollision(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	want := pairAt(hashPair(cl))
	other := filepath.Join(p.StateDir(), "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(filepath.Join(other, NetFile), netFile{A: want.A, B: want.B}); err != nil {
		t.Fatal(err)
	}
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if m.Address == p.addr(want, 10) {
		t.Fatalf("cluster %s took %s although cluster other holds 127.%d.%d", cl, m.Address, want.A, want.B)
	}
	nf, err := p.readNet(cl)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.addr(nf.pair(), 10); got != m.Address {
		t.Errorf("net.json pair gives %s, machine has %s", got, m.Address)
	}
	eventually(t, "health", func() error { return probe(t.Context(), m) })
}

// Two providers on one state directory (two "hactl apply" processes) create
// distinct slots of one cluster at once; flock keeps allocation consistent.
func TestProvider_Create_TwoProvidersShareStateDir(t *testing.T) {
	p1 := newTestProvider(t)
	p2, err := New(Config{StateDir: p1.StateDir(), Command: p1.command})
	if err != nil {
		t.Fatal(err)
	}
	cl := uniqueCluster(t)
	var wg sync.WaitGroup
	ms := make([]providers.Machine, 6)
	errs := make([]error, 6)
	for i := range 6 {
		p := p1
		if i%2 == 1 {
			p = p2
		}
		wg.Go(func() { ms[i], errs[i] = p.Create(t.Context(), req(cl, "web", i+1, 1)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if seen[m.Address] {
			t.Errorf("address %s given twice", m.Address)
		}
		seen[m.Address] = true
	}
	for _, m := range ms {
		eventually(t, "health of "+string(m.ID), func() error { return probe(t.Context(), m) })
	}
}

// Several short-lived processes (CLIs) create nodes of one cluster at once and
// exit; the nodes outlive them, and flock kept allocation consistent.
func TestProvider_Create_NodesOutliveCreatingProcesses(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	cmds := make([]*exec.Cmd, n)
	outs := make([]strings.Builder, n)
	for i := range n {
		c := exec.Command(exe, "-test.run=^$")
		c.Env = append(os.Environ(), fmt.Sprintf("HACTL_TEST_CREATE=%s|%s|web|%d", p.StateDir(), cl, i+1))
		c.Stdout, c.Stderr = &outs[i], &outs[i]
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = c
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("creator %d: %v\n%s", i+1, err, outs[i].String())
		}
	}
	ms, err := p.List(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("List = %d machines, want %d", len(ms), n)
	}
	seen := map[string]bool{}
	for _, m := range ms {
		if m.State != providers.PowerOn {
			t.Errorf("%s is %s after its creator exited", m.ID, m.State)
		}
		if seen[m.Address] {
			t.Errorf("address %s given twice", m.Address)
		}
		seen[m.Address] = true
		eventually(t, "health of "+string(m.ID), func() error { return probe(t.Context(), m) })
	}
}

func TestProvider_NodeDir_AmbiguousBareID(t *testing.T) {
	p := newTestProvider(t)
	a, b := uniqueCluster(t)+"a", uniqueCluster(t)+"b"
	for _, cl := range []string{a, b} {
		if _, err := p.Create(t.Context(), req(cl, "web", 1, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.NodeDir("web-1.g1"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("NodeDir(bare id in two clusters) = %v, want ambiguous", err)
	}
	if err := p.Destroy(t.Context(), providers.MachineID(a+"/web-1.g1")); err != nil {
		t.Fatal(err)
	}
	d, err := p.NodeDir("web-1.g1")
	if err != nil || !strings.Contains(d, string(filepath.Separator)+b+string(filepath.Separator)) {
		t.Errorf("NodeDir(bare id) after destroying one = %s, %v; want the node of %s", d, err, b)
	}
	for _, bad := range []string{"../x-1.g1", "web-1", "a/b/web-1.g1", "web-1.g1/.."} {
		if _, err := p.NodeDir(providers.MachineID(bad)); err == nil {
			t.Errorf("NodeDir(%q) accepted", bad)
		}
	}
}

func TestProvider_Create_RejectsBadNames(t *testing.T) {
	p := newTestProvider(t)
	for _, r := range []providers.CreateRequest{
		req("bin", "web", 1, 1), req("../x", "web", 1, 1), req("ok", "we/b", 1, 1),
		req("", "web", 1, 1), req("ok", "web", -1, 1),
	} {
		if _, err := p.Create(t.Context(), r); err == nil {
			t.Errorf("Create(%+v) accepted", r)
		}
	}
	ro, err := New(Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Create(t.Context(), req("ok", "web", 1, 1)); err == nil {
		t.Errorf("Create without Command succeeded")
	}
}

func TestInstallBinary_CopiesOnceAndBoots(t *testing.T) {
	dir := t.TempDir()
	a, err := InstallBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := InstallBinary(dir)
	if err != nil || a != b {
		t.Fatalf("second InstallBinary = %s, %v; want %s", b, err, a)
	}
	fi2, _ := os.Stat(b)
	if !os.SameFile(fi, fi2) || !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("second InstallBinary rewrote the file")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("installed binary mode %v is not executable", fi.Mode())
	}
	if !strings.HasPrefix(filepath.Base(a), "hactl-") || len(filepath.Base(a)) != len("hactl-")+16 || filepath.Dir(a) != filepath.Join(dir, "bin") {
		t.Errorf("installed at %s, want %s/bin/hactl-<16 hex>", a, dir)
	}
	exe, _ := os.Executable()
	want, _ := os.ReadFile(exe)
	got, _ := os.ReadFile(a)
	if string(want) != string(got) {
		t.Errorf("installed binary differs from the executable")
	}
	// The installed copy really boots a node (it is this test binary).
	p, err := New(Config{StateDir: dir, Command: func(string) []string { return []string{a, "-test.run=^$"} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killUnder(t, p.StateDir()) })
	m, err := p.Create(t.Context(), req(uniqueCluster(t), "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "node from installed binary", func() error { return probe(t.Context(), m) })
}

func TestDefaultStateDir_Precedence(t *testing.T) {
	t.Setenv("HACTL_STATE_DIR", "/x/state")
	t.Setenv("XDG_STATE_HOME", "/x/xdg")
	t.Setenv("HOME", "/x/home")
	if got := DefaultStateDir(); got != "/x/state" {
		t.Errorf("with HACTL_STATE_DIR: %s", got)
	}
	t.Setenv("HACTL_STATE_DIR", "")
	if got := DefaultStateDir(); got != "/x/xdg/hactl" {
		t.Errorf("with XDG_STATE_HOME: %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "")
	if got := DefaultStateDir(); got != "/x/home/.local/state/hactl" {
		t.Errorf("with HOME: %s", got)
	}
}

func TestFactory_StateDirSetting(t *testing.T) {
	dir := t.TempDir()
	pr, err := Factory(Config{StateDir: "/nonexistent/never"})(map[string]string{"state_dir": dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := pr.(*Provider).StateDir(); got != dir {
		t.Errorf("StateDir = %s, want %s", got, dir)
	}
	if c := providers.CapabilitiesOf(pr); c != (providers.Capabilities{Fence: true, PowerOn: true, VIP: true}) {
		t.Errorf("capabilities = %+v", c)
	}
}

// A pair with a bound socket (a cluster of another state directory, or any
// other program) is not given to a new cluster.
func TestProvider_Create_SkipsBoundPair(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	want := pairAt(hashPair(cl))
	ln, err := net.Listen("tcp", p.addr(want, 5)+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !pairsBound()[want] {
		t.Fatalf("pairsBound does not see the listener on %s", ln.Addr())
	}
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(m.Address, fmt.Sprintf("127.%d.%d.", want.A, want.B)) {
		t.Fatalf("cluster %s took %s although 127.%d.%d has a bound socket", cl, m.Address, want.A, want.B)
	}
}

// Concurrent creates with the same tags (a step retried while the first
// attempt still runs) make one machine and one process.
func TestProvider_Create_ConcurrentSameTags(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	var wg sync.WaitGroup
	ms := make([]providers.Machine, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Go(func() { ms[i], errs[i] = p.Create(t.Context(), req(cl, "web", 1, 1)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[1:] {
		if m.ID != ms[0].ID || m.Address != ms[0].Address {
			t.Errorf("got %s at %s and %s at %s", ms[0].ID, ms[0].Address, m.ID, m.Address)
		}
	}
	dir, _ := p.NodeDir(ms[0].ID)
	if n := len(nodeProcs(dir)); n != 1 {
		t.Errorf("%d node processes, want 1", n)
	}
}

// BenchmarkProvider_Lifecycle measures one node's life: Create until its
// health endpoint answers, Fence (confirmed), PowerOn until it answers again,
// Destroy. The node program is this test binary (a Go program that binds its
// address and serves /healthz), so boot time includes its start-up.
func BenchmarkProvider_Lifecycle(b *testing.B) {
	dir := b.TempDir()
	b.Cleanup(func() {
		for pid := range scanProcs(func(d string) bool { return strings.HasPrefix(d, dir+"/") }) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{StateDir: dir, Command: func(string) []string { return []string{exe, "-test.run=^$"} }})
	if err != nil {
		b.Fatal(err)
	}
	var b2 [5]byte
	_, _ = rand.Read(b2[:])
	cl := "b" + hex.EncodeToString(b2[:])
	ctx := b.Context()
	waitUp := func(m providers.Machine) {
		deadline := time.Now().Add(30 * time.Second)
		for probe(ctx, m) != nil {
			if time.Now().After(deadline) {
				b.Fatalf("%s never answered", m.ID)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var boot, fence, powerOn, destroy time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		m, err := p.Create(ctx, req(cl, "web", i%150+1, i/150+1))
		if err != nil {
			b.Fatal(err)
		}
		waitUp(m)
		t1 := time.Now()
		if err := p.Fence(ctx, m.ID); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := p.PowerOn(ctx, m.ID); err != nil {
			b.Fatal(err)
		}
		waitUp(m)
		t3 := time.Now()
		if err := p.Destroy(ctx, m.ID); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		boot += t1.Sub(t0)
		fence += t2.Sub(t1)
		powerOn += t3.Sub(t2)
		destroy += t4.Sub(t3)
	}
	n := float64(b.N)
	b.ReportMetric(float64(boot.Milliseconds())/n, "ms-create-to-healthy")
	b.ReportMetric(float64(fence.Microseconds())/1000/n, "ms-fence")
	b.ReportMetric(float64(powerOn.Milliseconds())/n, "ms-poweron-to-healthy")
	b.ReportMetric(float64(destroy.Microseconds())/1000/n, "ms-destroy")
}

// A node that ignores SIGTERM is killed after the grace period, and Destroy
// still removes it.
func TestProvider_Destroy_EscalatesToSIGKILL(t *testing.T) {
	p := newTestProvider(t)
	sh, err := lookPath("sh")
	if err != nil {
		t.Skip("no sh: ", err)
	}
	p.command = func(string) []string { return []string{sh, "-c", `trap "" TERM; exec sleep 300`} }
	m, err := p.Create(t.Context(), req(uniqueCluster(t), "svc", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := p.NodeDir(m.ID)
	eventually(t, "sleep running with SIGTERM ignored", func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pidFromFile(dir)))
		if err != nil {
			return err
		}
		// SigIgn bit 15 (SIGTERM) is set once the trap ran.
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "SigIgn:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if n&(1<<(uint(syscall.SIGTERM)-1)) != 0 && strings.Contains(string(b), "Name:\tsleep") {
					return nil
				}
			}
		}
		return fmt.Errorf("not yet ignoring SIGTERM")
	})
	if err := p.Destroy(t.Context(), m.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if pids := nodeProcs(dir); len(pids) != 0 {
		t.Fatalf("processes %v survive Destroy", pids)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node dir after Destroy: %v", err)
	}
}

// Two state directories allocating the same cluster name at once (two test
// runs of one test, two users) get distinct pairs: the machine-wide claims
// see a pair allocated but not yet bound. Once the first state directory is
// gone its claim is stale and the pair can be taken again.
func TestProvider_EnsurePair_SameNameTwoStateDirs(t *testing.T) {
	old := claimsDir
	claimsDir = t.TempDir()
	t.Cleanup(func() { claimsDir = old })
	cl := uniqueCluster(t)
	var ps [2]*Provider
	for i := range ps {
		p, err := New(Config{StateDir: t.TempDir(), Command: testCommand(t)})
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	var wg sync.WaitGroup
	var aps [2]addrPair
	var errs [2]error
	for i := range ps {
		wg.Go(func() { aps[i], errs[i] = ps[i].ensurePair(t.Context(), cl) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	if aps[0] == aps[1] {
		t.Fatalf("both state directories got 127.%d.%d for cluster %s", aps[0].A, aps[0].B, cl)
	}
	first := 0
	if aps[1] == pairAt(hashPair(cl)) {
		first = 1
	}
	if err := os.RemoveAll(ps[first].clusterDir(cl)); err != nil {
		t.Fatal(err)
	}
	p3, err := New(Config{StateDir: t.TempDir(), Command: testCommand(t)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p3.ensurePair(t.Context(), cl)
	if err != nil {
		t.Fatal(err)
	}
	if got != pairAt(hashPair(cl)) {
		t.Errorf("after the owner's cluster was removed, got 127.%d.%d, want the hashed pair 127.%d.%d back", got.A, got.B, pairAt(hashPair(cl)).A, pairAt(hashPair(cl)).B)
	}
	// Claims whose state directory is gone are pruned at the next
	// allocation; the live ones stay.
	if err := os.RemoveAll(ps[1-first].clusterDir(cl)); err != nil {
		t.Fatal(err)
	}
	if _, err := p3.ensurePair(t.Context(), uniqueCluster(t)); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(claimsDir)
	if err != nil {
		t.Fatal(err)
	}
	var claims []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "127.") {
			claims = append(claims, e.Name())
		}
	}
	if len(claims) != 2 {
		t.Errorf("claims after pruning = %v, want the two of p3's live clusters", claims)
	}
}

// The hooks another provider (lab) builds on: Type and FirstOctet shape
// meta-data and addresses, Prepare runs before the start and its error
// fails it, PairTaken steers allocation.
func TestProvider_Create_ReuseHooks(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { killUnder(t, dir) })
	var prepared []string
	fail := false
	skipped := 0
	p, err := New(Config{
		StateDir:   dir,
		Command:    func(string) []string { return []string{"sleep", "60"} },
		Type:       "lab",
		FirstOctet: 10,
		PairTaken: func(a, b int) bool {
			if skipped == 0 {
				skipped++
				return true
			}
			return false
		},
		Prepare: func(nodeDir string) error {
			if _, err := ReadMetaData(nodeDir); err != nil {
				t.Errorf("Prepare before meta-data is complete: %v", err)
			}
			prepared = append(prepared, filepath.Base(nodeDir))
			if fail {
				return errors.New("no network")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := uniqueCluster(t)
	m, err := p.Create(t.Context(), req(cl, "web", 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := pairAt((hashPair(cl) + 1) % pairSpace) // the hashed pair was "taken"
	if m.Address != fmt.Sprintf("10.%d.%d.10", want.A, want.B) {
		t.Errorf("address %s, want 10.%d.%d.10 (first octet 10, hashed pair skipped)", m.Address, want.A, want.B)
	}
	ndir, _ := p.NodeDir(m.ID)
	md, err := ReadMetaData(ndir)
	if err != nil || md.Provider != "lab" {
		t.Errorf("meta-data provider %q (%v), want lab", md.Provider, err)
	}
	vip, err := p.AllocateVIP(cl, "www")
	if err != nil || vip != fmt.Sprintf("10.%d.%d.200", want.A, want.B) {
		t.Errorf("AllocateVIP = %s, %v", vip, err)
	}
	if err := p.AssignVIP(t.Context(), vip, m.ID); err != nil {
		t.Errorf("AssignVIP(%s): %v", vip, err)
	}
	fail = true
	if _, err := p.Create(t.Context(), req(cl, "web", 2, 1)); err == nil || !strings.Contains(err.Error(), "no network") {
		t.Errorf("Create with a failing Prepare = %v, want its error", err)
	}
	if want := []string{"web-1.g1", "web-2.g1"}; !slices.Equal(prepared, want) {
		t.Errorf("prepared %v, want %v", prepared, want)
	}
}
