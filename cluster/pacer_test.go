package cluster

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// pacerPair is a paced transport (grid every) sending to a real raft
// NetworkTransport on loopback that records when each AppendEntries arrived.
type pacerPair struct {
	p    *pacedTransport
	to   raft.ServerAddress
	mu   sync.Mutex
	seen []time.Time
}

func newPacerPair(t *testing.T, every time.Duration) *pacerPair {
	t.Helper()
	recv, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	send, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
	if err != nil {
		recv.Close()
		t.Fatal(err)
	}
	pp := &pacerPair{p: newPacedTransport(send, every), to: recv.LocalAddr()}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case rpc := <-recv.Consumer():
				pp.mu.Lock()
				pp.seen = append(pp.seen, time.Now())
				pp.mu.Unlock()
				rpc.Respond(&raft.AppendEntriesResponse{Success: true}, nil)
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		pp.p.Close()
		recv.Close()
	})
	return pp
}

func (pp *pacerPair) received() []time.Time {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return slices.Clone(pp.seen)
}

// send runs AppendEntries in the background; its result arrives on the
// returned channel.
func (pp *pacerPair) send(id raft.ServerID, req raft.AppendEntriesRequest) <-chan error {
	out := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		out <- pp.p.AppendEntries(id, pp.to, &req, &resp)
	}()
	return out
}

func heartbeatReq() raft.AppendEntriesRequest { return raft.AppendEntriesRequest{Term: 3} }

func wait(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// TestPacedTransport_OnlyNonvoterHeartbeatsAreHeld: with an hour's grid,
// anything held would hang the test; heartbeats to voters and every
// AppendEntries that carries entries or a commit index go out at once.
func TestPacedTransport_OnlyNonvoterHeartbeatsAreHeld(t *testing.T) {
	t.Parallel()
	pp := newPacerPair(t, time.Hour)
	pp.p.setNonvoters(map[raft.ServerID]bool{"web-1@1": true})
	for _, tc := range []struct {
		name string
		id   raft.ServerID
		req  raft.AppendEntriesRequest
	}{
		{"heartbeat to a voter", "db-2@1", heartbeatReq()},
		{"entries to a non-voter", "web-1@1", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 7, PrevLogTerm: 3, LeaderCommitIndex: 7, Entries: []*raft.Log{{Index: 8, Term: 3, Type: raft.LogCommand, Data: []byte("x")}}}},
		{"commit index to a non-voter", "web-1@1", raft.AppendEntriesRequest{Term: 3, PrevLogEntry: 8, PrevLogTerm: 3, LeaderCommitIndex: 8}},
	} {
		if err := wait(t, tc.name, pp.send(tc.id, tc.req)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if n := len(pp.received()); n != 3 {
		t.Errorf("receiver saw %d AppendEntries, want 3", n)
	}
}

// TestPacedTransport_HeartbeatsToNonvotersWaitForTheGrid: a heartbeat to a
// non-voter arrives no earlier than the next multiple of the period after it
// was sent, so the leader sends all of them in one burst.
func TestPacedTransport_HeartbeatsToNonvotersWaitForTheGrid(t *testing.T) {
	t.Parallel()
	const every = 400 * time.Millisecond
	pp := newPacerPair(t, every)
	ids := []raft.ServerID{"web-1@1", "web-2@1", "lb-2@1"}
	pp.p.setNonvoters(map[raft.ServerID]bool{ids[0]: true, ids[1]: true, ids[2]: true})
	var boundaries []time.Time
	var results []<-chan error
	for i, id := range ids {
		if i > 0 {
			time.Sleep(every / 5)
		}
		boundaries = append(boundaries, time.Now().Truncate(every).Add(every))
		results = append(results, pp.send(id, heartbeatReq()))
	}
	for i, ch := range results {
		if err := wait(t, "heartbeat to "+string(ids[i]), ch); err != nil {
			t.Fatalf("heartbeat to %s: %v", ids[i], err)
		}
	}
	got := pp.received()
	if len(got) != len(ids) {
		t.Fatalf("receiver saw %d heartbeats, want %d", len(got), len(ids))
	}
	slices.SortFunc(got, func(a, b time.Time) int { return a.Compare(b) })
	if first := slices.MinFunc(boundaries, func(a, b time.Time) int { return a.Compare(b) }); got[0].Before(first) {
		t.Errorf("first heartbeat arrived at %s, before the first grid point %s", got[0].Format("15:04:05.000"), first.Format("15:04:05.000"))
	}
}

// TestPacedTransport_HeldHeartbeatReleased: a held heartbeat goes out at
// once when its server stops being paced (promotion to voter), and a held
// heartbeat returns when the transport closes.
func TestPacedTransport_HeldHeartbeatReleased(t *testing.T) {
	t.Parallel()
	pp := newPacerPair(t, time.Hour)
	pp.p.setNonvoters(map[raft.ServerID]bool{"lb-2@1": true, "web-1@1": true})
	promoted := pp.send("lb-2@1", heartbeatReq())
	other := pp.send("web-1@1", heartbeatReq())
	time.Sleep(200 * time.Millisecond)
	if n := len(pp.received()); n != 0 {
		t.Fatalf("%d heartbeats arrived while held", n)
	}
	pp.p.unpace("lb-2@1")
	if err := wait(t, "the promoted server's heartbeat", promoted); err != nil {
		t.Fatalf("heartbeat after unpace: %v", err)
	}
	// web-1 stays held through the change of the set, until Close.
	time.Sleep(200 * time.Millisecond)
	if n := len(pp.received()); n != 1 {
		t.Errorf("receiver saw %d heartbeats after unpace, want 1", n)
	}
	pp.p.Close()
	if err := wait(t, "the held heartbeat after Close", other); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Errorf("held heartbeat after Close: err %v, want %v", err, raft.ErrTransportShutdown)
	}
	if n := len(pp.received()); n != 1 {
		t.Errorf("receiver saw %d heartbeats after Close, want 1", n)
	}
}

// TestPacedTransport_NoHeartbeatAfterLeadershipEnds: a heartbeat held past
// the leader's step-down is dropped, not sent: it would stretch the
// follower's quorum past the lease (see Config.selfFencedAfter).
func TestPacedTransport_NoHeartbeatAfterLeadershipEnds(t *testing.T) {
	t.Parallel()
	pp := newPacerPair(t, 200*time.Millisecond)
	pp.p.setNonvoters(map[raft.ServerID]bool{"web-1@1": true})
	var mu sync.Mutex
	leading := true
	pp.p.leads(func(term uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return leading && term == 3
	})
	if err := wait(t, "heartbeat while leading", pp.send("web-1@1", heartbeatReq())); err != nil {
		t.Fatalf("heartbeat while leading: %v", err)
	}
	mu.Lock()
	leading = false
	mu.Unlock()
	err := wait(t, "heartbeat after the step-down", pp.send("web-1@1", heartbeatReq()))
	if err == nil || errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("heartbeat after the step-down: err %v, want it refused", err)
	}
	if n := len(pp.received()); n != 1 {
		t.Errorf("receiver saw %d heartbeats, want only the one sent while leading", n)
	}
}
