package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/providers"
)

// Options tunes RunConformance for one provider. The zero value works for a
// provider whose machines need no image or size.
type Options struct {
	// Request returns the provider-specific part of a create request
	// (Region, Size, Image, UserData, Settings). The suite sets Cluster,
	// Role, Slot and Generation itself. Nil means an empty request with a
	// small user-data.
	Request func() providers.CreateRequest
	// Probe, when set, checks the machine's own workload from outside (the
	// local provider dials its health endpoint). It returns nil when the
	// machine answers. The suite expects nil after Create and PowerOn and
	// an error after Fence.
	Probe func(ctx context.Context, m providers.Machine) error
	// VIP, when set and the provider is a providers.VIPAssigner, returns an
	// address in cluster that AssignVIP accepts. Nil skips the VIP case.
	VIP func(t *testing.T, p providers.Provider, cluster string) string
	// Concurrency is how many creates of distinct slots run at once in the
	// concurrency case. Default 4.
	Concurrency int
	// Timeout bounds each wait for the provider to show a change (eventually
	// consistent APIs) and each provider call. Default 60s.
	Timeout time.Duration
	// Poll is the interval between List calls while waiting. Default 100ms.
	Poll time.Duration
}

func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.Request == nil {
		o.Request = func() providers.CreateRequest {
			return providers.CreateRequest{UserData: "#cloud-config\n# providertest\n"}
		}
	}
	return o
}

// RunConformance runs the behaviour every provider must have, one subtest per
// property. newProvider is called once per subtest and must return a fresh
// provider (its own state); it registers its own cleanup with t. Machines the
// suite creates are destroyed in t.Cleanup even when a case fails. Optional
// capabilities the provider lacks are skipped with a message.
//
// Cluster names are random ("ct" + 10 hex digits), so parallel runs against
// one account or state directory do not see each other.
func RunConformance(t *testing.T, newProvider func(t *testing.T) providers.Provider, opts Options) {
	t.Helper()
	o := opts.withDefaults()
	cases := []struct {
		name string
		run  func(t *testing.T, s *suite)
	}{
		{"Create_IdempotentForSameTags", testCreateIdempotent},
		{"List_ShowsTagsAndIsolatesClusters", testListTags},
		{"List_ReportsEveryGeneration", testListGenerations},
		{"Destroy_RemovesAndIsIdempotent", testDestroy},
		{"Fence_ConfirmedOffAndIdempotent", testFence},
		{"PowerOn_AfterFence", testPowerOn},
		{"VIP_AssignAndHolder", testVIP},
		{"Create_ConcurrentDistinctSlots", testConcurrentCreate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &suite{t: t, p: newProvider(t), o: o, cluster: randomCluster(t)}
			t.Cleanup(s.cleanup)
			tc.run(t, s)
		})
	}
}

type suite struct {
	t       *testing.T
	p       providers.Provider
	o       Options
	cluster string

	mu      sync.Mutex
	created []providers.MachineID
}

func randomCluster(t *testing.T) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random cluster name: %v", err)
	}
	return "ct" + hex.EncodeToString(b[:])
}

func (s *suite) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.t.Context(), s.o.Timeout)
}

func (s *suite) request(cluster, role string, slot, gen int) providers.CreateRequest {
	r := s.o.Request()
	r.Cluster, r.Role, r.Slot, r.Generation = cluster, role, slot, gen
	return r
}

// create makes a machine and records it for cleanup.
func (s *suite) create(t *testing.T, req providers.CreateRequest) providers.Machine {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	m, err := s.p.Create(ctx, req)
	if err != nil {
		t.Fatalf("Create(%s %s gen %d): %v", req.Cluster, req.Name(), req.Generation, err)
	}
	if m.ID == "" {
		t.Fatalf("Create(%s %s): returned an empty machine id", req.Cluster, req.Name())
	}
	s.mu.Lock()
	s.created = append(s.created, m.ID)
	s.mu.Unlock()
	return m
}

// cleanup destroys every machine the case created, with a context of its own
// (t.Context is already done when cleanups run).
func (s *suite) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	s.mu.Lock()
	ids := append([]providers.MachineID(nil), s.created...)
	s.mu.Unlock()
	for _, id := range ids {
		if err := s.p.Destroy(ctx, id); err != nil {
			s.t.Errorf("cleanup: Destroy(%s): %v", id, err)
		}
	}
}

func (s *suite) list(t *testing.T, cluster string) []providers.Machine {
	t.Helper()
	ctx, cancel := s.ctx()
	defer cancel()
	ms, err := s.p.List(ctx, cluster)
	if err != nil {
		t.Fatalf("List(%s): %v", cluster, err)
	}
	return ms
}

