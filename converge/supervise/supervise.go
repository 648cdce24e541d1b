package supervise

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec is what to run.
type Spec struct {
	Name    string            // service name: log and state file names
	Command []string          // argv; Command[0] is looked up in PATH
	Env     map[string]string // added to the supervisor's own environment
	Dir     string            // working directory ("" = the node root)
}

// Equal reports whether two specs would run the same process.
func (s Spec) Equal(o Spec) bool {
	return s.Name == o.Name && slices.Equal(s.Command, o.Command) && maps.Equal(s.Env, o.Env) && s.Dir == o.Dir
}

// Config configures a Supervisor. Zero durations take the defaults noted.
type Config struct {
	Root        string        // node root: logs and state go under it (required)
	Logger      *slog.Logger  // nil discards
	BackoffMin  time.Duration // first restart delay after a crash; default 500ms
	BackoffMax  time.Duration // cap of the doubling delay; default 30s
	StableAfter time.Duration // uptime that resets the backoff; default 10s
	StopTimeout time.Duration // SIGTERM to SIGKILL; default 10s
}

// Status is a snapshot of one service.
type Status struct {
	Spec     Spec
	Running  bool // a process is alive now (false while backing off)
	PID      int  // of the current process, 0 when none
	Restarts int  // crash restarts since Ensure started it
	Starts   int  // processes started since Ensure, crash or requested
}

// Supervisor runs services. Its methods are safe for concurrent use.
// Close stops every service; after Close, Ensure fails.
type Supervisor struct {
	cfg    Config
	logDir string
	state  string

	mu     sync.Mutex
	svcs   map[string]*service
	closed bool
	wg     sync.WaitGroup
}

type request struct {
	stop  bool
	reply chan struct{}
}

type service struct {
	spec Spec
	reqs chan request
	done chan struct{} // closed when the monitor returns

	next    *exec.Cmd     // started by a restart request; monitor only
	backoff time.Duration // next crash delay; monitor only

	mu sync.Mutex
	st Status
}

// New returns a supervisor for the node rooted at cfg.Root. It starts
// nothing.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Root == "" {
		return nil, errors.New("supervisor: root is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.BackoffMin, 500*time.Millisecond)
	def(&cfg.BackoffMax, 30*time.Second)
	def(&cfg.StableAfter, 10*time.Second)
	def(&cfg.StopTimeout, 10*time.Second)
	s := &Supervisor{
		cfg:    cfg,
		logDir: filepath.Join(cfg.Root, "var", "log"),
		state:  filepath.Join(cfg.Root, "var", "lib", "hactl", "supervise"),
		svcs:   map[string]*service{},
	}
	return s, nil
}

// LogPath returns the log file of a service.
func (s *Supervisor) LogPath(name string) string { return filepath.Join(s.logDir, name+".log") }

// Status returns the status of a service and whether the supervisor runs it.
func (s *Supervisor) Status(name string) (Status, bool) {
	s.mu.Lock()
	sv, ok := s.svcs[name]
	s.mu.Unlock()
	if !ok {
		return Status{}, false
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return sv.st, true
}

// Ensure makes the supervisor run spec: it starts the service when it is
// not supervised, or restarts it when it runs with a different spec. It
// returns true when it started or restarted something. A stale process
// recorded by an earlier supervisor is stopped first (see package doc).
func (s *Supervisor) Ensure(spec Spec) (bool, error) {
	if err := validName(spec.Name); err != nil {
		return false, err
	}
	if len(spec.Command) == 0 {
		return false, fmt.Errorf("service %s: empty command", spec.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, fmt.Errorf("service %s: supervisor is closed", spec.Name)
	}
	if sv, ok := s.svcs[spec.Name]; ok {
		if sv.spec.Equal(spec) {
			return false, nil
		}
		s.stopLocked(sv)
	}
	var adopt int
	if _, ok := s.svcs[spec.Name]; !ok {
		if rec, ok := s.readRecord(spec.Name); ok && rec.alive() && rec.spec().Equal(spec) {
			adopt = rec.PID
		} else {
			s.killStale(spec.Name)
		}
	}
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return false, fmt.Errorf("service %s: %w", spec.Name, err)
	}
	if err := os.MkdirAll(s.state, 0o755); err != nil {
		return false, fmt.Errorf("service %s: %w", spec.Name, err)
	}
	sv := &service{spec: spec, reqs: make(chan request), done: make(chan struct{})}
	sv.st.Spec = spec
	started := make(chan error, 1)
	s.svcs[spec.Name] = sv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(sv.done)
		s.monitor(sv, started, adopt)
	}()
	if err := <-started; err != nil {
		// The monitor keeps retrying with backoff; report the first failure.
		return true, fmt.Errorf("service %s: start: %w", spec.Name, err)
	}
	return adopt == 0, nil
}

