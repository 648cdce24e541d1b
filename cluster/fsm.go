package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/plan"
)

// Rebuild states recorded in the log.
const (
	RebuildPlanned = "planned" // intent recorded, nothing executed yet
	RebuildRunning = "running" // steps executing
	RebuildWaiting = "waiting" // steps done; waiting for MinUptime of the new member
	RebuildDone    = "done"
	RebuildFailed  = "failed"
)

// Rebuild is one slot being (or having been) rebuilt.
type Rebuild struct {
	Name       string // slot name, e.g. web-2
	Role       string
	Slot       int
	Generation int // generation the rebuild creates
	Steps      []StepRecord
	Started    time.Time
	Updated    time.Time
	State      string
	Attempts   int // failed attempts so far (backoff)
	Error      string
	By         string // leader that recorded or last resumed it
}

// StepRecord is a planned step as stored in the log.
type StepRecord struct {
	Step plan.Step
	// MachineGeneration is the observed generation of Step.Machine (what a
	// fence, destroy or replace step cuts off).
	MachineGeneration int
	Done              bool
}

// FenceRecord is a confirmed fence.
type FenceRecord struct {
	Name       string
	Generation int
	Machine    string
	At         time.Time
	By         string
	Reason     string
}

// VIPOwner is the holder of one VIP chosen through the log. Holder "" means
// unassigned (or being moved: Next is the chosen successor once the old
// holder has released it).
type VIPOwner struct {
	VIP        string
	Holder     string
	Generation int
	Since      time.Time
}

// Event is one entry of the cluster history.
type Event struct {
	Index   uint64 // raft index; 0 for local (not replicated) events
	Time    time.Time
	Kind    string
	Node    string
	Message string
	Local   bool // true for decisions taken without the log (no quorum)
}

// historyLimit bounds the replicated history.
const historyLimit = 512

// State is the replicated cluster state.
type State struct {
	Fences    map[string]FenceRecord // by "name@generation"
	Rebuilds  map[string]Rebuild     // by slot name
	VIPs      map[string]VIPOwner    // by VIP
	Primaries map[string]string      // data name → node name
	History   []Event
	Chaos     ChaosState // schedule, kill switch and runs (chaos.go)
}

func (s *State) clone() State {
	c := State{
		Fences:    maps.Clone(s.Fences),
		Rebuilds:  make(map[string]Rebuild, len(s.Rebuilds)),
		VIPs:      maps.Clone(s.VIPs),
		Primaries: maps.Clone(s.Primaries),
		History:   slices.Clone(s.History),
		Chaos:     s.Chaos.clone(),
	}
	for k, r := range s.Rebuilds {
		r.Steps = slices.Clone(r.Steps)
		c.Rebuilds[k] = r
	}
	return c
}

func newState() State {
	return State{Fences: map[string]FenceRecord{}, Rebuilds: map[string]Rebuild{}, VIPs: map[string]VIPOwner{}, Primaries: map[string]string{}}
}

// command is one log entry. Time is chosen by the proposer so that the FSM is
// deterministic.
type command struct {
	Op      string       `json:"op"`
	Time    time.Time    `json:"t"`
	By      string       `json:"by"`
	Fence   *FenceRecord `json:"fence,omitempty"`
	Rebuild *Rebuild     `json:"rebuild,omitempty"`
	VIP     *VIPOwner    `json:"vip,omitempty"`
	Data    string       `json:"data,omitempty"`
	Node    string       `json:"node,omitempty"`
	Message string       `json:"msg,omitempty"`
	Kind    string       `json:"kind,omitempty"`
	Chaos   *chaosCmd    `json:"chaos,omitempty"`
}

const (
	opFence   = "fence"
	opRebuild = "rebuild"
	opVIP     = "vip"
	opPrimary = "primary"
	opEvent   = "event"
	// opCommit changes nothing: the leader appends it right after every
	// other record so that followers learn at once that the record
	// committed, instead of at the next idle AppendEntries (CommitTimeout).
	opCommit = "commit"
	// The chaos schedule, kill switch and run records (chaos.go).
	opChaosSchedule = "chaos-schedule"
	opChaosPause    = "chaos-pause"
	opChaosRun      = "chaos-run"
)

// fsm applies commands to State. Reads take a copy under the lock.
type fsm struct {
	mu sync.Mutex
	st State
	// changed, when set before raft starts, is called (without blocking)
	// after a fence or a VIP owner is applied.
	changed func()
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm { return &fsm{st: newState()} }

func (f *fsm) notify() {
	if f.changed != nil {
		f.changed()
	}
}

func (f *fsm) Apply(l *raft.Log) any {
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("decode log entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := Event{Index: l.Index, Time: c.Time, Kind: c.Op, Node: c.Node}
	switch c.Op {
	case opFence:
		if c.Fence == nil {
			return fmt.Errorf("log entry %d: fence without record", l.Index)
		}
		f.st.Fences[fmt.Sprintf("%s@%d", c.Fence.Name, c.Fence.Generation)] = *c.Fence
		defer f.notify()
		ev.Node, ev.Message = c.Fence.Name, fmt.Sprintf("fenced %s generation %d (%s) by %s: %s", c.Fence.Name, c.Fence.Generation, c.Fence.Machine, c.Fence.By, c.Fence.Reason)
	case opRebuild:
		if c.Rebuild == nil {
			return fmt.Errorf("log entry %d: rebuild without record", l.Index)
		}
		r := *c.Rebuild
		r.Steps = slices.Clone(r.Steps)
		f.st.Rebuilds[r.Name] = r
		ev.Node, ev.Message = r.Name, fmt.Sprintf("rebuild %s generation %d %s", r.Name, r.Generation, r.State)
		if r.Error != "" {
			ev.Message += ": " + r.Error
		}
	case opVIP:
		if c.VIP == nil {
			return fmt.Errorf("log entry %d: vip without record", l.Index)
		}
		f.st.VIPs[c.VIP.VIP] = *c.VIP
		defer f.notify()
		ev.Node = c.VIP.Holder
		if c.VIP.Holder == "" {
			ev.Message = fmt.Sprintf("vip %s released: %s", c.VIP.VIP, c.Message)
		} else {
			ev.Message = fmt.Sprintf("vip %s assigned to %s: %s", c.VIP.VIP, c.VIP.Holder, c.Message)
		}
	case opPrimary:
		f.st.Primaries[c.Data] = c.Node
		ev.Message = fmt.Sprintf("data %s primary is %s", c.Data, c.Node)
	case opEvent:
		ev.Kind, ev.Message = c.Kind, c.Message
	case opChaosSchedule, opChaosPause, opChaosRun:
		msg, err := applyChaos(&f.st, c.Op, c.Chaos, c.Time)
		if err != nil {
			return fmt.Errorf("log entry %d: %w", l.Index, err)
		}
		ev.Kind, ev.Message = "chaos", msg
	case opCommit:
		return nil // not history
	default:
		return fmt.Errorf("log entry %d: unknown op %q", l.Index, c.Op)
	}
	f.st.History = append(f.st.History, ev)
	if n := len(f.st.History); n > historyLimit {
		f.st.History = slices.Clone(f.st.History[n-historyLimit:])
	}
	return nil
}

func (f *fsm) state() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.clone()
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.st)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st := newState()
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if st.Fences == nil {
		st.Fences = map[string]FenceRecord{}
	}
	if st.Rebuilds == nil {
		st.Rebuilds = map[string]Rebuild{}
	}
	if st.VIPs == nil {
		st.VIPs = map[string]VIPOwner{}
	}
	if st.Primaries == nil {
		st.Primaries = map[string]string{}
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