// waitFor polls List until cond holds, for eventually consistent providers.
// It fails the test with the last listing when the timeout passes.
func (s *suite) waitFor(t *testing.T, cluster, what string, cond func([]providers.Machine) bool) []providers.Machine {
	t.Helper()
	deadline := time.Now().Add(s.o.Timeout)
	for {
		ms := s.list(t, cluster)
		if cond(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, List(%s) still does not show %s; last listing:\n%s", s.o.Timeout, cluster, what, describe(ms))
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		case <-time.After(s.o.Poll):
		}
	}
}

// waitProbe polls Probe until it returns nil (want true) or an error (want false).
func (s *suite) waitProbe(t *testing.T, m providers.Machine, want bool) {
	t.Helper()
	if s.o.Probe == nil {
		return
	}
	deadline := time.Now().Add(s.o.Timeout)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.o.Probe(ctx, m)
		cancel()
		if (err == nil) == want {
			return
		}
		if time.Now().After(deadline) {
			if want {
				t.Fatalf("machine %s (%s) does not answer its probe after %s: %v", m.ID, m.Address, s.o.Timeout, err)
			}
			t.Fatalf("machine %s (%s) still answers its probe %s after it was fenced", m.ID, m.Address, s.o.Timeout)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("waiting for probe of %s: %v", m.ID, t.Context().Err())
		case <-time.After(s.o.Poll):
		}
	}
}

func find(ms []providers.Machine, id providers.MachineID) (providers.Machine, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return providers.Machine{}, false
}

func describe(ms []providers.Machine) string {
	if len(ms) == 0 {
		return "  (none)\n"
	}
	out := ""
	for _, m := range ms {
		out += fmt.Sprintf("  %s name=%s role=%s slot=%d gen=%d state=%s addr=%s\n", m.ID, m.Name, m.Role, m.Slot, m.Generation, m.State, m.Address)
	}
	return out
}

// identity is the part of a Machine the suite compares.
type identity struct {
	Cluster    string
	Role       string
	Slot       int
	Generation int
	Name       string
}

func identityOf(m providers.Machine) identity {
	return identity{m.Cluster, m.Role, m.Slot, m.Generation, m.Name}
}

func isOn(id providers.MachineID) func([]providers.Machine) bool {
	return func(ms []providers.Machine) bool {
		m, ok := find(ms, id)
		return ok && m.State == providers.PowerOn
	}
}

