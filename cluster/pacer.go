package cluster

import (
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftTransport is what hashicorp/raft uses of its NetworkTransport: the
// transport itself, Close, and pre-vote (raft checks for it by type
// assertion, so a wrapper must keep it).
type raftTransport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// pacedTransport is the raft transport with heartbeats to non-voters paced.
//
// hashicorp/raft heartbeats every follower at one rate, set by the leader's
// heartbeat timeout, each on its own random timer. A non-voter counts for
// neither commits nor the leader's lease: its heartbeats only tell it that it
// still hears a leader, which is its quorum check. The leader therefore holds
// each heartbeat to a non-voter until the next multiple of every (on the wall
// clock, so one burst carries all of them) and sends it then; the non-voter
// runs with a heartbeat timeout and a quorum window sized for that period
// (Config.NonvoterHeartbeat). Log entries, idle AppendEntries that carry the
// commit index, votes and snapshots are never held, and neither are
// heartbeats to voters.
type pacedTransport struct {
	raftTransport
	every time.Duration // 0: nothing is held

	mu         sync.Mutex
	slow       map[raft.ServerID]bool // current non-voters (leader only)
	changed    chan struct{}          // closed and replaced when slow changes
	stillLeads func(term uint64) bool // nil until raft runs

	closed    chan struct{} // closed by Close
	closeOnce sync.Once
}

func newPacedTransport(t raftTransport, every time.Duration) *pacedTransport {
	return &pacedTransport{raftTransport: t, every: every, changed: make(chan struct{}), closed: make(chan struct{})}
}

// setNonvoters replaces the set of servers whose heartbeats are paced. A
// heartbeat held for a server that left the set is sent at once.
func (p *pacedTransport) setNonvoters(ids map[raft.ServerID]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !maps.Equal(ids, p.slow) {
		p.replaceLocked(maps.Clone(ids))
	}
}

// unpace stops pacing id at once: it is about to become a voter, whose
// heartbeats count for the lease from the moment raft adds it.
func (p *pacedTransport) unpace(id raft.ServerID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.slow[id] {
		ids := maps.Clone(p.slow)
		delete(ids, id)
		p.replaceLocked(ids)
	}
}

func (p *pacedTransport) replaceLocked(ids map[raft.ServerID]bool) {
	p.slow = ids
	close(p.changed)
	p.changed = make(chan struct{})
}

// leads tells the transport how to ask raft whether this node still leads
// the term a held heartbeat was built for.
func (p *pacedTransport) leads(f func(term uint64) bool) {
	p.mu.Lock()
	p.stillLeads = f
	p.mu.Unlock()
}

// Close releases held heartbeats and closes the transport.
func (p *pacedTransport) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return p.raftTransport.Close()
}

// AppendEntries holds a heartbeat to a non-voter until the next multiple of
// every, then sends it unless this node stopped leading meanwhile.
func (p *pacedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if p.every > 0 && isHeartbeat(args) && p.hold(id) {
		select {
		case <-p.closed:
			return raft.ErrTransportShutdown
		default:
		}
		p.mu.Lock()
		leads := p.stillLeads
		p.mu.Unlock()
		// A heartbeat sent after the step-down would make the follower
		// believe it still hears a leader (quorum) past the leader's lease,
		// which the self-fence timing (safelyGone) must not allow.
		if leads != nil && !leads(args.Term) {
			return fmt.Errorf("heartbeat to non-voter %s not sent: no longer leading term %d", id, args.Term)
		}
	}
	return p.raftTransport.AppendEntries(id, target, args, resp)
}

// hold waits until the next multiple of every while id is paced; it
// returns early when id stops being paced or the transport closes, and
// reports whether it waited.
func (p *pacedTransport) hold(id raft.ServerID) bool {
	p.mu.Lock()
	slow, changed := p.slow[id], p.changed
	p.mu.Unlock()
	if !slow {
		return false
	}
	now := time.Now()
	t := time.NewTimer(now.Truncate(p.every).Add(p.every).Sub(now))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-p.closed:
			return true
		case <-changed:
			p.mu.Lock()
			slow, changed = p.slow[id], p.changed
			p.mu.Unlock()
			if !slow {
				return true
			}
		}
	}
}

// isHeartbeat recognises raft's heartbeat: an AppendEntries that carries no
// entries, no previous entry and no commit index (replication always sets
// the commit index once anything has committed).
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return len(a.Entries) == 0 && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && a.LeaderCommitIndex == 0
}
