package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2E_Blog_ApplyThroughLeader: with the blog running, a second apply that
// scales web from 2 to 3 is handed to the raft leader (POST /v1/apply): the
// CLI executes nothing itself, streams the leader's progress, and the slot
// web-3 ends up with exactly one machine, on and passing.
func TestE2E_Blog_ApplyThroughLeader(t *testing.T) {
	e := newE2E(t, "blog")
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	_, rep := e.controlReady()
	leader, _, _ := strings.Cut(rep.Control.Leader, "@")
	voters := map[string]bool{}
	for _, v := range rep.Control.Voters {
		name, _, _ := strings.Cut(v, "@")
		voters[name] = true
	}

	p := filepath.Join(e.config, "cluster.hcl")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	web := "role \"web\" {\n  source = \"roles/web.hcl\"\n  count  = 2\n}"
	if !strings.Contains(string(b), web) {
		t.Fatalf("%s no longer declares web with count 2:\n%s", p, b)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), web, strings.Replace(web, "count  = 2", "count  = 3", 1), 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out := e.mustRun("apply", "-auto-approve", "-json", e.config)
	t.Logf("scale-up through the leader took %s", time.Since(start).Round(time.Millisecond))
	var local, done int
	var leaders []string
	rebuilt := false
	for _, line := range strings.Split(out, "\n") {
		var ev struct {
			Type, Kind, Leader, Slot, State string
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		switch ev.Type {
		case "progress":
			local++ // the CLI's own executor ran a step
		case "leader_progress":
			leaders = append(leaders, ev.Leader)
			if ev.Kind == "done" {
				done++
			}
			if ev.Kind == "rebuild" && ev.Slot == "web-3" {
				rebuilt = true
			}
		}
	}
	if local != 0 {
		t.Errorf("the CLI executed %d step events itself; the leader must be the only executor:\n%s", local, out)
	}
	if done != 1 || !rebuilt {
		t.Errorf("leader progress: %d done lines (want 1), web-3 rebuild reported %v:\n%s", done, rebuilt, out)
	}
	// Leadership may move during the apply (a leader that holds a VIP hands
	// it on by design); the CLI then asks the new leader, so progress may
	// name two leaders, but always a voter, never the CLI itself.
	for _, l := range leaders {
		if !voters[l] {
			t.Errorf("progress from %q, which is not a voter (voters %v, leader before the apply %s)", l, rep.Control.Voters, leader)
		}
	}
	want := map[string]int{"web": 3, "lb": 2, "mail": 2, "repo": 2}
	waitFor(t, 60*time.Second, "web-3 on and passing", func() (bool, string) {
		n, ok := nodeOf(e.status(), "web-3")
		if !ok || n.State != "on" || n.Health != "passing" {
			return false, "web-3: " + n.State + ", " + n.Health
		}
		return true, ""
	})
	rep = e.status()
	wantNodes(t, rep, want) // one machine per slot: no duplicate from a second executor
	if _, code := e.run("plan", "-detailed-exitcode", e.config); code != 0 {
		t.Errorf("plan after the apply through the leader: exit %d, want 0 (no changes)", code)
	}
}