func testCreateIdempotent(t *testing.T, s *suite) {
	req := s.request(s.cluster, "web", 1, 1)
	first := s.create(t, req)
	second := s.create(t, req)
	if first.ID != second.ID {
		t.Fatalf("Create twice with the same tags made two machines: %s and %s", first.ID, second.ID)
	}
	if d := cmp.Diff(identityOf(first), identityOf(second)); d != "" {
		t.Errorf("second Create returned a different machine (-first +second):\n%s", d)
	}
	ms := s.waitFor(t, s.cluster, "web-1 running", isOn(first.ID))
	n := 0
	for _, m := range ms {
		if m.Role == "web" && m.Slot == 1 && m.Generation == 1 {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("List shows %d machines for web-1 gen 1, want 1:\n%s", n, describe(ms))
	}
	s.waitProbe(t, first, true)
}

func testListTags(t *testing.T, s *suite) {
	web := s.create(t, s.request(s.cluster, "web", 2, 1))
	lb := s.create(t, s.request(s.cluster, "lb", 1, 3))
	other := randomCluster(t)
	foreign := s.create(t, s.request(other, "web", 2, 1))

	ms := s.waitFor(t, s.cluster, "web-2 and lb-1", func(ms []providers.Machine) bool {
		_, a := find(ms, web.ID)
		_, b := find(ms, lb.ID)
		return a && b
	})
	var got []identity
	for _, m := range ms {
		got = append(got, identityOf(m))
		if m.Address == "" {
			t.Errorf("machine %s has no address", m.ID)
		}
		if m.Cluster != s.cluster || m.ID == foreign.ID {
			t.Errorf("List(%s) shows machine %s of cluster %q", s.cluster, m.ID, m.Cluster)
		}
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
	want := []identity{
		{Cluster: s.cluster, Role: "lb", Slot: 1, Generation: 3, Name: "lb-1"},
		{Cluster: s.cluster, Role: "web", Slot: 2, Generation: 1, Name: "web-2"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("List(%s) mismatch (-want +got):\n%s", s.cluster, d)
	}
	if web.Address != "" && web.Address == lb.Address {
		t.Errorf("web-2 and lb-1 share address %s", web.Address)
	}
	oms := s.waitFor(t, other, "the other cluster's web-2", func(ms []providers.Machine) bool {
		_, ok := find(ms, foreign.ID)
		return ok
	})
	for _, m := range oms {
		if m.Cluster != other {
			t.Errorf("List(%s) returned machine %s of cluster %q", other, m.ID, m.Cluster)
		}
	}
	if len(oms) != 1 {
		t.Errorf("List(%s) = %d machines, want 1:\n%s", other, len(oms), describe(oms))
	}
}

func testListGenerations(t *testing.T, s *suite) {
	old := s.create(t, s.request(s.cluster, "web", 1, 1))
	cur := s.create(t, s.request(s.cluster, "web", 1, 2))
	if old.ID == cur.ID {
		t.Fatalf("generations 1 and 2 of web-1 got the same id %s", old.ID)
	}
	ms := s.waitFor(t, s.cluster, "both generations of web-1", func(ms []providers.Machine) bool {
		_, a := find(ms, old.ID)
		_, b := find(ms, cur.ID)
		return a && b
	})
	for _, m := range ms {
		if m.Name != "web-1" {
			t.Errorf("unexpected machine %s named %q", m.ID, m.Name)
		}
	}
	g1, _ := find(ms, old.ID)
	g2, _ := find(ms, cur.ID)
	if g1.Generation != 1 || g2.Generation != 2 {
		t.Errorf("generations = %d, %d; want 1, 2", g1.Generation, g2.Generation)
	}
}

func testDestroy(t *testing.T, s *suite) {
	keep := s.create(t, s.request(s.cluster, "web", 1, 1))
	gone := s.create(t, s.request(s.cluster, "web", 2, 1))
	s.waitFor(t, s.cluster, "web-2 running", isOn(gone.ID))
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.p.Destroy(ctx, gone.ID); err != nil {
		t.Fatalf("Destroy(%s): %v", gone.ID, err)
	}
	s.waitFor(t, s.cluster, "web-2 gone and web-1 kept", func(ms []providers.Machine) bool {
		_, g := find(ms, gone.ID)
		_, k := find(ms, keep.ID)
		return !g && k
	})
	if s.o.Probe != nil {
		s.waitProbe(t, gone, false)
	}
	if err := s.p.Destroy(ctx, gone.ID); err != nil {
		t.Fatalf("second Destroy(%s) = %v, want nil (idempotent)", gone.ID, err)
	}
	ms := s.list(t, s.cluster)
	if _, ok := find(ms, gone.ID); ok {
		t.Fatalf("destroyed machine %s is listed again:\n%s", gone.ID, describe(ms))
	}
}

func fencer(t *testing.T, p providers.Provider) providers.Fencer {
	t.Helper()
	f, ok := p.(providers.Fencer)
	if !ok {
		t.Skip("provider does not implement providers.Fencer")
	}
	return f
}

func testFence(t *testing.T, s *suite) {
	f := fencer(t, s.p)
	m := s.create(t, s.request(s.cluster, "db", 1, 1))
	s.waitFor(t, s.cluster, "db-1 running", isOn(m.ID))
	s.waitProbe(t, m, true)
	ctx, cancel := s.ctx()
	defer cancel()
	if err := f.Fence(ctx, m.ID); err != nil {
		t.Fatalf("Fence(%s): %v", m.ID, err)
	}
	// Fence returns only once the machine is off: no waiting allowed here
	// beyond what an eventually consistent List needs, and the workload
	// must be unreachable at once.
	if s.o.Probe != nil {
		pctx, pcancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := s.o.Probe(pctx, m)
		pcancel()
		if err == nil {
			t.Fatalf("machine %s still answers right after Fence returned", m.ID)
		}
	}
	s.waitFor(t, s.cluster, "db-1 off or gone", func(ms []providers.Machine) bool {
		got, ok := find(ms, m.ID)
		return !ok || got.State == providers.PowerOff
	})
	if err := f.Fence(ctx, m.ID); err != nil {
		t.Fatalf("second Fence(%s) = %v, want nil (idempotent)", m.ID, err)
	}
	if err := f.Fence(ctx, providers.MachineID(notExisting(s))); err != nil && !errors.Is(err, providers.ErrNotFound) {
		t.Errorf("Fence of an unknown machine = %v, want nil or ErrNotFound", err)
	}
}

// notExisting is an id the provider never issued: the id of a destroyed
// machine, which the suite makes on demand.
func notExisting(s *suite) string {
	m := s.create(s.t, s.request(s.cluster, "gone", 9, 1))
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.p.Destroy(ctx, m.ID); err != nil {
		s.t.Fatalf("Destroy(%s): %v", m.ID, err)
	}
	return string(m.ID)
}

func testPowerOn(t *testing.T, s *suite) {
	f := fencer(t, s.p)
	po, ok := s.p.(providers.PowerOner)
	if !ok {
		t.Skip("provider does not implement providers.PowerOner")
	}
	m := s.create(t, s.request(s.cluster, "mail", 1, 1))
	s.waitFor(t, s.cluster, "mail-1 running", isOn(m.ID))
	ctx, cancel := s.ctx()
	defer cancel()
	if err := f.Fence(ctx, m.ID); err != nil {
		t.Fatalf("Fence(%s): %v", m.ID, err)
	}
	s.waitFor(t, s.cluster, "mail-1 off", func(ms []providers.Machine) bool {
		got, ok := find(ms, m.ID)
		return ok && got.State == providers.PowerOff
	})
	if err := po.PowerOn(ctx, m.ID); err != nil {
		t.Fatalf("PowerOn(%s): %v", m.ID, err)
	}
	ms := s.waitFor(t, s.cluster, "mail-1 on again", isOn(m.ID))
	again, _ := find(ms, m.ID)
	if d := cmp.Diff(identityOf(m), identityOf(again)); d != "" {
		t.Errorf("machine changed identity across fence and power on (-before +after):\n%s", d)
	}
	s.waitProbe(t, again, true)
	if err := po.PowerOn(ctx, m.ID); err != nil {
		t.Fatalf("PowerOn of a running machine = %v, want nil", err)
	}
}

func testVIP(t *testing.T, s *suite) {
	va, ok := s.p.(providers.VIPAssigner)
	if !ok {
		t.Skip("provider does not implement providers.VIPAssigner")
	}
	if s.o.VIP == nil {
		t.Skip("Options.VIP is nil: no VIP address to test with")
	}
	a := s.create(t, s.request(s.cluster, "lb", 1, 1))
	b := s.create(t, s.request(s.cluster, "lb", 2, 1))
	vip := s.o.VIP(t, s.p, s.cluster)
	ctx, cancel := s.ctx()
	defer cancel()
	if h, err := va.VIPHolder(ctx, vip); err != nil || h != "" {
		t.Fatalf("VIPHolder(%s) before any assignment = %q, %v; want \"\", nil", vip, h, err)
	}
	for i, id := range []providers.MachineID{a.ID, a.ID, b.ID, a.ID} {
		if err := va.AssignVIP(ctx, vip, id); err != nil {
			t.Fatalf("step %d: AssignVIP(%s, %s): %v", i, vip, id, err)
		}
		h, err := va.VIPHolder(ctx, vip)
		if err != nil {
			t.Fatalf("step %d: VIPHolder(%s): %v", i, vip, err)
		}
		if h != id {
			t.Fatalf("step %d: VIPHolder(%s) = %q, want %q", i, vip, h, id)
		}
	}
}

func testConcurrentCreate(t *testing.T, s *suite) {
	n := s.o.Concurrency
	ms := make([]providers.Machine, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := s.ctx()
			defer cancel()
			req := s.request(s.cluster, "web", i+1, 1)
			m, err := s.p.Create(ctx, req)
			if err == nil && m.ID != "" {
				s.mu.Lock()
				s.created = append(s.created, m.ID)
				s.mu.Unlock()
			}
			ms[i], errs[i] = m, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Create: %v", err)
	}
	ids := map[providers.MachineID]bool{}
	addrs := map[string]providers.MachineID{}
	for i, m := range ms {
		if m.Slot != i+1 || m.Role != "web" {
			t.Errorf("Create for web-%d returned %s (role %s slot %d)", i+1, m.ID, m.Role, m.Slot)
		}
		if ids[m.ID] {
			t.Errorf("two concurrent creates returned the same id %s", m.ID)
		}
		ids[m.ID] = true
		if m.Address != "" {
			if prev, dup := addrs[m.Address]; dup {
				t.Errorf("machines %s and %s share address %s", prev, m.ID, m.Address)
			}
			addrs[m.Address] = m.ID
		}
	}
	got := s.waitFor(t, s.cluster, fmt.Sprintf("%d machines", n), func(l []providers.Machine) bool {
		for id := range ids {
			if _, ok := find(l, id); !ok {
				return false
			}
		}
		return true
	})
	if len(got) != n {
		t.Errorf("List shows %d machines, want %d:\n%s", len(got), n, describe(got))
	}
	for _, m := range ms {
		s.waitProbe(t, m, true)
	}
}
