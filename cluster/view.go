package cluster

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/hactl/hactl/plan"
)

// State is a member's gossip state.
type MemberState int

const (
	StateAlive MemberState = iota
	StateSuspect
	StateDead // stopped answering; not (yet) fenced
	StateLeft // left gracefully
)

func (s MemberState) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one cluster member as gossip sees it. Values are copies.
type Member struct {
	Name       string
	Role       string
	Slot       int
	Generation int
	Revision   string // config revision the node converged
	Health     plan.Health
	Addr       netip.AddrPort // gossip address
	RaftAddr   string
	Voter      bool
	Witness    bool
	Formed     bool     // belongs to a raft cluster
	VIPs       []string // VIPs the node reports bound
	State      MemberState
	// Since is when State last changed as seen by this node.
	Since time.Time
}

func (m Member) clone() Member {
	m.VIPs = slices.Clone(m.VIPs)
	return m
}

// Holds reports whether the member reports vip bound.
func (m Member) Holds(vip string) bool { return slices.Contains(m.VIPs, vip) }

// EventType is what happened to a member.
type EventType int

const (
	EventJoin EventType = iota
	EventUpdate
	EventDead
	EventLeave
)

func (t EventType) String() string {
	return [...]string{"join", "update", "dead", "leave"}[t]
}

// MemberEvent is a membership change.
type MemberEvent struct {
	Type   EventType
	Member Member
	Time   time.Time
}

// View is a read-only view of gossip membership. Every value returned is a copy.
type View interface {
	// Local returns this node.
	Local() Member
	// Members returns every member known, dead and left ones included, sorted by name.
	Members() []Member
	// Events streams membership changes from now on. The channel is closed
	// when ctx is done or the node stops; the View owns the goroutine that feeds it, and it
	// never blocks gossip (events queue up for a slow reader).
	Events(ctx context.Context) <-chan MemberEvent
}

// membership implements memberlist.Delegate and EventDelegate and View.
type membership struct {
	log   *slog.Logger
	local func() nodeMeta // current local metadata, for NodeMeta

	mu      sync.Mutex
	members map[string]Member
	subs    map[*subscriber]struct{}
	ml      *memberlist.Memberlist // set once after Create
	name    string
	wg      *sync.WaitGroup // the node's; subscriber goroutines join it
	stop    <-chan struct{} // closed when the node stops; ends subscriptions
	onDead  func()          // set before gossip starts; called when a member dies
}

var (
	_ memberlist.Delegate      = (*membership)(nil)
	_ memberlist.EventDelegate = (*membership)(nil)
	_ View                     = (*membership)(nil)
)

func newMembership(name string, local func() nodeMeta, log *slog.Logger, wg *sync.WaitGroup, stop <-chan struct{}) *membership {
	return &membership{log: log, local: local, name: name, members: map[string]Member{}, subs: map[*subscriber]struct{}{}, wg: wg, stop: stop}
}

// NodeMeta is called by memberlist; it must not call back into memberlist.
func (ms *membership) NodeMeta(limit int) []byte {
	b, err := ms.local().encode()
	if err != nil || len(b) > limit {
		ms.log.Error("node meta does not fit", "err", err, "limit", limit)
		return nil
	}
	return b
}

func (ms *membership) NotifyMsg([]byte)                           {}
func (ms *membership) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (ms *membership) LocalState(join bool) []byte                { return nil }
func (ms *membership) MergeRemoteState(buf []byte, join bool)     {}

func (ms *membership) NotifyJoin(n *memberlist.Node)   { ms.record(n, EventJoin) }
func (ms *membership) NotifyUpdate(n *memberlist.Node) { ms.record(n, EventUpdate) }
func (ms *membership) NotifyLeave(n *memberlist.Node) {
	if n.State == memberlist.StateLeft {
		ms.record(n, EventLeave)
	} else {
		ms.record(n, EventDead)
	}
}

