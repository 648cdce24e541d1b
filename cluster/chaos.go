package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Chaos run states recorded in the log.
const (
	ChaosRunning     = "running"     // started by the leader named in By
	ChaosDone        = "done"        // finished (passed, failed, refused or stopped by the kill switch)
	ChaosSkipped     = "skipped"     // due while the kill switch was set: nothing ran
	ChaosInterrupted = "interrupted" // its leader lost leadership (or died) before it finished
)

// ChaosSchedule is the cluster's chaos schedule, kept in the log so that
// whichever node leads runs it. Options is the run's configuration as its
// host understands it (the CLI's flags as JSON); the log does not read it.
type ChaosSchedule struct {
	Spec    string    `json:"spec"` // robfig/cron/v3 expression
	Options []byte    `json:"options,omitempty"`
	Set     time.Time `json:"set"`
	By      string    `json:"by,omitempty"` // node that recorded it
}

// ChaosRun is one scheduled chaos run as recorded in the log: appended as
// running when its leader starts it, replaced by its outcome when it ends.
type ChaosRun struct {
	ID       string    `json:"id"`
	Schedule string    `json:"schedule"`
	Leader   string    `json:"leader"` // server id "name@generation" of the leader that ran it
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Stage    int       `json:"stage,omitempty"`
	Seed     uint64    `json:"seed,omitempty"`
	Rounds   int       `json:"rounds,omitempty"`
	Pass     bool      `json:"pass"`
	Skipped  string    `json:"skipped,omitempty"` // why nothing (more) ran: kill switch, refused
	Error    string    `json:"error,omitempty"`
	Report   string    `json:"report,omitempty"` // report directory on the leader's node
}

// ChaosState is the chaos part of the replicated state: the schedule (nil
// when none), the kill switch, and the recorded runs, oldest first.
type ChaosState struct {
	Schedule    *ChaosSchedule `json:"schedule,omitempty"`
	Paused      bool           `json:"paused"`
	PausedAt    time.Time      `json:"paused_at,omitzero"`
	PauseReason string         `json:"pause_reason,omitempty"`
	Runs        []ChaosRun     `json:"runs"`
}

func (c ChaosState) clone() ChaosState {
	out := c
	if c.Schedule != nil {
		s := *c.Schedule
		s.Options = slices.Clone(s.Options)
		out.Schedule = &s
	}
	out.Runs = slices.Clone(c.Runs)
	return out
}

// chaosRunsKept bounds the recorded runs.
const chaosRunsKept = 200

// chaosCmd is the payload of the chaos ops.
type chaosCmd struct {
	Schedule *ChaosSchedule `json:"schedule,omitempty"` // opChaosSchedule; nil clears it
	Paused   bool           `json:"paused,omitempty"`   // opChaosPause
	Reason   string         `json:"reason,omitempty"`
	Run      *ChaosRun      `json:"run,omitempty"` // opChaosRun: upsert by ID
}

// applyChaos applies one chaos op to st and returns the history message.
func applyChaos(st *State, op string, c *chaosCmd, at time.Time) (string, error) {
	if c == nil {
		return "", fmt.Errorf("%s without payload", op)
	}
	switch op {
	case opChaosSchedule:
		st.Chaos.Schedule = c.Schedule
		if c.Schedule == nil {
			return "chaos schedule removed", nil
		}
		return fmt.Sprintf("chaos schedule set to %q", c.Schedule.Spec), nil
	case opChaosPause:
		st.Chaos.Paused, st.Chaos.PauseReason, st.Chaos.PausedAt = c.Paused, c.Reason, at
		if !c.Paused {
			st.Chaos.PausedAt = time.Time{}
			return "chaos resumed", nil
		}
		msg := "chaos paused (kill switch)"
		if c.Reason != "" {
			msg += ": " + c.Reason
		}
		return msg, nil
	case opChaosRun:
		if c.Run == nil || c.Run.ID == "" {
			return "", errors.New("chaos run without id")
		}
		i := slices.IndexFunc(st.Chaos.Runs, func(r ChaosRun) bool { return r.ID == c.Run.ID })
		if i >= 0 {
			st.Chaos.Runs[i] = *c.Run
		} else {
			st.Chaos.Runs = append(st.Chaos.Runs, *c.Run)
			if n := len(st.Chaos.Runs); n > chaosRunsKept {
				st.Chaos.Runs = slices.Clone(st.Chaos.Runs[n-chaosRunsKept:])
			}
		}
		r := c.Run
		msg := fmt.Sprintf("chaos run %s (%q) %s on %s", r.ID, r.Schedule, r.State, r.Leader)
		switch {
		case r.Skipped != "":
			msg += ": " + r.Skipped
		case r.Error != "":
			msg += ": " + r.Error
		case r.State == ChaosDone && r.Pass:
			msg += ": pass"
		case r.State == ChaosDone:
			msg += ": FAIL"
		}
		return msg, nil
	}
	return "", fmt.Errorf("unknown chaos op %q", op)
}

// Chaos returns the chaos schedule, kill switch and runs as this node's log
// has them (a copy).
func (n *Node) Chaos() ChaosState {
	_, f := n.raft()
	if f == nil {
		return ChaosState{Runs: []ChaosRun{}}
	}
	st := f.state().Chaos
	if st.Runs == nil {
		st.Runs = []ChaosRun{}
	}
	return st
}

func (n *Node) applyChaos(op string, c chaosCmd, node string) error {
	r, _ := n.raft()
	if r == nil || !n.IsLeader() {
		return ErrNotLeader
	}
	return n.apply(r, command{Op: op, Chaos: &c, Node: node})
}

// SetChaosSchedule records s as the cluster's chaos schedule (nil removes
// it). Leader only: ErrNotLeader elsewhere, and for every writer below.
func (n *Node) SetChaosSchedule(s *ChaosSchedule) error {
	if s != nil && s.Set.IsZero() {
		s.Set = time.Now().UTC()
	}
	return n.applyChaos(opChaosSchedule, chaosCmd{Schedule: s}, "")
}

// SetChaosPaused sets (paused) or lifts the chaos kill switch. Leader only.
func (n *Node) SetChaosPaused(paused bool, reason string) error {
	return n.applyChaos(opChaosPause, chaosCmd{Paused: paused, Reason: reason}, "")
}

// RecordChaosRun appends run, or replaces the run with its ID. Leader only.
func (n *Node) RecordChaosRun(run ChaosRun) error {
	return n.applyChaos(opChaosRun, chaosCmd{Run: &run}, "")
}

// ServerID is this node's raft server id, "name@generation".
func (n *Node) ServerID() string { return string(serverID(n.cfg.Name, n.cfg.Generation)) }
