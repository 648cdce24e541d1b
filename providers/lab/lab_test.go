package lab

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
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
	"github.com/hactl/hactl/providers/providertest"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv("HACTL_LAB_DIAL"); addr != "" {
		// A dial from inside a namespace (see dialFrom).
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	if os.Getenv("HACTL_LAB_TEST_NODE") == "1" {
		os.Exit(runTestNode())
	}
	os.Setenv("HACTL_LAB_TEST_NODE", "1")
	os.Exit(m.Run())
}

const testNodePort = "7480"

// runTestNode is a lab node for the tests: an HTTP server on the node's
// address, reached only if the namespace, veth and bridge work.
func runTestNode() int {
	md, err := local.ReadMetaData(os.Getenv(local.NodeDirEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 2
	}
	// Every address of its own namespace: its own and the VIPs it holds.
	ln, err := net.Listen("tcp", ":"+testNodePort)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test node:", err)
		return 3
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, md.InstanceID) })
	fmt.Fprintln(os.Stderr, "test node:", http.Serve(ln, mux))
	return 1
}

// requireLab skips unless the lab can run here, installing the missing
// packages on Debian when root.
func requireLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the lab provider needs root (network namespaces)")
	}
	if Check() != nil {
		if _, err := exec.LookPath("apt-get"); err == nil {
			out, err := exec.Command("apt-get", "install", "-y", "-q", "iproute2", "nftables", "iputils-arping", "util-linux").CombinedOutput()
			if err != nil {
				t.Logf("apt-get install: %v\n%s", err, out)
			}
		}
	}
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// newTestProvider returns a lab provider on a fresh state directory whose
// cleanup kills every node process and removes every namespace, veth and
// bridge of its clusters, whatever the test did.
func newTestProvider(t *testing.T) *Provider {
	t.Helper()
	requireLab(t)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupState(t, dir) })
	p, err := New(Config{
		StateDir: dir,
		Command:  func(string) []string { return []string{exe, "-test.run=^$"} },
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

// cleanupState fences every node under stateDir and removes the lab's
// namespaces and interfaces of every cluster there.
func cleanupState(t *testing.T, stateDir string) {
	nets, _ := filepath.Glob(filepath.Join(stateDir, "*", local.NetFile))
	for _, nf := range nets {
		cluster := filepath.Base(filepath.Dir(nf))
		lp, err := local.New(local.Config{StateDir: stateDir, Type: Type, FirstOctet: firstOctet})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			continue
		}
		ms, _ := lp.List(context.Background(), cluster)
		for _, m := range ms {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := lp.Fence(ctx, m.ID); err != nil {
				t.Errorf("cleanup: fence %s: %v", m.ID, err)
			}
			cancel()
		}
		b, err := os.ReadFile(nf)
		if err != nil {
			continue
		}
		var v struct{ A, B int }
		if json.Unmarshal(b, &v) != nil {
			continue
		}
		tag := fmt.Sprintf("%02x%02x", v.A, v.B)
		ents, _ := os.ReadDir(netnsDir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), Prefix+"n-"+tag+"-") {
				_ = exec.Command("ip", "netns", "del", e.Name()).Run()
			}
		}
		n, _ := namesOf(fmt.Sprintf("10.%d.%d.1", v.A, v.B))
		_ = removeBridge(n)
	}
}

func uniqueCluster(t *testing.T) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "lt" + hex.EncodeToString(b[:])
}

func probe(ctx context.Context, m providers.Machine) error {
	return get(ctx, m.Address, "/healthz", "ok")
}

func get(ctx context.Context, addr, path, want string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
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
	if string(b) != want {
		return fmt.Errorf("GET %s%s = %q, want %q", addr, path, b, want)
	}
	return nil
}

// dialFrom dials addr:testNodePort from inside namespace ns.
func dialFrom(t *testing.T, ns, addr string) error {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+nsPath(ns), "--", exe)
	cmd.Env = append(os.Environ(), "HACTL_LAB_DIAL="+net.JoinHostPort(addr, testNodePort), "HACTL_LAB_TEST_NODE=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dial %s from %s: %v: %s", addr, ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

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
		time.Sleep(50 * time.Millisecond)
	}
}