// record is called by memberlist with its node lock held: no calls back.
func (ms *membership) record(n *memberlist.Node, t EventType) {
	md, err := decodeMeta(n.Meta)
	if err != nil {
		ms.log.Warn("ignoring bad member meta", "member", n.Name, "err", err)
	}
	now := time.Now()
	st := StateAlive
	switch t {
	case EventDead:
		st = StateDead
	case EventLeave:
		st = StateLeft
	}
	addr, _ := netip.AddrFromSlice(n.Addr)
	m := Member{
		Name: n.Name, Role: md.Role, Slot: md.Slot, Generation: md.Generation, Revision: md.Revision,
		Health: md.Health, Addr: netip.AddrPortFrom(addr.Unmap(), n.Port), RaftAddr: md.RaftAddr,
		Voter: md.Voter, Witness: md.Witness, Formed: md.Formed, VIPs: md.VIPs, State: st, Since: now,
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if old, ok := ms.members[n.Name]; ok && old.State == st && old.Generation == m.Generation {
		m.Since = old.Since
	}
	if t == EventDead || t == EventLeave {
		// A dead node's last meta stays useful (role, slot, generation).
		if old, ok := ms.members[n.Name]; ok && len(n.Meta) == 0 {
			old.State, old.Since = st, now
			m = old
		}
	}
	ms.members[n.Name] = m
	ev := MemberEvent{Type: t, Member: m.clone(), Time: now}
	for s := range ms.subs {
		s.push(ev)
	}
	if (t == EventDead || t == EventLeave) && ms.onDead != nil {
		ms.onDead()
	}
}

func (ms *membership) Local() Member {
	md := ms.local()
	m := Member{Name: ms.name, Role: md.Role, Slot: md.Slot, Generation: md.Generation, Revision: md.Revision,
		Health: md.Health, RaftAddr: md.RaftAddr, Voter: md.Voter, Witness: md.Witness, Formed: md.Formed,
		VIPs: slices.Clone(md.VIPs), State: StateAlive}
	ms.mu.Lock()
	ml := ms.ml
	ms.mu.Unlock()
	if ml != nil {
		ln := ml.LocalNode()
		a, _ := netip.AddrFromSlice(ln.Addr)
		m.Addr = netip.AddrPortFrom(a.Unmap(), ln.Port)
	}
	return m
}

func (ms *membership) Members() []Member {
	ms.mu.Lock()
	ml := ms.ml
	ms.mu.Unlock()
	suspect := map[string]bool{}
	if ml != nil {
		for _, n := range ml.Members() { // outside our lock: memberlist calls us under its lock
			if n.State == memberlist.StateSuspect {
				suspect[n.Name] = true
			}
		}
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make([]Member, 0, len(ms.members))
	for _, m := range ms.members {
		m = m.clone()
		if m.State == StateAlive && suspect[m.Name] {
			m.State = StateSuspect
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// member returns one member by name.
func (ms *membership) member(name string) (Member, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m, ok := ms.members[name]
	return m.clone(), ok
}

func (ms *membership) Events(ctx context.Context) <-chan MemberEvent {
	s := &subscriber{wake: make(chan struct{}, 1)}
	out := make(chan MemberEvent)
	select {
	case <-ms.stop:
		close(out)
		return out
	default:
	}
	ms.mu.Lock()
	ms.subs[s] = struct{}{}
	ms.mu.Unlock()
	ms.wg.Add(1)
	go func() {
		defer ms.wg.Done()
		defer close(out)
		defer func() {
			ms.mu.Lock()
			delete(ms.subs, s)
			ms.mu.Unlock()
		}()
		for {
			for _, ev := range s.take() {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				case <-ms.stop:
					return
				}
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			case <-ms.stop:
				return
			}
		}
	}()
	return out
}

// subscriber is an unbounded queue so that gossip never waits for a reader.
type subscriber struct {
	mu   sync.Mutex
	q    []MemberEvent
	wake chan struct{}
}

func (s *subscriber) push(ev MemberEvent) {
	s.mu.Lock()
	s.q = append(s.q, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) take() []MemberEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.q
	s.q = nil
	return q
}
