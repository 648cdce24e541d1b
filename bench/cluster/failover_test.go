// Package cluster_test measures hactl's control plane the way
// bench/cluster/failover.sh measures keepalived: three in-process nodes on
// loopback (lb-1, lb-2 and a witness) with DefaultConfig timings, real
// gossip, raft over mutual TLS, and a VIP that the holder binds on a
// loopback address and serves HTTP on. Each repetition starts a fresh
// cluster, waits for lb-1 to serve the VIP, crashes lb-1 (its node stops
// without leaving the cluster and its listener closes, as with kill -9) and
// measures:
//
//   - detection: kill → every survivor marks lb-1 dead in gossip;
//   - VIP failover: kill → an HTTP GET to the VIP is answered by lb-2.
//
// The provider is an in-memory inventory whose Fence confirms at once (the
// local provider's fence of an already dead process is a kill and a wait
// for exit, a few milliseconds). Run (HACTL_BENCH=1 so that go test ./...
// skips it):
//
//	HACTL_BENCH=1 go test -count=1 -run TestBench_Failover -v ./bench/cluster/
package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/providers"
)

type inventory struct {
	mu sync.Mutex
	ms map[providers.MachineID]providers.Machine
}

func (p *inventory) Create(context.Context, providers.CreateRequest) (providers.Machine, error) {
	return providers.Machine{}, fmt.Errorf("bench inventory creates nothing")
}

func (p *inventory) Destroy(_ context.Context, id providers.MachineID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.ms, id)
	return nil
}

func (p *inventory) List(_ context.Context, c string) ([]providers.Machine, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []providers.Machine
	for _, m := range p.ms {
		if m.Cluster == c {
			out = append(out, m)
		}
	}
	return out, nil
}

func (p *inventory) Fence(_ context.Context, id providers.MachineID) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.ms[id]
	if !ok {
		return providers.ErrNotFound
	}
	m.State = providers.PowerOff
	p.ms[id] = m
	return nil
}

// vipServer binds the VIP for whichever node holds it and answers with
// the holder's name.
type vipServer struct {
	mu  sync.Mutex
	lns map[string]*http.Server // node → server on the VIP
}

func (v *vipServer) callback(node, addr string) func(string, bool) error {
	return func(_ string, held bool) error {
		v.mu.Lock()
		defer v.mu.Unlock()
		if !held {
			if srv := v.lns[node]; srv != nil {
				srv.Close() // closes open connections too, as a killed process would
				delete(v.lns, node)
			}
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, node) })}
		v.lns[node] = srv
		go srv.Serve(ln)
		return nil
	}
}

func (v *vipServer) closeAll() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for n, srv := range v.lns {
		srv.Close()
		delete(v.lns, n)
	}
}

type member struct {
	n      *cluster.Node
	cancel context.CancelFunc
	done   chan struct{}
}

func (m *member) kill() { m.cancel(); <-m.done }

