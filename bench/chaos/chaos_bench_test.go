// Package chaos_test benchmarks what bounds chaos's measurements: how long
// one observation of the cluster takes (ProviderCluster.Snapshot over real
// local nodes: List plus one /healthz per node), which is the resolution of
// detection and recovery times; how long a confirmed fault takes to inject
// (destroy, power-off, kill-agent, pause-agent on real local node processes);
// and the pure parts (a stage-1 draw with its outage check on 1,000 nodes,
// rendering the HTML report of a long run). Run:
//
//	go test -run='^$' -bench=. -benchtime=20x -count=1 ./bench/chaos/
package chaos_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hactl/hactl/chaos"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/local"
)

// With HACTL_BENCH_NODE=1 the test binary is a node: it serves GET /healthz
// on local-ipv4:7480 until killed.
func TestMain(m *testing.M) {
	if os.Getenv("HACTL_BENCH_NODE") == "1" {
		md, err := local.ReadMetaData(os.Getenv(local.NodeDirEnv))
		if err != nil {
			os.Exit(2)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(md.LocalIPv4, "7480"))
		if err != nil {
			os.Exit(3)
		}
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		os.Exit(1)
	}
	os.Setenv("HACTL_BENCH_NODE", "1")
	os.Exit(m.Run())
}

type env struct {
	p       *local.Provider
	cluster string
	gen     int
}

func newEnv(b *testing.B) *env {
	dir := b.TempDir()
	b.Cleanup(func() { killUnder(dir) })
	exe, _ := os.Executable()
	p, err := local.New(local.Config{StateDir: dir, Command: func(string) []string { return []string{exe, "-test.run=^$"} },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	var r [5]byte
	_, _ = rand.Read(r[:])
	return &env{p: p, cluster: "b" + hex.EncodeToString(r[:])}
}

func killUnder(dir string) {
	for range 200 {
		ents, _ := os.ReadDir("/proc")
		n := 0
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
			if err != nil || !strings.Contains(string(b), local.NodeDirEnv+"="+dir+"/") {
				continue
			}
			var pid int
			fmt.Sscan(e.Name(), &pid)
			_ = syscall.Kill(pid, syscall.SIGCONT)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) cl() *chaos.ProviderCluster {
	return &chaos.ProviderCluster{Name: e.cluster, Providers: map[string]providers.Provider{"local": e.p}, ProviderTypes: map[string]string{"local": "local"}}
}

// healthy creates web-slot and waits until the snapshot shows it healthy.
func (e *env) healthy(b *testing.B, slot int) chaos.Node {
	e.gen++
	if _, err := e.p.Create(context.Background(), providers.CreateRequest{Cluster: e.cluster, Role: "web", Slot: slot, Generation: e.gen}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		snap, err := e.cl().Snapshot(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range snap.Current() {
			if n.Slot == slot && n.Generation == e.gen && n.Healthy() {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("web-%d never healthy", slot)
	return chaos.Node{}
}

func BenchmarkSnapshot_8Nodes(b *testing.B) {
	e := newEnv(b)
	for slot := 1; slot <= 8; slot++ {
		e.healthy(b, slot)
	}
	cl := e.cl()
	b.ResetTimer()
	for b.Loop() {
		snap, err := cl.Snapshot(context.Background())
		if err != nil || len(snap.Nodes) != 8 {
			b.Fatalf("snapshot: %v, %d nodes", err, len(snap.Nodes))
		}
	}
}

func benchFault(b *testing.B, k chaos.FaultKind) {
	e := newEnv(b)
	inj := &chaos.Injector{Providers: map[string]providers.Provider{"local": e.p}}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		n := e.healthy(b, 1)
		start := time.Now()
		got, err := inj.Inject(context.Background(), k, n)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if got.Undo != nil {
			_ = got.Undo()
		}
		_ = e.p.Destroy(context.Background(), n.Machine)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/fault")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkInject_Destroy(b *testing.B)    { benchFault(b, chaos.FaultDestroy) }
func BenchmarkInject_PowerOff(b *testing.B)   { benchFault(b, chaos.FaultPowerOff) }
func BenchmarkInject_KillAgent(b *testing.B)  { benchFault(b, chaos.FaultKillAgent) }
func BenchmarkInject_PauseAgent(b *testing.B) { benchFault(b, chaos.FaultPauseAgent) }

func bigCluster(n int) (chaos.Spec, chaos.Snapshot) {
	spec := chaos.Spec{Cluster: "big", Voters: 5, Quorum: 3}
	var snap chaos.Snapshot
	for r := 0; r < 10; r++ {
		role := fmt.Sprintf("r%d", r)
		spec.Roles = append(spec.Roles, chaos.RoleSpec{Name: role, Count: n / 10, CanLose: n/10 - 1})
		for s := 1; s <= n/10; s++ {
			snap.Nodes = append(snap.Nodes, chaos.Node{Name: fmt.Sprintf("%s-%d", role, s), Role: role, Slot: s, Generation: 1,
				State: providers.PowerOn, Health: chaos.HealthPassing, Machine: providers.MachineID(fmt.Sprintf("big/%s-%d.g1", role, s))})
		}
	}
	return spec, snap
}

func BenchmarkSelect_Stage1_1000Nodes(b *testing.B) {
	spec, snap := bigCluster(1000)
	for i := 0; b.Loop(); i++ {
		if _, err := chaos.Select(chaos.RoundRand(42, i), spec, snap, chaos.SelectOptions{Stage: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReport_HTML renders a one-hour run: 10 rounds, 8 nodes, 3
// probes sampled every second.
func BenchmarkReport_HTML(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rep := &chaos.Report{Cluster: "blog", Stage: 1, Seed: 1, Started: t0, Finished: t0.Add(time.Hour), Availability: 0.999}
	for i := 1; i <= 8; i++ {
		ns := chaos.NodeSeries{Name: fmt.Sprintf("web-%d", i)}
		for k := 0; k < 10; k++ {
			from := t0.Add(time.Duration(k) * 6 * time.Minute)
			ns.Spans = append(ns.Spans, chaos.Span{From: from, To: from.Add(5 * time.Minute), State: "healthy", Generation: k + 1},
				chaos.Span{From: from.Add(5 * time.Minute), To: from.Add(6 * time.Minute), State: "missing"})
		}
		rep.Timeline = append(rep.Timeline, ns)
	}
	for p := 0; p < 3; p++ {
		ps := chaos.ProbeSeries{Name: fmt.Sprintf("http=http://127.0.0.%d/", p)}
		for s := 0; s < 3600; s++ {
			ps.Samples = append(ps.Samples, chaos.Sample{At: t0.Add(time.Duration(s) * time.Second), OK: s%97 != 0})
		}
		rep.Probes = append(rep.Probes, ps)
	}
	for k := 1; k <= 10; k++ {
		rec := 20.0
		rep.Rounds = append(rep.Rounds, chaos.Round{N: k, Fault: chaos.FaultDestroy, FaultAt: t0.Add(time.Duration(k) * 5 * time.Minute), Recovered: true, RecoverySeconds: &rec})
	}
	rep.Evaluate()
	var size int
	for b.Loop() {
		h, err := rep.HTML()
		if err != nil {
			b.Fatal(err)
		}
		size = len(h)
	}
	b.ReportMetric(float64(size)/1024, "KiB")
}
