package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
)

// The test binary doubles as a node program. With HACTL_TEST_NODE=1 it
// reads meta-data.json from HACTL_NODE_DIR, serves GET /healthz ("ok") on
// local-ipv4:7480, and supervises one "service" child (the test binary with
// HACTL_TEST_SERVICE=1, which just blocks), restarting it when it dies and
// recording its pid where converge/supervise records services:
// <dir>/root/var/lib/hactl/supervise/svc.json.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("HACTL_TEST_SERVICE") == "1":
		select {}
	case os.Getenv("HACTL_TEST_NODE") == "1":
		os.Exit(runTestNode())
	}
	os.Setenv("HACTL_TEST_NODE", "1") // node processes inherit it
	os.Exit(m.Run())
}

func runTestNode() int {
	dir := os.Getenv(local.NodeDirEnv)
	md, err := local.ReadMetaData(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 2
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(md.LocalIPv4, "7480"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 3
	}
	go superviseTestService(dir)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	fmt.Fprintln(os.Stderr, "test node:", http.Serve(ln, mux))
	return 1
}

func superviseTestService(dir string) {
	exe, _ := os.Executable()
	sdir := filepath.Join(dir, "root", "var", "lib", "hactl", "supervise")
	_ = os.MkdirAll(sdir, 0o755)
	for {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "HACTL_TEST_SERVICE=1", "HACTL_TEST_NODE=0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b, _ := json.Marshal(map[string]any{"pid": cmd.Process.Pid, "name": "svc", "command": cmd.Args})
		_ = os.WriteFile(filepath.Join(sdir, "svc.json.tmp"), b, 0o644)
		_ = os.Rename(filepath.Join(sdir, "svc.json.tmp"), filepath.Join(sdir, "svc.json"))
		_ = cmd.Wait()
		time.Sleep(50 * time.Millisecond)
	}
}

// testEnv is a local provider on a fresh state directory with a unique
// cluster name. Cleanup kills every process of every node under it.
type testEnv struct {
	p       *local.Provider
	cluster string
	dir     string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { killUnder(t, dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := local.New(local.Config{StateDir: dir, Command: func(string) []string { return []string{exe, "-test.run=^$"} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("local.New: %v", err)
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	return &testEnv{p: p, cluster: "c" + hex.EncodeToString(b[:]), dir: dir}
}

// killUnder SIGKILLs every process whose environment names a node
// directory under stateDir (node processes and their services), until none
// is left.
func killUnder(t *testing.T, stateDir string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := procsUnder(stateDir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup: processes under %s survive SIGKILL: %v", stateDir, pids)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procsUnder(stateDir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || !processAlive(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if strings.HasPrefix(kv, local.NodeDirEnv+"="+stateDir+string(filepath.Separator)) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

func (e *testEnv) create(t *testing.T, role string, slot, gen int) providers.Machine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := e.p.Create(ctx, providers.CreateRequest{Cluster: e.cluster, Role: role, Slot: slot, Generation: gen})
	if err != nil {
		t.Fatalf("create %s-%d: %v", role, slot, err)
	}
	return m
}

func (e *testEnv) cl() *ProviderCluster {
	return &ProviderCluster{Name: e.cluster, Providers: map[string]providers.Provider{"local": e.p}, ProviderTypes: map[string]string{"local": "local"}}
}

func (e *testEnv) injector() *Injector {
	return &Injector{Providers: map[string]providers.Provider{"local": e.p}}
}

// node returns the current observation of the named node (fatal when absent).
func (e *testEnv) node(t *testing.T, name string) Node {
	t.Helper()
	snap, err := e.cl().Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range snap.Current() {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("node %s not in %+v", name, snap.Nodes)
	return Node{}
}

// waitHealthy waits until every named node is healthy.
func (e *testEnv) waitHealthy(t *testing.T, names ...string) Snapshot {
	t.Helper()
	var snap Snapshot
	eventually(t, "nodes healthy", func() error {
		var err error
		snap, err = e.cl().Snapshot(context.Background())
		if err != nil {
			return err
		}
		cur := map[string]Node{}
		for _, n := range snap.Current() {
			cur[n.Name] = n
		}
		for _, name := range names {
			if !cur[name].Healthy() {
				return fmt.Errorf("%s is %s/%s", name, cur[name].State, cur[name].Health)
			}
		}
		return nil
	})
	return snap
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

func getHealth(addr string) error {
	c := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(addr, "7480") + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