// Restart stops the service's process group and starts it again at once
// (no backoff). It waits until the new process was started.
func (s *Supervisor) Restart(name string) error {
	s.mu.Lock()
	sv, ok := s.svcs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("service %s is not supervised", name)
	}
	reply := make(chan struct{})
	select {
	case sv.reqs <- request{reply: reply}:
		<-reply
		return nil
	case <-sv.done:
		return fmt.Errorf("service %s is stopping", name)
	}
}

// Stop stops the service and forgets it; it also stops a stale process
// recorded by an earlier supervisor. It returns true when it stopped
// something. It waits until the whole process group is gone.
func (s *Supervisor) Stop(name string) (bool, error) {
	if err := validName(name); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv, ok := s.svcs[name]; ok {
		s.stopLocked(sv)
		return true, nil
	}
	return s.killStale(name), nil
}

// Stale reports whether a process recorded by an earlier supervisor for
// name is still alive (and this supervisor does not run it yet).
func (s *Supervisor) Stale(name string) bool {
	rec, ok := s.readRecord(name)
	return ok && rec.alive()
}

// Adoptable reports whether a process recorded by an earlier supervisor
// is alive and runs exactly spec, so Ensure(spec) would adopt it without a
// restart.
func (s *Supervisor) Adoptable(spec Spec) bool {
	rec, ok := s.readRecord(spec.Name)
	return ok && rec.alive() && rec.spec().Equal(spec)
}

// Close stops every service and waits for their monitors. It is
// idempotent.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, sv := range s.svcs {
		s.stopLocked(sv)
	}
	s.wg.Wait()
	return nil
}

func (s *Supervisor) stopLocked(sv *service) {
	reply := make(chan struct{})
	select {
	case sv.reqs <- request{stop: true, reply: reply}:
		<-reply
	case <-sv.done:
	}
	<-sv.done
	delete(s.svcs, sv.spec.Name)
	os.Remove(s.recordPath(sv.spec.Name))
}

// monitor owns one service's process for its whole life. Only it touches
// sv.next and sv.backoff.
func (s *Supervisor) monitor(sv *service, started chan<- error, adopt int) {
	log := s.cfg.Logger.With("service", sv.spec.Name)
	sv.backoff = s.cfg.BackoffMin
	first := true
	report := func(err error) {
		if first {
			started <- err
			first = false
		}
	}
	for {
		if adopt != 0 {
			// A process of an earlier supervisor: not our child, so poll it.
			pid := adopt
			adopt = 0
			sv.mu.Lock()
			sv.st.Running, sv.st.PID = true, pid
			sv.mu.Unlock()
			report(nil)
			log.Info("adopted running service", "pid", pid)
			if stop := s.watch(sv, pid, pollExit(pid)); stop {
				return
			}
			continue
		}
		cmd, err := sv.next, error(nil)
		fresh := cmd == nil // a restart request already recorded sv.next
		sv.next = nil
		if fresh {
			cmd, err = s.start(sv.spec)
		}
		if err != nil {
			report(err)
			log.Warn("service failed to start", "err", err, "retry_in", sv.backoff)
			if stop := s.wait(sv, sv.backoff); stop {
				return
			}
			sv.backoff = min(2*sv.backoff, s.cfg.BackoffMax)
			continue
		}
		pid := cmd.Process.Pid
		if fresh {
			s.running(sv, pid)
		}
		report(nil)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if stop := s.watch(sv, pid, exited); stop {
			return
		}
	}
}

// running records that pid now runs the service.
func (s *Supervisor) running(sv *service, pid int) {
	sv.mu.Lock()
	sv.st.Running, sv.st.PID = true, pid
	sv.st.Starts++
	sv.mu.Unlock()
	s.writeRecord(sv.spec, pid)
}

// pollExit reports on the returned channel when pid (not a child) dies.
func pollExit(pid int) <-chan error {
	ch := make(chan error, 1)
	go func() {
		for ProcessAlive(pid) {
			time.Sleep(250 * time.Millisecond)
		}
		ch <- errors.New("adopted process exited")
	}()
	return ch
}

