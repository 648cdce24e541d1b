package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// errNoLeader means no leader with quorum answered: apply executes the plan
// itself (bootstrap, total loss, or a cluster whose leader cannot reconcile).
var errNoLeader = fmt.Errorf("no leader that reconciles")

// errLeaderChanged is wrapped when the node carrying out an apply stopped
// being the leader before it finished.
var errLeaderChanged = errors.New("leadership changed during the apply")

// leaderlessWait is how long apply waits for a leader when the cluster's
// control plane answers without one, before it executes the plan itself:
// several election rounds (1.5-3 s each) on a loaded machine.
const leaderlessWait = 10 * time.Second

// awaitLeader waits (up to wait) until the cluster names a leader with
// quorum again and returns its id.
func awaitLeader(ctx context.Context, obs []plan.Observed, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		if _, cs := controlStatus(ctx, obs); cs != nil && cs.Leader != "" && cs.Quorum {
			return cs.Leader, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no leader with quorum answered for %s after the leadership changed; run apply again", wait)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// applyThroughLeader hands the published revision to the cluster's leader
// (POST /v1/apply) and reports its progress; the leader's reconciler is the
// only executor. It returns errNoLeader when no leader with quorum and a
// reconciler answers, and then nothing has been executed. On success it
// returns the machines the create and replace steps of res now run on.
func applyThroughLeader(ctx context.Context, w *workspace, obs []plan.Observed, commit string, res plan.Result) (map[string]providers.MachineID, error) {
	g := w.g
	_, cs := controlStatus(ctx, obs)
	if cs == nil {
		return nil, errNoLeader
	}
	leader := cs.Leader
	if leader == "" || !cs.Quorum {
		// A control plane answers but names no leader with quorum: most
		// often an election or a leadership hand-off under way (a leader
		// that holds a VIP hands leadership on by design). Executing here
		// then could race the next leader's reconciler, so wait a few
		// election rounds for one; only a cluster that stays without a
		// leader is applied from here, as before.
		l, err := awaitLeader(ctx, obs, leaderlessWait)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, errNoLeader
		}
		leader = l
	}
	for attempt := 0; ; attempt++ {
		addr := leaderAddress(obs, leader)
		if addr == "" {
			// A leader exists but cannot be reached: executing here could
			// race it, so stop.
			return nil, fmt.Errorf("the cluster's leader %s has no running machine with an address in the inventory; run apply again once it answers", leader)
		}
		body, _ := json.Marshal(agent.ApplyRequest{Revision: commit})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, agentURL(addr, "/v1/apply"), bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("hand the plan to leader %s at %s: %w", leader, addr, err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusMisdirectedRequest:
			var nl agent.NotLeader
			_ = json.NewDecoder(resp.Body).Decode(&nl)
			resp.Body.Close()
			if nl.Leader == "" || attempt >= 3 {
				return nil, fmt.Errorf("node %s is no longer the leader and names no other (an election is under way?); run apply again", leader)
			}
			leader = nl.Leader
			continue
		case http.StatusNotImplemented, http.StatusNotFound:
			resp.Body.Close()
			return nil, errNoLeader
		default:
			var b bytes.Buffer
			_, _ = b.ReadFrom(resp.Body)
			resp.Body.Close()
			return nil, fmt.Errorf("leader %s refused the apply: %s: %s", leader, resp.Status, strings.TrimSpace(b.String()))
		}
		if !g.jsonOut {
			fmt.Fprintf(g.stdout, "\nHanding the plan to the cluster's leader %s (%s); its reconciler executes it.\n", strings.Split(leader, "@")[0], addr)
		}
		err = followApply(g, resp, leader)
		resp.Body.Close()
		if errors.Is(err, errLeaderChanged) && attempt < 5 {
			// Leadership moved while the leader worked (an election, or a
			// VIP holder handing leadership away). The request is
			// idempotent: ask the new leader, which resumes what the log
			// records.
			if !g.jsonOut {
				fmt.Fprintf(g.stdout, "%v; asking the new leader.\n", err)
			}
			if leader, err = awaitLeader(ctx, obs, 30*time.Second); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	after, err := w.observe(ctx)
	if err != nil {
		return nil, err
	}
	created := map[string]providers.MachineID{}
	gen := map[string]int{}
	for _, s := range res.Steps {
		if s.Action != plan.ActionCreate && s.Action != plan.ActionReplace {
			continue
		}
		for _, o := range after {
			m := o.Machine
			if m.Name == s.Name && m.State == providers.PowerOn && m.Generation >= gen[s.Name] {
				created[s.Name], gen[s.Name] = m.ID, m.Generation
			}
		}
	}
	return created, nil
}

// followApply reads the leader's ApplyEvent stream to its last line.
func followApply(g *globals, resp *http.Response, leader string) error {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	start := time.Now()
	for sc.Scan() {
		var ev agent.ApplyEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("leader %s: bad progress line %q: %w", leader, sc.Text(), err)
		}
		if g.jsonOut {
			b, _ := json.Marshal(struct {
				Type string `json:"type"`
				agent.ApplyEvent
			}{"leader_progress", ev})
			fmt.Fprintln(g.stdout, string(b))
		} else {
			fmt.Fprintf(g.stdout, "%s [%s] %s\n", time.Since(start).Round(time.Millisecond), ev.Leader, describeApplyEvent(ev))
		}
		switch ev.Kind {
		case "done":
			return nil
		case "error":
			if strings.Contains(ev.Message, "not the raft leader") || strings.Contains(ev.Message, "leadership lost") {
				return fmt.Errorf("leader %s: %s: %w", ev.Leader, ev.Message, errLeaderChanged)
			}
			return fmt.Errorf("leader %s: %s", ev.Leader, ev.Message)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("leader %s: progress stream: %w", leader, err)
	}
	return fmt.Errorf("leader %s: progress stream ended before the apply finished: %w", leader, errLeaderChanged)
}

func describeApplyEvent(ev agent.ApplyEvent) string {
	if ev.Kind != "rebuild" {
		return ev.Message
	}
	var parts []string
	for _, s := range ev.Steps {
		mark := "pending"
		if s.Done {
			mark = "done"
		}
		parts = append(parts, fmt.Sprintf("%s %s", s.Action, mark))
	}
	msg := fmt.Sprintf("%s generation %d: %s (%s)", ev.Slot, ev.Generation, ev.State, strings.Join(parts, ", "))
	if ev.Message != "" {
		msg += ": " + ev.Message
	}
	return msg
}

// leaderAddress is the address of the running machine of leader
// ("name@generation") in the inventory, or "" when it has none.
func leaderAddress(obs []plan.Observed, leader string) string {
	name, _, _ := strings.Cut(leader, "@")
	addr := ""
	for _, o := range obs {
		if o.Machine.Name == name && o.Machine.Address != "" && o.Machine.State == providers.PowerOn {
			addr = o.Machine.Address
		}
	}
	return addr
}
