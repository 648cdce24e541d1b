package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hactlBin is the hactl binary built once for the end-to-end tests: the
// nodes it starts must be the real program, running as detached processes.
var hactlBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "hactl-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		hactlBin = filepath.Join(dir, "hactl")
		out, err := exec.Command("go", "build", "-o", hactlBin, ".").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build hactl: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// e2e is one isolated hactl environment: its own state directory, its own
// copy of the configuration, and cleanup of every node process it started.
type e2e struct {
	t      *testing.T
	state  string
	config string
	// extraEnv is added to the environment of every hactl the test runs
	// (not of the nodes the provider starts).
	extraEnv []string
}

func newE2E(t *testing.T, example string) *e2e {
	t.Helper()
	if hactlBin == "" {
		t.Skip("end-to-end tests need the hactl binary (not built with -short)")
	}
	e := &e2e{t: t, state: t.TempDir(), config: filepath.Join(t.TempDir(), "config")}
	if err := copyTreeDeref(filepath.Join("..", "..", "examples", example), e.config); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

// cleanup destroys the cluster and kills any process still running from the
// state directory, even when the test failed halfway.
func (e *e2e) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hactlBin, "destroy", "-auto-approve", e.config)
	cmd.Env = e.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Logf("cleanup destroy: %v\n%s", err, out)
	}
	for _, pid := range procsUnder(e.state) {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (e *e2e) env() []string {
	return append(append(os.Environ(), "HACTL_STATE_DIR="+e.state, "NO_COLOR=1"), e.extraEnv...)
}

// run runs hactl to completion and returns its stdout and exit code.
func (e *e2e) run(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hactlBin, args...)
	cmd.Env = e.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("hactl %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	if code != 0 {
		e.t.Logf("hactl %s exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
		e.logNodeTails()
	}
	return out.String(), code
}

func (e *e2e) mustRun(args ...string) string {
	e.t.Helper()
	out, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("hactl %s: exit %d", strings.Join(args, " "), code)
	}
	return out
}

func (e *e2e) status() statusReport {
	e.t.Helper()
	var rep statusReport
	if err := json.Unmarshal([]byte(e.mustRun("status", "-json", e.config)), &rep); err != nil {
		e.t.Fatalf("status -json: %v", err)
	}
	return rep
}

// procsUnder lists processes whose environment names a node directory under
// state (HACTL_NODE_DIR) or whose command line mentions state.
func procsUnder(state string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscanf(d.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if bytes.Contains(env, []byte("HACTL_NODE_DIR="+state)) || bytes.Contains(cmdline, []byte(state)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// wantNodes checks that each role has exactly its count of machines, one per
// slot, all on and healthy.
func wantNodes(t *testing.T, rep statusReport, counts map[string]int) {
	t.Helper()
	got := map[string]int{}
	seen := map[string]string{}
	for _, n := range rep.Nodes {
		if prev, dup := seen[n.Name]; dup {
			t.Errorf("slot %s has two machines: %s and %s", n.Name, prev, n.Machine)
		}
		seen[n.Name] = n.Machine
		got[n.Role]++
		if n.State != "on" || n.Health != "passing" {
			t.Errorf("node %s: state %s, health %s; want on, passing", n.Name, n.State, n.Health)
		}
	}
	for role, c := range counts {
		if got[role] != c {
			t.Errorf("role %s: %d machines, want %d", role, got[role], c)
		}
	}
	if len(rep.Missing) != 0 {
		t.Errorf("missing against the spec: %v", rep.Missing)
	}
}

var blogCounts = map[string]int{"web": 2, "lb": 2, "mail": 2, "repo": 2}

// TestE2E_Blog_Lifecycle is the foundation's promise on a fresh machine:
// validate, plan, apply, status and destroy of examples/blog on the local
// provider, with apply killed halfway and run again.
func TestE2E_Blog_Lifecycle(t *testing.T) {
	e := newE2E(t, "blog")

	if out := e.mustRun("validate", e.config); !strings.Contains(out, "valid") {
		t.Fatalf("validate said %q", out)
	}
	out, code := e.run("plan", "-detailed-exitcode", e.config)
	if code != 2 {
		t.Fatalf("plan -detailed-exitcode on an empty cluster: exit %d, want 2", code)
	}
	if !strings.Contains(out, "8 to create") {
		t.Errorf("plan output lacks the summary:\n%s", out)
	}

	// Start apply and kill it as soon as the first node is created.
	cmd := exec.Command(hactlBin, "apply", "-auto-approve", "-parallelism", "1", e.config)
	cmd.Env = e.env()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "create complete") {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatal("apply finished before it could be interrupted")
	}
	partial := e.status()
	if len(partial.Nodes) == 0 || len(partial.Missing) == 0 {
		t.Fatalf("after the interrupted apply: %d nodes, %d missing; want some of each", len(partial.Nodes), len(partial.Missing))
	}

	// A re-run finishes the job: no duplicate, no orphan, everything healthy.
	e.mustRun("apply", "-auto-approve", e.config)
	wantNodes(t, e.status(), blogCounts)
	if _, code := e.run("plan", "-detailed-exitcode", e.config); code != 0 {
		t.Errorf("plan after apply: exit %d, want 0 (no changes)", code)
	}

	e.mustRun("destroy", "-auto-approve", e.config)
	if rep := e.status(); len(rep.Nodes) != 0 {
		t.Errorf("after destroy: %d machines remain", len(rep.Nodes))
	}
	if pids := procsUnder(e.state); len(pids) != 0 {
		t.Errorf("after destroy: processes still running: %v", pids)
	}
}

// TestE2E_Validate_BadInput_ChangesNothing: a malformed configuration is
// reported with file and line, exits non-zero, and creates nothing.
func TestE2E_Validate_BadInput_ChangesNothing(t *testing.T) {
	e := newE2E(t, "blog")
	bad := filepath.Join(e.config, "broken.hcl")
	if err := os.WriteFile(bad, []byte("role \"extra\" {\n  count = 0\n  provider = \"nowhere\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"validate", e.config}, {"plan", e.config}, {"apply", "-auto-approve", e.config}} {
		cmd := exec.Command(hactlBin, args...)
		cmd.Env = e.env()
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("hactl %s succeeded on a broken configuration", args[0])
		}
		if !strings.Contains(string(out), "broken.hcl line 2") || !strings.Contains(string(out), "broken.hcl line 3") {
			t.Errorf("hactl %s: diagnostics do not name broken.hcl lines 2 and 3:\n%s", args[0], out)
		}
	}
	ents, _ := os.ReadDir(e.state)
	for _, d := range ents {
		if d.Name() != "bin" {
			t.Errorf("a failed apply created %s in the state directory", d.Name())
		}
	}
}

// logNodeTails logs the last lines of every node's agent.log, so a node that
// never became healthy explains itself in the test output.
func (e *e2e) logNodeTails() {
	logs, _ := filepath.Glob(filepath.Join(e.state, "*", "nodes", "*", "agent.log"))
	for _, p := range logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		e.t.Logf("%s (last %d lines):\n%s", p, len(lines), strings.Join(lines, "\n"))
	}
}