// watch waits for the running process pid to exit (then backs off, and
// the caller starts it again) or for a request. It returns true when the
// service must stop; sv.next holds a process a restart already started.
func (s *Supervisor) watch(sv *service, pid int, exited <-chan error) (stop bool) {
	log := s.cfg.Logger.With("service", sv.spec.Name)
	t0 := time.Now()
	select {
	case err := <-exited:
		killGroup(pid, syscall.SIGKILL) // leftover grandchildren
		sv.mu.Lock()
		sv.st.Running, sv.st.PID = false, 0
		sv.st.Restarts++
		sv.mu.Unlock()
		if time.Since(t0) >= s.cfg.StableAfter {
			sv.backoff = s.cfg.BackoffMin
		}
		backoff := sv.backoff
		sv.backoff = min(2*sv.backoff, s.cfg.BackoffMax)
		log.Warn("service exited; restarting", "err", err, "uptime", time.Since(t0).Round(time.Millisecond), "retry_in", backoff)
		return s.wait(sv, backoff)
	case req := <-sv.reqs:
		s.terminate(pid, exited)
		sv.mu.Lock()
		sv.st.Running, sv.st.PID = false, 0
		sv.mu.Unlock()
		sv.backoff = s.cfg.BackoffMin
		if req.stop {
			log.Info("service stopped")
			close(req.reply)
			return true
		}
		log.Info("service restarting on request")
		// Start the new process before replying, so Restart returns with
		// the service up.
		next, err := s.start(sv.spec)
		if err != nil {
			close(req.reply)
			log.Warn("service failed to restart", "err", err)
			return s.wait(sv, s.cfg.BackoffMin)
		}
		s.running(sv, next.Process.Pid)
		close(req.reply)
		sv.next = next
		return false
	}
}

// wait sleeps d while serving requests: a stop request ends the service
// (true), a restart request ends the wait early.
func (s *Supervisor) wait(sv *service, d time.Duration) (stop bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case req := <-sv.reqs:
		close(req.reply)
		return req.stop
	}
}

// start launches spec as the leader of a new process group, its output
// appended to the service log.
func (s *Supervisor) start(spec Spec) (*exec.Cmd, error) {
	logf, err := os.OpenFile(s.LogPath(spec.Name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = s.cfg.Root
	}
	cmd.Env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		cmd.Env = append(cmd.Env, k+"="+spec.Env[k])
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(logf, "hactl-supervise: %s starting %q\n", time.Now().UTC().Format(time.RFC3339), spec.Command)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// terminate stops the process group led by pid: SIGTERM, then SIGKILL
// after StopTimeout, then SIGKILL for any member still left.
func (s *Supervisor) terminate(pid int, exited <-chan error) {
	killGroup(pid, syscall.SIGTERM)
	t := time.NewTimer(s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		killGroup(pid, syscall.SIGKILL)
		<-exited
	}
	killGroup(pid, syscall.SIGKILL)
	// SIGKILL is delivered asynchronously: wait until no member is left.
	for deadline := time.Now().Add(5 * time.Second); GroupAlive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// GroupAlive reports whether any process of the group pgid is alive.
// Zombies (exited, not yet reaped by their parent) do not count.
func GroupAlive(pgid int) bool {
	if pgid <= 1 || syscall.Kill(-pgid, 0) != nil {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, pg, ok := procStat(pid)
		if ok && pg == pgid && state != "Z" {
			return true
		}
	}
	return false
}

// ProcessAlive reports whether pid is alive and not a zombie.
func ProcessAlive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// procStat returns the state and process group of pid from /proc.
func procStat(pid int) (state string, pgid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return "", 0, false
	}
	pg, err := strconv.Atoi(f[2])
	return f[0], pg, err == nil
}

type record struct {
	PID     int               `json:"pid"`
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Dir     string            `json:"dir,omitempty"`
	Name    string            `json:"name"`
}

func (r record) spec() Spec { return Spec{Name: r.Name, Command: r.Command, Env: r.Env, Dir: r.Dir} }

func (r record) alive() bool {
	if r.PID <= 1 || !ProcessAlive(r.PID) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.PID))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	return slices.Equal(argv, r.Command)
}

func (s *Supervisor) recordPath(name string) string { return filepath.Join(s.state, name+".json") }

func (s *Supervisor) writeRecord(spec Spec, pid int) {
	b, _ := json.Marshal(record{PID: pid, Name: spec.Name, Command: spec.Command, Env: spec.Env, Dir: spec.Dir})
	tmp := s.recordPath(spec.Name) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, s.recordPath(spec.Name))
	}
}

func (s *Supervisor) readRecord(name string) (record, bool) {
	var r record
	b, err := os.ReadFile(s.recordPath(name))
	if err != nil || json.Unmarshal(b, &r) != nil {
		return r, false
	}
	return r, true
}

// killStale stops a live process recorded by an earlier supervisor and
// removes the record; it reports whether it stopped something.
func (s *Supervisor) killStale(name string) bool {
	rec, ok := s.readRecord(name)
	if !ok {
		return false
	}
	defer os.Remove(s.recordPath(name))
	if !rec.alive() {
		return false
	}
	s.cfg.Logger.Info("stopping process left by an earlier supervisor", "service", name, "pid", rec.PID)
	killGroup(rec.PID, syscall.SIGTERM)
	deadline := time.Now().Add(s.cfg.StopTimeout)
	for GroupAlive(rec.PID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	killGroup(rec.PID, syscall.SIGKILL)
	return true
}

func validName(n string) error {
	if n == "" || strings.ContainsAny(n, "/\x00") || n == "." || n == ".." {
		return fmt.Errorf("invalid service name %q", n)
	}
	return nil
}
