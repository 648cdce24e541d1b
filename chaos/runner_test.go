package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// heal runs a minimal real reconciler for the test cluster until the test
// ends: every slot of role web (1..count) that has no running machine gets
// one (an off machine is destroyed first), with a new generation. It stands
// in for the control plane, which chaos only watches.
func (e *testEnv) heal(t *testing.T, role string, count int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		defer wg.Done()
		gens := map[int]int{}
		for ctx.Err() == nil {
			ms, err := e.p.List(ctx, e.cluster)
			if err == nil {
				live := map[int]bool{}
				for _, m := range ms {
					gens[m.Slot] = max(gens[m.Slot], m.Generation)
					if m.State == providers.PowerOn {
						live[m.Slot] = true
					} else {
						_ = e.p.Destroy(ctx, m.ID)
					}
				}
				for slot := 1; slot <= count; slot++ {
					if !live[slot] {
						gens[slot]++
						_, _ = e.p.Create(ctx, providers.CreateRequest{Cluster: e.cluster, Role: role, Slot: slot, Generation: gens[slot]})
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

func webSpec(cluster string) Spec {
	return Spec{Cluster: cluster, Voters: 3, Quorum: 2,
		Roles:      []RoleSpec{{Name: "web", Count: 3, CanLose: 2, Provider: "local", ProviderType: "local"}},
		Objectives: lang.Objectives{RTO: 60 * time.Second, Availability: 0.9}}
}

func (e *testEnv) webCluster(t *testing.T) Snapshot {
	for slot := 1; slot <= 3; slot++ {
		e.create(t, "web", slot, 1)
	}
	return e.waitHealthy(t, "web-1", "web-2", "web-3")
}

func TestRunner_Run_Stage1DestroyRecovers(t *testing.T) {
	e := newTestEnv(t)
	before := e.webCluster(t)
	e.heal(t, "web", 3)
	url, _ := gitServer(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)

	ms := newMailServer(t)
	spec := webSpec(e.cluster)
	r := &Runner{Spec: spec, Cluster: e.cl(), Injector: e.injector(),
		Probes:  []Probe{&HTTPProbe{URL: up.URL}, &SMTPProbe{Addr: ms.addr}},
		Markers: []Marker{&GitMarker{URL: url}, &SMTPMarker{Addr: ms.addr, ListURL: ms.listURL, Token: "s3cret"}},
		Options: Options{Stage: 1, Rounds: 2, Seed: 42, Poll: 100 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, RoundTimeout: 60 * time.Second}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v (report %+v)", err, rep)
	}
	if !rep.Pass || rep.Seed != 42 || len(rep.Rounds) != 2 {
		t.Fatalf("pass %v seed %d rounds %d; results %+v", rep.Pass, rep.Seed, len(rep.Rounds), rep.Results)
	}
	for _, rd := range rep.Rounds {
		want, err := Select(RoundRand(42, rd.N), spec, before, SelectOptions{Stage: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(rd.Victims) != 1 || rd.Victims[0].Name != want.Victims[0].Name {
			t.Errorf("round %d victims %v, want %v (same seed, same cluster)", rd.N, victimNames(rd.Victims), want.Names())
		}
		if !rd.Recovered || rd.DetectionSeconds == nil || rd.RecoverySeconds == nil || *rd.DetectionSeconds > *rd.RecoverySeconds {
			t.Errorf("round %d: recovered %v detection %v recovery %v", rd.N, rd.Recovered, rd.DetectionSeconds, rd.RecoverySeconds)
		}
		if v := rd.Victims[0]; v.Replacement == "" || v.Replacement == string(v.Machine) {
			t.Errorf("round %d: replacement %q of %s", rd.N, v.Replacement, v.Machine)
		}
		if rd.MarkersWritten != 2 || rd.MarkersLost != 0 {
			t.Errorf("round %d: markers written %d lost %d, errors %v", rd.N, rd.MarkersWritten, rd.MarkersLost, rd.Errors)
		}
		if rd.Requests == 0 || rd.Availability != 1 {
			t.Errorf("round %d: %d requests, availability %v", rd.N, rd.Requests, rd.Availability)
		}
	}
	names := map[string]bool{}
	for _, ns := range rep.Timeline {
		names[ns.Name] = len(ns.Spans) > 0
	}
	for _, n := range []string{"web-1", "web-2", "web-3"} {
		if !names[n] {
			t.Errorf("timeline lacks %s: %+v", n, rep.Timeline)
		}
	}
	dir := t.TempDir()
	jp, hp, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{jp, hp} {
		if fi, err := os.Stat(p); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestRunner_Run_RefusesDegradedCluster(t *testing.T) {
	e := newTestEnv(t)
	e.webCluster(t)
	if _, err := e.injector().Inject(context.Background(), FaultPowerOff, e.node(t, "web-2")); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Spec: webSpec(e.cluster), Cluster: e.cl(), Injector: e.injector(), Options: Options{Stage: 1, Seed: 1}}
	rep, err := r.Run(context.Background())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "degraded: web-2") {
		t.Fatalf("Run = %v, want refused: degraded web-2", err)
	}
	if rep.Pass || !strings.Contains(rep.Refused, "web-2") {
		t.Errorf("report pass %v refused %q", rep.Pass, rep.Refused)
	}
	// Nothing was touched: web-1 and web-3 are still generation 1 and healthy.
	for _, n := range []string{"web-1", "web-3"} {
		if nd := e.node(t, n); !nd.Healthy() || nd.Generation != 1 {
			t.Errorf("%s: %+v", n, nd)
		}
	}
}

func TestRunner_Run_LeashedOnlyReports(t *testing.T) {
	e := newTestEnv(t)
	before := e.webCluster(t)
	spec := webSpec(e.cluster)
	r := &Runner{Spec: spec, Cluster: e.cl(), Injector: e.injector(), Options: Options{Stage: 2, Rounds: 3, Seed: 9, Leashed: true}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, rd := range rep.Rounds {
		want, _ := Select(RoundRand(9, rd.N), spec, before, SelectOptions{Stage: 2})
		if fmt.Sprint(victimNames(rd.Victims)) != fmt.Sprint(want.Names()) || rd.Survivor != want.Survivor || !rd.FaultAt.IsZero() {
			t.Errorf("round %d: victims %v survivor %s, want %v %s", rd.N, victimNames(rd.Victims), rd.Survivor, want.Names(), want.Survivor)
		}
	}
	for _, n := range before.Current() {
		if nd := e.node(t, n.Name); !nd.Healthy() || nd.Machine != n.Machine {
			t.Errorf("leashed run touched %s: %+v", n.Name, nd)
		}
	}
	if !rep.Pass || len(rep.Results) != 0 {
		t.Errorf("leashed run judged: pass %v results %+v", rep.Pass, rep.Results)
	}
}

func TestRunner_Run_KillSwitchStopsBeforeRound(t *testing.T) {
	e := newTestEnv(t)
	e.webCluster(t)
	d := Dir(filepath.Join(t.TempDir(), "chaos"))
	if err := d.Pause("maintenance"); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Spec: webSpec(e.cluster), Cluster: e.cl(), Injector: e.injector(), Paused: d.Paused, Options: Options{Stage: 1, Rounds: 3, Seed: 1}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rounds) != 0 || !strings.Contains(rep.Paused, "maintenance") {
		t.Errorf("rounds %d paused %q", len(rep.Rounds), rep.Paused)
	}
	if nd := e.node(t, "web-1"); nd.Generation != 1 || !nd.Healthy() {
		t.Errorf("paused run touched web-1: %+v", nd)
	}
}

func TestRunner_Run_Stage3Refused(t *testing.T) {
	r := &Runner{Spec: webSpec("x"), Options: Options{Stage: 3}}
	rep, err := r.Run(context.Background())
	if !errors.Is(err, ErrStage3) || rep.Pass || rep.Refused != ErrStage3.Error() {
		t.Errorf("Run = %v, pass %v refused %q", err, rep.Pass, rep.Refused)
	}
}

func TestRunner_Run_KillServiceRecoversInPlace(t *testing.T) {
	e := newTestEnv(t)
	before := e.webCluster(t)
	for _, n := range before.Current() {
		dir, _ := e.p.NodeDir(n.Machine)
		eventually(t, "service of "+n.Name, func() error {
			if s, err := ServicePIDs(dir); err != nil || s["svc"] == 0 {
				return fmt.Errorf("no svc yet (%v)", err)
			}
			return nil
		})
	}
	r := &Runner{Spec: webSpec(e.cluster), Cluster: e.cl(), Injector: e.injector(),
		Options: Options{Stage: 1, Seed: 5, Fault: FaultKillService, Poll: 50 * time.Millisecond, RoundTimeout: 30 * time.Second, MarkerGrace: time.Second}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rd := rep.Rounds[0]
	v := rd.Victims[0]
	if !rd.Recovered || v.Replacement != string(v.Machine) || !strings.Contains(v.Detail, "killed service svc") {
		t.Errorf("round: recovered %v replacement %q of %s detail %q errors %v", rd.Recovered, v.Replacement, v.Machine, v.Detail, rd.Errors)
	}
	if nd := e.node(t, v.Name); nd.Generation != 1 || !nd.Healthy() {
		t.Errorf("%s after service kill: %+v", v.Name, nd)
	}
}

func TestProviderCluster_Snapshot_RecoveryInFlight(t *testing.T) {
	e := newTestEnv(t)
	m1 := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	if err := e.p.Fence(context.Background(), m1.ID); err != nil {
		t.Fatal(err)
	}
	e.create(t, "web", 1, 2) // the rebuild, while generation 1 is still there
	snap := e.waitHealthy(t, "web-1")
	if fmt.Sprint(snap.Recovering) != "[web-1]" {
		t.Errorf("Recovering = %v, want [web-1]", snap.Recovering)
	}
	cur := snap.Current()
	if len(cur) != 1 || cur[0].Generation != 2 || !cur[0].Healthy() {
		t.Errorf("Current = %+v", cur)
	}
	var old Node
	for _, n := range snap.Nodes {
		if n.Generation == 1 {
			old = n
		}
	}
	if old.State != providers.PowerOff || old.Health != HealthOff {
		t.Errorf("fenced generation: %+v", old)
	}
	err := CheckOutage(Spec{Cluster: e.cluster, Roles: []RoleSpec{{Name: "web", Count: 1}}}, snap, nil, false)
	if err == nil || !strings.Contains(err.Error(), "recovery in flight: web-1") {
		t.Errorf("CheckOutage = %v", err)
	}
}

func TestRunner_Run_Stage2PowerOffAllButOne(t *testing.T) {
	e := newTestEnv(t)
	before := e.webCluster(t)
	e.heal(t, "web", 3)
	spec := webSpec(e.cluster)
	spec.Objectives.Availability = 0 // no probe in this test
	r := &Runner{Spec: spec, Cluster: e.cl(), Injector: e.injector(),
		Options: Options{Stage: 2, Seed: 3, Fault: FaultPowerOff, Poll: 100 * time.Millisecond, RoundTimeout: 60 * time.Second, MarkerGrace: time.Second}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rd := rep.Rounds[0]
	want, _ := Select(RoundRand(3, 1), spec, before, SelectOptions{Stage: 2})
	if len(rd.Victims) != 2 || rd.Survivor != want.Survivor || !strings.Contains(rd.Intent, "quorum") {
		t.Fatalf("victims %v survivor %s intent %q, want survivor %s", victimNames(rd.Victims), rd.Survivor, rd.Intent, want.Survivor)
	}
	if !rd.Recovered || len(rd.Errors) > 0 {
		t.Errorf("recovered %v errors %v", rd.Recovered, rd.Errors)
	}
	for _, v := range rd.Victims {
		if v.DetectionSeconds == nil || v.RecoverySeconds == nil || !strings.HasPrefix(v.Detail, "powered off") {
			t.Errorf("victim %s: detection %v recovery %v detail %q", v.Name, v.DetectionSeconds, v.RecoverySeconds, v.Detail)
		}
	}
	if nd := e.node(t, rd.Survivor); nd.Generation != 1 {
		t.Errorf("survivor %s was touched: %+v", rd.Survivor, nd)
	}
	// Stage 2 judges recovery, not stage 1's data rule; no marker, no rpo declared.
	if !rep.Pass {
		t.Errorf("results %+v", rep.Results)
	}
}

// dirMarker keeps each marker as a file in a directory: a real store that
// the test can lose data from.
type dirMarker struct{ dir string }

func (m dirMarker) Name() string { return "dir=" + m.dir }
func (m dirMarker) Write(_ context.Context, id string) error {
	return os.WriteFile(filepath.Join(m.dir, id), []byte(id), 0o644)
}
func (m dirMarker) Read(_ context.Context, id string) (bool, error) {
	_, err := os.Stat(filepath.Join(m.dir, id))
	if os.IsNotExist(err) {
		return false, nil
	}
	return err == nil, err
}

// A marker read back in its own round but gone by the end of the run (a
// later round destroyed the last replica that held it) is lost data too.
func TestRunner_Run_MarkerLostByLaterRound(t *testing.T) {
	e := newTestEnv(t)
	e.webCluster(t)
	e.heal(t, "web", 3)
	dir := t.TempDir()
	checks := 0
	r := &Runner{Spec: webSpec(e.cluster), Cluster: e.cl(), Injector: e.injector(),
		Markers: []Marker{dirMarker{dir}},
		// The kill switch is consulted before every round: before round 2,
		// lose what round 1 wrote.
		Paused: func() (bool, string) {
			if checks++; checks == 2 {
				ents, _ := os.ReadDir(dir)
				for _, d := range ents {
					os.Remove(filepath.Join(dir, d.Name()))
				}
			}
			return false, ""
		},
		Options: Options{Stage: 1, Rounds: 2, Seed: 5, Poll: 100 * time.Millisecond, RoundTimeout: 60 * time.Second, MarkerGrace: time.Second}}
	rep, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, rd := range rep.Rounds {
		if rd.MarkersWritten != 1 || rd.MarkersLost != 0 {
			t.Errorf("round %d: written %d lost %d; want 1, 0", rd.N, rd.MarkersWritten, rd.MarkersLost)
		}
	}
	if rep.MarkersCheckedAtEnd != 2 || len(rep.LostAtEnd) != 1 || !strings.Contains(rep.LostAtEnd[0], "(round 1)") {
		t.Errorf("end of run: checked %d, lost %v; want 2 checked, round 1's marker lost", rep.MarkersCheckedAtEnd, rep.LostAtEnd)
	}
	if rep.Pass {
		t.Errorf("run passed with a lost acknowledged marker: %+v", rep.Results)
	}
}
