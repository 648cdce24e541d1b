package supervise

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// eventually polls cond until it holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newSup(t *testing.T, root string) *Supervisor {
	t.Helper()
	s, err := New(Config{Root: root, BackoffMin: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond, StopTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// readPID waits for the service to write its pid file and returns it.
func readPID(t *testing.T, path string, not int) int {
	t.Helper()
	var pid int
	eventually(t, "pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid != not
	})
	return pid
}

func alive(pid int) bool { return ProcessAlive(pid) }

func TestSupervisor_Lifecycle(t *testing.T) {
	root := t.TempDir()
	s := newSup(t, root)
	pidf := filepath.Join(root, "child.pid")
	// The service forks a grandchild that records its pid, then waits.
	spec := Spec{Name: "web", Command: []string{"sh", "-c", `sleep 600 & echo $! > child.pid; echo "hello $GREETING"; wait`}, Env: map[string]string{"GREETING": "world"}}
	changed, err := s.Ensure(spec)
	if err != nil || !changed {
		t.Fatalf("Ensure = %v, %v", changed, err)
	}
	child := readPID(t, pidf, 0)
	st, ok := s.Status("web")
	if !ok || !st.Running || st.PID == 0 {
		t.Fatalf("status %+v %v", st, ok)
	}
	if changed, err := s.Ensure(spec); err != nil || changed {
		t.Fatalf("second Ensure = %v, %v; want no change", changed, err)
	}
	eventually(t, "log line", func() bool {
		b, _ := os.ReadFile(s.LogPath("web"))
		return strings.Contains(string(b), "hello world")
	})
	if _, err := os.Stat(filepath.Join(root, "var/lib/hactl/supervise/web.json")); err != nil {
		t.Errorf("pid record: %v", err)
	}

	// Notify: restart kills the whole group and starts a new one.
	leader := st.PID
	if err := s.Restart("web"); err != nil {
		t.Fatal(err)
	}
	child2 := readPID(t, pidf, child)
	eventually(t, "old group gone", func() bool { return !alive(child) && !GroupAlive(leader) })
	st, _ = s.Status("web")
	if st.PID == leader || st.Starts != 2 || st.Restarts != 0 {
		t.Errorf("after restart: %+v", st)
	}

	// Stop: no process of the group is left.
	leader = st.PID
	if stopped, err := s.Stop("web"); err != nil || !stopped {
		t.Fatalf("Stop = %v, %v", stopped, err)
	}
	if GroupAlive(leader) || alive(child2) {
		t.Error("processes left after Stop")
	}
	if _, ok := s.Status("web"); ok {
		t.Error("still supervised after Stop")
	}
	if stopped, _ := s.Stop("web"); stopped {
		t.Error("second Stop reported a change")
	}
}

func TestSupervisor_CrashRestartsWithBackoff(t *testing.T) {
	root := t.TempDir()
	s := newSup(t, root)
	// Each start appends a line, then the process crashes.
	if _, err := s.Ensure(Spec{Name: "crashy", Command: []string{"sh", "-c", "date +%s.%N >> starts; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	var lines []string
	eventually(t, "four starts", func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "starts"))
		lines = strings.Fields(string(b))
		return len(lines) >= 4
	})
	// Backoff doubles from 50ms: the gaps are at least 50, 100, 200 ms.
	var ts []float64
	for _, l := range lines[:4] {
		f, err := strconv.ParseFloat(l, 64)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, f)
	}
	for i, min := range []float64{0.05, 0.1, 0.2} {
		if gap := ts[i+1] - ts[i]; gap < min {
			t.Errorf("gap %d = %.3fs, want >= %.2fs (exponential backoff)", i, gap, min)
		}
	}
	st, _ := s.Status("crashy")
	if st.Restarts < 3 {
		t.Errorf("restarts = %d", st.Restarts)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(Spec{Name: "x", Command: []string{"true"}}); err == nil {
		t.Error("Ensure after Close succeeded")
	}
}

func TestSupervisor_SpecChangeRestarts(t *testing.T) {
	s := newSup(t, t.TempDir())
	a := Spec{Name: "svc", Command: []string{"sleep", "600"}}
	if _, err := s.Ensure(a); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status("svc")
	b := a
	b.Command = []string{"sleep", "601"}
	if changed, err := s.Ensure(b); err != nil || !changed {
		t.Fatalf("Ensure(new spec) = %v, %v", changed, err)
	}
	if GroupAlive(st.PID) {
		t.Error("old process still running")
	}
	st2, _ := s.Status("svc")
	if !st2.Spec.Equal(b) || !st2.Running {
		t.Errorf("status %+v", st2)
	}
}

// A process recorded by an earlier supervisor (a crashed agent) is
// stopped and replaced by a child of the new supervisor.
func TestSupervisor_Ensure_ReplacesStaleProcess(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-waited })
	s := newSup(t, root)
	spec := Spec{Name: "old", Command: []string{"sleep", "600"}}
	os.MkdirAll(s.state, 0o755)
	s.writeRecord(spec, cmd.Process.Pid)
	if !s.Stale("old") {
		t.Fatal("Stale = false for a live recorded process")
	}
	spec.Env = map[string]string{"CHANGED": "1"}
	if s.Adoptable(spec) {
		t.Fatal("Adoptable = true for a different spec")
	}
	if changed, err := s.Ensure(spec); err != nil || !changed {
		t.Fatalf("Ensure = %v, %v", changed, err)
	}
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("stale process not stopped")
	}
	st, _ := s.Status("old")
	if st.PID == cmd.Process.Pid || !st.Running {
		t.Errorf("status %+v", st)
	}
}

// A process recorded by an earlier supervisor with the same spec is
// adopted without a restart, and restarted as a child when it dies.
func TestSupervisor_Ensure_AdoptsLiveProcess(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-waited })
	s := newSup(t, root)
	spec := Spec{Name: "web", Command: []string{"sleep", "600"}}
	os.MkdirAll(s.state, 0o755)
	s.writeRecord(spec, cmd.Process.Pid)
	if !s.Adoptable(spec) {
		t.Fatal("Adoptable = false")
	}
	if changed, err := s.Ensure(spec); err != nil || changed {
		t.Fatalf("Ensure = %v, %v; want adoption without change", changed, err)
	}
	st, _ := s.Status("web")
	if st.PID != cmd.Process.Pid || !st.Running {
		t.Fatalf("status %+v", st)
	}
	// The adopted process dies: the supervisor starts its own.
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	eventually(t, "restart after adopted process died", func() bool {
		st, _ := s.Status("web")
		return st.Starts == 1 && st.Running && st.PID != cmd.Process.Pid
	})
}