func create(t *testing.T, p *Provider, cluster, role string, slot int) providers.Machine {
	t.Helper()
	m, err := p.Create(t.Context(), providers.CreateRequest{Cluster: cluster, Role: role, Slot: slot, Generation: 1, UserData: "#cloud-config\n"})
	if err != nil {
		t.Fatalf("Create %s-%d: %v", role, slot, err)
	}
	eventually(t, "health of "+m.Name, func() error { return probe(t.Context(), m) })
	return m
}

func TestProvider_Conformance(t *testing.T) {
	requireLab(t)
	providertest.RunConformance(t, func(t *testing.T) providers.Provider { return newTestProvider(t) }, providertest.Options{
		Probe:       probe,
		Timeout:     30 * time.Second,
		Poll:        50 * time.Millisecond,
		Concurrency: 3,
		VIP: func(t *testing.T, p providers.Provider, cluster string) string {
			v, err := p.(*Provider).AllocateVIP(cluster, "www")
			if err != nil {
				t.Fatalf("AllocateVIP: %v", err)
			}
			return v
		},
	})
}

func TestProvider_Create_NodeInOwnNamespace(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	m := create(t, p, cl, "web", 1)
	if !strings.HasPrefix(m.Address, "10.") {
		t.Fatalf("address %s is not a 10.A.B.C lab address", m.Address)
	}
	ns, err := p.Namespace(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The node process runs in that namespace.
	dir, _ := p.NodeDir(m.ID)
	pid, err := os.ReadFile(filepath.Join(dir, local.PIDFile))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Readlink("/proc/" + strings.TrimSpace(string(pid)) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(nsPath(ns), &st); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("net:[%d]", st.Ino); got != want {
		t.Errorf("node process is in %s, want namespace %s (%s)", got, ns, want)
	}
	strays, err := Strays()
	if err != nil || !slices.Contains(strays, ns) {
		t.Errorf("Strays() = %v, %v; want it to list %s", strays, err, ns)
	}
	// Fence removes the namespace; PowerOn builds it again.
	if err := p.Fence(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	if exists(nsPath(ns)) {
		t.Errorf("namespace %s still exists after Fence", ns)
	}
	if err := probe(t.Context(), m); err == nil {
		t.Errorf("fenced node still answers")
	}
	if err := p.PowerOn(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "health after power on", func() error { return probe(t.Context(), m) })
	// Destroying the last node removes the bridge and the host handle.
	n, _ := namesOf(m.Address)
	if err := p.Destroy(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{nsPath(ns), nsPath(n.host), "/sys/class/net/" + n.bridge, "/sys/class/net/" + n.veth} {
		if exists(path) {
			t.Errorf("%s still exists after the cluster's last node was destroyed", path)
		}
	}
}

func TestProvider_Partition_FromPeerAndHeal(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	a := create(t, p, cl, "lb", 1)
	b := create(t, p, cl, "lb", 2)
	c := create(t, p, cl, "web", 1)
	nsB, _ := p.Namespace(b.ID)
	nsC, _ := p.Namespace(c.ID)
	if err := dialFrom(t, nsB, a.Address); err != nil {
		t.Fatalf("before the partition: %v", err)
	}

	if err := p.Partition(t.Context(), a.ID, []providers.MachineID{b.ID}); err != nil {
		t.Fatal(err)
	}
	if err := dialFrom(t, nsB, a.Address); err == nil {
		t.Errorf("lb-2 reaches lb-1 across the partition")
	}
	if err := dialFrom(t, nsC, a.Address); err != nil {
		t.Errorf("web-1 (not in the partition) cannot reach lb-1: %v", err)
	}
	if err := probe(t.Context(), a); err != nil {
		t.Errorf("the host cannot reach lb-1 (not in the partition): %v", err)
	}

	// From everyone: the host is cut off too.
	if err := p.Partition(t.Context(), a.ID, nil); err != nil {
		t.Fatal(err)
	}
	if err := probe(t.Context(), a); err == nil {
		t.Errorf("the host reaches lb-1 partitioned from everyone")
	}
	if err := dialFrom(t, nsC, a.Address); err == nil {
		t.Errorf("web-1 reaches lb-1 partitioned from everyone")
	}

	if err := p.Heal(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(t.Context(), a.ID); err != nil {
		t.Fatalf("second Heal: %v", err)
	}
	if err := dialFrom(t, nsB, a.Address); err != nil {
		t.Errorf("after heal: %v", err)
	}
	if err := probe(t.Context(), a); err != nil {
		t.Errorf("after heal, from the host: %v", err)
	}
}

func TestProvider_DropShare(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	m := create(t, p, cl, "web", 1)
	if err := p.DropShare(t.Context(), m.ID, 100); err != nil {
		t.Fatal(err)
	}
	if err := probe(t.Context(), m); err == nil {
		t.Errorf("node answers with 100%% loss")
	}
	if err := p.DropShare(t.Context(), m.ID, 30); err != nil {
		t.Fatal(err)
	}
	ns, _ := p.Namespace(m.ID)
	out, err := exec.Command("nsenter", "--net="+nsPath(ns), "--", "nft", "list", "table", "inet", lossTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "numgen random mod 100 < 30 drop") {
		t.Errorf("loss table has no 30%% rule:\n%s", out)
	}
	if err := p.DropShare(t.Context(), m.ID, 101); err == nil {
		t.Errorf("DropShare(101) succeeded")
	}
	if err := p.Heal(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "health after heal", func() error { return probe(t.Context(), m) })
	// Nothing to heal on a fenced node or a destroyed one.
	if err := p.Fence(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(t.Context(), m.ID); err != nil {
		t.Errorf("Heal of a fenced node: %v", err)
	}
	if err := p.DropShare(t.Context(), m.ID, 10); err == nil {
		t.Errorf("DropShare on a fenced node succeeded")
	}
	if err := p.Destroy(t.Context(), m.ID); err != nil {
		t.Fatal(err)
	}
	if err := p.Heal(t.Context(), m.ID); err != nil {
		t.Errorf("Heal of a destroyed node: %v", err)
	}
}

func TestBindVIP_MovesBetweenNodes(t *testing.T) {
	p := newTestProvider(t)
	cl := uniqueCluster(t)
	a := create(t, p, cl, "lb", 1)
	b := create(t, p, cl, "lb", 2)
	vip, err := p.AllocateVIP(cl, "www")
	if err != nil {
		t.Fatal(err)
	}
	bind := func(m providers.Machine, held bool) {
		t.Helper()
		ns, _ := p.Namespace(m.ID)
		exe, _ := os.Executable()
		// BindVIP acts on the caller's namespace: run it there as the agent does.
		cmd := exec.Command("nsenter", "--net="+nsPath(ns), "--", exe, "-test.run=^TestBindVIPHelper$")
		cmd.Env = append(os.Environ(), "HACTL_LAB_TEST_NODE=", fmt.Sprintf("HACTL_LAB_BIND=%s,%t", vip, held))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("BindVIP(%s, %t) in %s: %v: %s", vip, held, m.Name, err, out)
		}
	}
	bind(a, true)
	eventually(t, "vip answers from lb-1", func() error { return get(t.Context(), vip, "/whoami", "lb-1.g1") })
	if ok, _ := p.VIPHeld(t.Context(), a.ID, vip); !ok {
		t.Errorf("lb-1 does not show %s on its interface", vip)
	}
	bind(a, false)
	bind(a, false) // idempotent
	bind(b, true)
	if ok, _ := p.VIPHeld(t.Context(), a.ID, vip); ok {
		t.Errorf("lb-1 still has %s after release", vip)
	}
	if ok, _ := p.VIPHeld(t.Context(), b.ID, vip); !ok {
		t.Errorf("lb-2 does not show %s on its interface", vip)
	}
	// The gratuitous ARP moves the host's neighbour entry to lb-2.
	eventually(t, "vip answers from lb-2", func() error { return get(t.Context(), vip, "/whoami", "lb-2.g1") })
}

// TestBindVIPHelper runs BindVIP in the namespace it was started in (see
// TestBindVIP_MovesBetweenNodes); it does nothing in a normal run.
func TestBindVIPHelper(t *testing.T) {
	spec := os.Getenv("HACTL_LAB_BIND")
	if spec == "" {
		t.Skip("helper: run by TestBindVIP_MovesBetweenNodes")
	}
	vip, held, _ := strings.Cut(spec, ",")
	if err := BindVIP(context.Background(), vip, held == "true"); err != nil {
		t.Fatal(err)
	}
}
