package cluster

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// fenceLog records SelfFence callbacks of one node.
type fenceLog struct {
	mu  sync.Mutex
	seq []bool
}

func (f *fenceLog) add(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq = append(f.seq, b)
}

func (f *fenceLog) get() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seq)
}

func TestNode_Partition_MinorityStopsAndSelfFences(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	logs := map[string]*fenceLog{}
	nodes := e.startCluster("web", 3, func(c *Config) {
		fl := &fenceLog{}
		logs[c.Name] = fl
		c.SelfFence = fl.add
		c.FailureTimeout = time.Hour // this test is about the minority, not about fencing it
	})
	l := waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(l.Status().Voters) == 3 })
	var rest []string
	var others []*testNode
	for _, n := range nodes {
		if n != l {
			rest = append(rest, n.Name())
			others = append(others, n)
		}
	}
	before := len(l.LogState().History)
	e.net.Partition([]string{l.Name()}, rest)

	eventually(t, "the isolated old leader to lose quorum", func() bool { return !l.Status().Quorum })
	nl := waitLeader(t, others)
	if err := nl.Record("test", "", "majority still commits"); err != nil {
		t.Fatalf("majority cannot commit: %v", err)
	}
	eventually(t, "the minority to self-fence", func() bool {
		return slices.Equal(logs[l.Name()].get(), []bool{true}) && l.Status().SelfFenced
	})
	eventually(t, "the minority to refuse lone-survivor recovery on provider evidence", func() bool {
		return hasEvent(l.Events(), "is on according to the provider")
	})
	if st := l.LogState(); len(st.History) != before || hasEvent(st.History, "majority still commits") {
		t.Fatalf("minority applied entries without quorum: %d → %d", before, len(st.History))
	}
	if vs := l.Status().Voters; len(vs) != 3 {
		t.Fatalf("minority changed its voter set: %v", vs)
	}
	for _, n := range others {
		if got := logs[n.Name()].get(); len(got) != 0 {
			t.Fatalf("%s (majority) self-fenced: %v", n.Name(), got)
		}
	}

	e.net.Heal()
	eventually(t, "the old leader to rejoin with quorum and lift its self-fence", func() bool {
		return l.Status().Quorum && slices.Equal(logs[l.Name()].get(), []bool{true, false})
	})
	eventually(t, "the rejoined node to catch up with the majority's log", func() bool {
		return hasEvent(l.LogState().History, "majority still commits")
	})
}

func TestNode_TwoVoters_NoWitness_RefusesToFence(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes := e.startCluster("mail", 2, nil)
	waitLeader(t, nodes)
	eventually(t, "two voters", func() bool { return len(nodes[0].Status().Voters) == 2 })
	nodes[1].kill()
	s := nodes[0]
	eventually(t, "the survivor to refuse recovery while the provider says its peer is on", func() bool {
		return !s.Status().Quorum && hasEvent(s.Events(), "voter mail-2@1 is on according to the provider")
	})
	if got := e.prov.fenceCount(); got != 0 {
		t.Fatalf("fenced %d machines without quorum", got)
	}
	if st := s.Status(); st.IsLeader || len(st.Voters) != 2 || len(st.Fences) != 0 {
		t.Fatalf("survivor acted without quorum: %+v", st)
	}
}

func TestNode_LoneSurvivor_RecoversOnlyWithProof(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	nodes := e.startCluster("repo", 3, nil)
	waitLeader(t, nodes)
	eventually(t, "three voters", func() bool { return len(nodes[0].Status().Voters) == 3 })
	nodes[1].kill()
	nodes[2].kill()
	s := nodes[0]
	eventually(t, "a refusal while the provider still reports the peers on", func() bool {
		return hasEvent(s.Events(), "refusing lone-survivor recovery")
	})
	if s.Status().IsLeader {
		t.Fatal("survivor leads without proof")
	}
	// The provider now proves it: one powered off, one destroyed.
	e.prov.setState("repo-2-g1", providers.PowerOff)
	if err := e.prov.Destroy(t.Context(), "repo-3-g1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the survivor to reset the voter set to itself and lead", func() bool {
		st := s.Status()
		return st.IsLeader && st.Quorum && slices.Equal(st.Voters, []string{"repo-1@1"})
	})
	eventually(t, "the recovery and its proof in the replicated history", func() bool {
		return hasEvent(s.LogState().History, "provider proof: [repo-2@1 off (repo-2-g1) repo-3@1 gone]")
	})
	if err := s.Record("test", "", "writable again"); err != nil {
		t.Fatalf("recovered survivor cannot commit: %v", err)
	}
}

