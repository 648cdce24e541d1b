package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/chaos"
	"github.com/hactl/hactl/data"
)

// stage2Seed draws lb-1 as the survivor of round 1 on the blog (nodes
// lb-1..web-2 sorted by name): a voter that holds neither mail nor repo
// data, so both data sets must come back from their backups.
const stage2Seed = 2

// TestE2E_Blog_ChaosStage2_WholeAgainFromBackups is issue #8's stage 2:
// examples/blog on the local provider (mail and repo data replicated
// synchronously, each backed up every 2 s to a directory target), markers
// written (mails with a 250, pushed commits) and a backup awaited that
// holds them, then `hactl chaos run --stage 2` destroys all but one node at
// once. The survivor must reset the voter set only with the provider's proof
// that the other voters are gone (its event), the cluster must be whole
// again (every slot on and passing, the VIP answering), every marker
// acknowledged before the backup must be back, and the markers chaos wrote
// itself just before the fault are reported honestly (kept or lost, with
// the loss window judged against the rpo).
func TestE2E_Blog_ChaosStage2_WholeAgainFromBackups(t *testing.T) {
	e := newE2E(t, "blog")
	patch := func(file, from, to string) {
		p := filepath.Join(e.config, file)
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), from) {
			t.Fatalf("%s lacks %q (%v)", p, from, err)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	patch(filepath.Join("roles", "mail.hcl"), `"@every 1m"`, `"@every 2s"`)
	// The repo's data gets a backup of its own (the example has none: a
	// repo that loses both nodes loses its pushes).
	patch(filepath.Join("roles", "repo.hcl"), `mode = "sync"`, `mode = "sync"

    backup "offsite" {
      target    = "dir:///@state/blog-repo-backups"
      schedule  = "@every 2s"
      keep_last = 60
    }`)

	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, _ := e.controlReady()
	addr := vip + ":8000"
	waitFor(t, 60*time.Second, "blog through the VIP "+addr, func() (bool, string) { return getBlog(addr) })
	token := filepath.Join(e.state, "blog", "secrets", "cluster.token")
	tok, err := os.ReadFile(token)
	if err != nil {
		t.Fatal(err)
	}

	// Markers before the backup, written to concrete nodes.
	byName := map[string]statusNode{}
	for _, n := range e.status().Nodes {
		byName[n.Name] = n
	}
	mailMarker := func(a string) chaos.Marker {
		m, err := chaos.ParseMarker("smtp=" + a + ":2525,http://" + a + ":8025/messages," + token + ",editor@blog.local")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	gitMarker := func(a string) chaos.Marker {
		m, err := chaos.ParseMarker("git=http://" + a + ":8090/blog.git," + token)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	type mark struct {
		kind, id string
		at       time.Time
	}
	var before []mark
	ctx := context.Background()
	for i := range 3 {
		for _, k := range []string{"mail", "repo"} {
			n := byName[fmt.Sprintf("%s-%d", k, 1+i%2)]
			m := mailMarker(n.Address)
			if k == "repo" {
				m = gitMarker(n.Address)
			}
			id := fmt.Sprintf("stage2-before-%s-%d", k, i)
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := m.Write(wctx, id)
			cancel()
			if err != nil {
				t.Fatalf("marker %s on %s not acknowledged: %v", id, n.Name, err)
			}
			before = append(before, mark{kind: k, id: id, at: time.Now()})
		}
	}
	lastWrite := before[len(before)-1].at

	// Await a backup of each data set that is newer than every marker.
	backupAfter := func(role, dataName string) time.Time {
		var at time.Time
		waitFor(t, 60*time.Second, "a "+dataName+" backup after the markers", func() (bool, string) {
			for _, n := range e.status().Nodes {
				if n.Role != role || n.State != "on" {
					continue
				}
				st, err := agentStatus(n.Address)
				if err != nil {
					continue
				}
				for _, d := range st.Data {
					if d.Name != dataName || !d.BackupRunner || len(d.Backups) == 0 || d.Backups[0].LastBackup == "" {
						continue
					}
					bt, err := data.ParseBackupID(d.Backups[0].LastBackup)
					if err == nil && bt.After(lastWrite) {
						at = bt
						return true, ""
					}
					return false, fmt.Sprintf("%s: last backup %s", n.Name, d.Backups[0].LastBackup)
				}
			}
			return false, "no backup runner for " + dataName
		})
		return at
	}
	mailBackup := backupAfter("mail", "mail/maildir")
	repoBackup := backupAfter("repo", "repo/git")
	t.Logf("backups after the markers: mail %s, repo %s", mailBackup.Format(time.RFC3339Nano), repoBackup.Format(time.RFC3339Nano))

	// Stage 2: all but one node at once. chaos writes its own markers just
	// before the fault (after the backup): those may be lost.
	reportDir := filepath.Join(t.TempDir(), "report")
	rep, out, _ := e.chaosRun(
		"--stage", "2", "--rounds", "1", "--seed", fmt.Sprint(stage2Seed),
		"--baseline", "1s", "--round-timeout", "4m",
		"--probe", "http=http://"+addr+"/",
		"--marker", "smtp={mail}:2525,http://{mail}:8025/messages,"+token+",editor@blog.local",
		"--marker", "git=http://{repo}:8090/blog.git,"+token,
		"--report", reportDir)
	if rep.Stage != 2 || len(rep.Rounds) != 1 {
		t.Fatalf("report: stage %d, %d rounds (refused %q); want stage 2, one round", rep.Stage, len(rep.Rounds), rep.Refused)
	}
	rd := rep.Rounds[0]
	t.Logf("round 1: survivor %s, %d victims, detected %s, recovered %s, %d/%d failed, markers %d written %d lost %v (window %.1fs), errors %v",
		rd.Survivor, len(rd.Victims), secsStr(rd.DetectionSeconds), secsStr(rd.RecoverySeconds), rd.RequestsFailed, rd.Requests,
		rd.MarkersWritten, rd.MarkersLost, rd.Lost, rd.LossWindowSeconds, rd.Errors)
	if rd.Survivor != "lb-1" || len(rd.Victims) != 7 {
		t.Fatalf("round 1: survivor %q with %d victims; want lb-1 and 7 (seed %d)", rd.Survivor, len(rd.Victims), stage2Seed)
	}
	if !rd.Recovered {
		t.Errorf("round 1: the cluster was not whole again within the round timeout")
	}
	if strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Error("the cluster token appears in the chaos output")
	}

	// The survivor reset the voter set only after the provider confirmed
	// the other voters gone: its event, after the fault, with the proof.
	evOut := e.mustRun("events", e.config, "-json")
	var evs struct {
		Events []agent.ClusterEvent `json:"events"`
	}
	if err := json.Unmarshal([]byte(evOut), &evs); err != nil {
		t.Fatalf("events -json: %v\n%s", err, evOut)
	}
	var lone *agent.ClusterEvent
	for i, ev := range evs.Events {
		if ev.Kind == "lone-survivor" && !ev.Time.Before(rd.FaultAt) {
			lone = &evs.Events[i]
		}
	}
	switch {
	case lone == nil:
		t.Errorf("no lone-survivor event after the fault at %s", rd.FaultAt.Format(time.RFC3339Nano))
	case lone.Node != "lb-1" || !strings.Contains(lone.Message, "mail-1@1 gone") || !strings.Contains(lone.Message, "repo-1@1 gone"):
		t.Errorf("lone-survivor event %+v; want lb-1 with the provider's proof that mail-1@1 and repo-1@1 are gone", *lone)
	default:
		t.Logf("lone survivor %.1fs after the fault: %s", lone.Time.Sub(rd.FaultAt).Seconds(), lone.Message)
	}

	// Whole again: every slot on and passing at a new generation, the VIP
	// answering.
	e.controlReady()
	waitFor(t, 60*time.Second, "every slot on and passing", func() (bool, string) {
		rep := e.status()
		var bad []string
		seen := 0
		for _, n := range rep.Nodes {
			if n.State == "on" && n.Health == "passing" {
				seen++
			} else {
				bad = append(bad, n.Name+" "+n.State+"/"+n.Health)
			}
		}
		return seen >= 8 && len(rep.Missing) == 0, fmt.Sprintf("%d passing, missing %v, other %v", seen, rep.Missing, bad)
	})
	wantNodes(t, e.status(), blogCounts)
	waitFor(t, 60*time.Second, "blog through the VIP after stage 2", func() (bool, string) { return getBlog(addr) })
	for _, n := range e.status().Nodes {
		if n.Name != "lb-1" && n.Generation < 2 {
			t.Errorf("%s is generation %d after stage 2; want rebuilt", n.Name, n.Generation)
		}
	}

	// Every marker acknowledged before the backup is back, on every node of
	// its role.
	cur := map[string]statusNode{}
	for _, n := range e.status().Nodes {
		cur[n.Name] = n
	}
	for _, k := range []string{"mail", "repo"} {
		for slot := 1; slot <= 2; slot++ {
			n := cur[fmt.Sprintf("%s-%d", k, slot)]
			m := mailMarker(n.Address)
			if k == "repo" {
				m = gitMarker(n.Address)
			}
			for _, mk := range before {
				if mk.kind != k {
					continue
				}
				var ok bool
				var rerr error
				waitFor(t, 30*time.Second, mk.id+" readable on "+n.Name, func() (bool, string) {
					rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					defer cancel()
					ok, rerr = m.Read(rctx, mk.id)
					return rerr == nil, fmt.Sprint(rerr)
				})
				if !ok {
					t.Errorf("%s (acknowledged %s, before the backup) is missing on %s generation %d", mk.id, mk.at.Format(time.RFC3339Nano), n.Name, n.Generation)
				}
			}
		}
	}
	for _, n := range []string{"mail-1", "mail-2", "repo-1", "repo-2"} {
		st, err := agentStatus(cur[n].Address)
		if err != nil {
			t.Errorf("%s status: %v", n, err)
			continue
		}
		for _, d := range st.Data {
			if d.Restore != nil {
				t.Logf("%s %s restored from %s %q (age %s)", n, d.Name, d.Restore.Kind, d.Restore.Source, d.Restore.Age)
			}
		}
	}

	// Chaos's own markers came after the backup: each is either read back
	// or counted as lost, and a loss is judged against the rpo.
	if rd.MarkersWritten != 2 {
		t.Errorf("chaos wrote %d markers before the fault, want 2 (errors %v)", rd.MarkersWritten, rd.Errors)
	}
	if rd.MarkersLost > 0 {
		if rd.LossWindowSeconds <= 0 {
			t.Errorf("%d markers lost but no loss window measured", rd.MarkersLost)
		}
		for _, r := range rep.Results {
			if r.Name == "rpo" && r.Measured == "" {
				t.Errorf("rpo result without a measured value: %+v", r)
			}
		}
	}
}