func answer(c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runOnce(t *testing.T, rep int) (detect, failover time.Duration, leaderKilled bool) {
	ca, err := cluster.GenerateCA("bench")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := cluster.GenerateKeyring()
	if err != nil {
		t.Fatal(err)
	}
	vip := "127.77.0." + strconv.Itoa(10+rep%200)
	vipAddr := vip + ":18000"
	inv := &inventory{ms: map[providers.MachineID]providers.Machine{}}
	vs := &vipServer{lns: map[string]*http.Server{}}
	t.Cleanup(vs.closeAll)
	dir := t.TempDir()
	var nodes []*member
	for _, spec := range []struct {
		name, role string
		slot       int
		witness    bool
	}{{"lb-1", "lb", 1, false}, {"lb-2", "lb", 2, false}, {"witness-1", "witness", 1, true}} {
		c := cluster.DefaultConfig()
		c.Name, c.Role, c.Slot, c.Cluster, c.Witness = spec.name, spec.role, spec.slot, "bench", spec.witness
		c.BindAddr = netip.MustParseAddr("127.0.0.1")
		c.Keyring = keys
		if c.TLS, err = ca.Issue(spec.name, net.ParseIP("127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		c.DataDir = dir + "/" + spec.name
		c.BootstrapExpect = 3
		c.JoinRetry = 200 * time.Millisecond
		c.Provider = inv
		c.VIPs = []cluster.VIPSpec{{Address: vip, Role: "lb"}}
		c.VIPChanged = vs.callback(spec.name, vipAddr)
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("HACTL_BENCH_LOG") != "" {
			c.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", spec.name)
		}
		for _, m := range nodes {
			c.Join = append(c.Join, m.n.GossipAddr())
		}
		n, err := cluster.New(c)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		m := &member{n: n, cancel: cancel, done: make(chan struct{})}
		go func() { n.Run(ctx); close(m.done) }()
		t.Cleanup(m.kill)
		nodes = append(nodes, m)
		id := providers.MachineID("bench/" + spec.name)
		inv.ms[id] = providers.Machine{ID: id, Cluster: "bench", Role: spec.role, Slot: spec.slot, Generation: 1, Name: spec.name, Address: n.GossipAddr(), State: providers.PowerOn}
	}
	client := &http.Client{Timeout: 100 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + vipAddr + "/"
	poll(t, "lb-1 serving the VIP with every member alive", func() bool {
		for _, m := range nodes {
			alive := 0
			for _, mb := range m.n.View().Members() {
				if mb.State == cluster.StateAlive {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return answer(client, url) == "lb-1"
	})
	leaderKilled = nodes[0].n.IsLeader()
	start := time.Now()
	nodes[0].kill()
	for detect == 0 || failover == 0 {
		if detect == 0 {
			all := true
			for _, m := range nodes[1:] {
				for _, mb := range m.n.View().Members() {
					if mb.Name == "lb-1" && mb.State != cluster.StateDead {
						all = false
					}
				}
			}
			if all {
				detect = time.Since(start)
			}
		}
		if failover == 0 && answer(client, url) == "lb-2" {
			failover = time.Since(start)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("repetition %d: no failover after 60s (detect %v)", rep, detect)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return detect, failover, leaderKilled
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func TestBench_Failover(t *testing.T) {
	if os.Getenv("HACTL_BENCH") == "" {
		t.Skip("benchmark: set HACTL_BENCH=1")
	}
	reps := 10
	if s := os.Getenv("HACTL_BENCH_REPS"); s != "" {
		reps, _ = strconv.Atoi(s)
	}
	var det, fo, foLeader, foFollower []time.Duration
	for i := range reps {
		var d, f time.Duration
		var lk bool
		t.Run(strconv.Itoa(i), func(t *testing.T) { d, f, lk = runOnce(t, i) })
		if d == 0 {
			continue
		}
		det, fo = append(det, d), append(fo, f)
		if lk {
			foLeader = append(foLeader, f)
		} else {
			foFollower = append(foFollower, f)
		}
		t.Logf("rep %d: detection %v, VIP failover %v (killed holder was leader: %v)", i, d.Round(time.Millisecond), f.Round(time.Millisecond), lk)
	}
	if len(det) == 0 {
		t.Fatal("no repetition finished")
	}
	line := fmt.Sprintf("RESULT hactl reps=%d detection_median_ms=%d vip_failover_median_ms=%d", len(det), median(det).Milliseconds(), median(fo).Milliseconds())
	if len(foLeader) > 0 {
		line += fmt.Sprintf(" failover_median_ms_holder_was_leader=%d(n=%d)", median(foLeader).Milliseconds(), len(foLeader))
	}
	if len(foFollower) > 0 {
		line += fmt.Sprintf(" failover_median_ms_holder_was_follower=%d(n=%d)", median(foFollower).Milliseconds(), len(foFollower))
	}
	t.Log(line)
	fmt.Println(line)
}