// vipBinder binds the VIP for real (a TCP listener on vip:port), so two
// holders at once would fail with "address in use" as well as be caught by
// the sampler.
type vipBinder struct {
	mu         sync.Mutex
	ln         map[string]net.Listener // node → listener
	violations []string
}

func (b *vipBinder) callback(node, addr string) func(string, bool) error {
	return func(vip string, held bool) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if !held {
			if l := b.ln[node]; l != nil {
				l.Close()
				delete(b.ln, node)
			}
			return nil
		}
		for other := range b.ln {
			if other != node {
				b.violations = append(b.violations, fmt.Sprintf("%s binds while %s holds", node, other))
			}
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			b.violations = append(b.violations, fmt.Sprintf("%s: %v", node, err))
			return err
		}
		b.ln[node] = l
		return nil
	}
}

func TestNode_VIP_SingleHolderThroughFailoverAndFailback(t *testing.T) {
	t.Parallel() // nodes mostly wait on timers; each test has its own keyring and CA
	e := newEnv(t)
	const vip = "127.0.0.77"
	probe, err := net.Listen("tcp", vip+":0")
	if err != nil {
		t.Skipf("cannot bind %s on loopback: %v", vip, err)
	}
	addr := probe.Addr().String()
	probe.Close()
	b := &vipBinder{ln: map[string]net.Listener{}}
	spec := []VIPSpec{{Address: vip, Role: "lb", Failback: lang.FailbackImmediate}}
	mk := func(name, role string, slot, gen int, witness bool) Config {
		c := e.fastConfig(name, role, slot, gen)
		c.BootstrapExpect = 3
		c.VIPs = spec
		c.Witness = witness
		c.VIPChanged = b.callback(fmt.Sprintf("%s@%d", name, gen), addr)
		return c
	}
	lb1 := e.start(mk("lb-1", "lb", 1, 1, false))
	lb2 := e.start(mk("lb-2", "lb", 2, 1, false))
	wit := e.start(mk("witness-1", "witness", 1, 1, true))
	all := []*testNode{lb1, lb2, wit}
	waitLeader(t, all)
	eventually(t, "lb-1 (lowest slot) to hold the VIP", func() bool { return lb1.isHeld(vip) })

	// Sample every node until the end of the test: never two holders.
	var samples, bad atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	var nodesMu sync.Mutex
	sampled := slices.Clone(all)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			nodesMu.Lock()
			n := 0
			for _, tn := range sampled {
				if tn.isHeld(vip) {
					n++
				}
			}
			nodesMu.Unlock()
			samples.Add(1)
			if n > 1 {
				bad.Add(1)
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })

	lb1.kill() // crash: the provider still reports the machine on
	eventually(t, "the VIP to move to lb-2 after lb-1 is fenced", func() bool { return lb2.isHeld(vip) })
	if e.prov.fenceCount() < 1 {
		t.Fatal("VIP moved without fencing the old holder")
	}
	st := lb2.LogState()
	if _, ok := st.Fences["lb-1@1"]; !ok {
		t.Fatalf("no fence record for lb-1@1: %v", st.Fences)
	}

	// lb-1 is rebuilt as generation 2; failback=immediate moves the VIP back
	// through the two-phase release.
	c := mk("lb-1", "lb", 1, 2, false)
	c.Join = []string{lb2.GossipAddr()}
	// The VIP moves as soon as its dead holder is fenced; a real rebuild
	// starts only after FailureTimeout, past gossip's reclaim time.
	eventually(t, "lb-1 dead for longer than the reclaim time", func() bool {
		m, ok := lb2.ms.member("lb-1")
		return ok && m.State == StateDead && time.Since(m.Since) > c.DeadNodeReclaimTime
	})
	lb1b := e.start(c)
	nodesMu.Lock()
	sampled = append(sampled, lb1b)
	nodesMu.Unlock()
	eventually(t, "the rebuilt lb-1 to replace its old generation in the voter set", func() bool {
		vs := lb2.Status().Voters
		return slices.Contains(vs, "lb-1@2") && !slices.Contains(vs, "lb-1@1") && len(vs) == 3
	})
	eventually(t, "the VIP to fail back to lb-1@2", func() bool { return lb1b.isHeld(vip) && !lb2.isHeld(vip) })

	if wit.isHeld(vip) || hasEvent(wit.Events(), "bound "+vip) {
		t.Fatal("the witness held the VIP")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.violations) > 0 || bad.Load() > 0 {
		t.Fatalf("VIP held twice: %d of %d samples; %v", bad.Load(), samples.Load(), b.violations)
	}
	t.Logf("%d samples, no double holder", samples.Load())
}
