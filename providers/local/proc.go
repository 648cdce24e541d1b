package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procInfo reads what liveness needs from /proc/<pid>: whether the process
// is running (not a zombie), its environment and its argv. ok is false when
// the process is gone, a zombie, or unreadable.
func procInfo(pid int) (env, argv []string, ok bool) {
	base := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(base + "/stat")
	if err != nil {
		return nil, nil, false
	}
	// The state follows the last ')' (the command name may contain ')').
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return nil, nil, false
	}
	if s := stat[i+2]; s == 'Z' || s == 'X' || s == 'x' {
		return nil, nil, false
	}
	if b, err := os.ReadFile(base + "/environ"); err == nil {
		env = strings.Split(string(b), "\x00")
	}
	if b, err := os.ReadFile(base + "/cmdline"); err == nil {
		argv = strings.Split(string(b), "\x00")
	}
	return env, argv, true
}

// belongsTo reports whether a process with this environment and argv is part
// of the node in dir: its environment carries HACTL_NODE_DIR=dir, or its argv
// carries "--node-dir dir" (or -node-dir, or the "=" forms), as the agent's
// does. This guards against pid reuse, and it does not match unrelated
// programs that merely name the directory (an "ls DIR" is not the node).
func belongsTo(env, argv []string, dir string) bool {
	want := NodeDirEnv + "=" + dir
	for _, e := range env {
		if e == want {
			return true
		}
	}
	return argvNodeDir(argv) == dir
}

// argvNodeDir returns the value of a --node-dir flag in argv, or "".
func argvNodeDir(argv []string) string {
	for i, a := range argv {
		switch {
		case a == "--node-dir" || a == "-node-dir":
			if i+1 < len(argv) {
				return argv[i+1]
			}
		case strings.HasPrefix(a, "--node-dir="):
			return a[len("--node-dir="):]
		case strings.HasPrefix(a, "-node-dir="):
			return a[len("-node-dir="):]
		}
	}
	return ""
}

// pidFromFile reads dir/agent.pid; 0 when missing or malformed.
func pidFromFile(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, PIDFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// alive is the fast liveness check List uses: the pid file names a running
// process that belongs to the node.
func alive(dir string) bool {
	pid := pidFromFile(dir)
	if pid == 0 {
		return false
	}
	env, argv, ok := procInfo(pid)
	return ok && belongsTo(env, argv, dir)
}

// scanProcs returns every running process (not zombie) of this user that
// belongs (see belongsTo) to a node directory accepted by match, keyed by pid
// with the node directory as value. It reads all of /proc, so it is used
// where thoroughness matters (fence, destroy, start), not in List.
func scanProcs(match func(dir string) bool) map[int]string {
	out := map[int]string{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self, uid := os.Getpid(), uint32(os.Getuid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		// Only our own processes: we could not signal others anyway.
		if fi, err := e.Info(); err != nil {
			continue
		} else if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid {
			continue
		}
		env, argv, ok := procInfo(pid)
		if !ok {
			continue
		}
		for _, kv := range env {
			if d, found := strings.CutPrefix(kv, NodeDirEnv+"="); found && match(d) {
				out[pid] = d
				break
			}
		}
		if _, done := out[pid]; done {
			continue
		}
		if d := argvNodeDir(argv); d != "" && match(d) {
			out[pid] = d
		}
	}
	return out
}

// nodeProcs returns the pids of every running process of the node in dir.
func nodeProcs(dir string) []int {
	m := scanProcs(func(d string) bool { return d == dir })
	pids := make([]int, 0, len(m))
	for pid := range m {
		pids = append(pids, pid)
	}
	return pids
}

// ensureRunning starts the node in dir unless a process of it is already
// running, and returns the node's main pid. The caller holds the cluster lock.
func (p *Provider) ensureRunning(dir string) (int, error) {
	if alive(dir) {
		return pidFromFile(dir), nil
	}
	// A crash between starting the process and writing its pid file leaves
	// a running node without one: adopt it instead of starting a second.
	if pids := nodeProcs(dir); len(pids) > 0 {
		leader := pids[0]
		for _, pid := range pids {
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
				leader = pid
				break
			}
		}
		if err := writeAtomic(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(leader)+"\n"), 0o644); err != nil {
			return 0, err
		}
		return leader, nil
	}
	return p.start(dir)
}

// start launches the node process detached: its own session (so it outlives
// the caller and can be killed as a group), stdin /dev/null, stdout and
// stderr appended to agent.log, HACTL_NODE_DIR in its environment.
func (p *Provider) start(dir string) (int, error) {
	if p.prepare != nil {
		if err := p.prepare(dir); err != nil {
			return 0, fmt.Errorf("prepare node: %w", err)
		}
	}
	argv := p.command(dir)
	if len(argv) == 0 || argv[0] == "" {
		return 0, errors.New("node command is empty")
	}
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open node log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = nodeEnv(dir)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start node %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	// Reap the child when it exits, so a fenced node does not linger as a
	// zombie of a long-running caller. The goroutine ends with the child.
	go func() { _ = cmd.Wait() }()
	if err := writeAtomic(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return 0, fmt.Errorf("write pid file: %w", err)
	}
	p.log.Debug("started node", "dir", dir, "pid", pid, "argv0", argv[0])
	return pid, nil
}

// nodeEnv is the caller's environment with HACTL_NODE_DIR set to dir (a node
// that creates nodes must not pass on its own directory).
func nodeEnv(dir string) []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, NodeDirEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, NodeDirEnv+"="+dir)
}

// stop ends every process of the node in dir and returns once /proc shows
// them gone. With grace > 0 it sends SIGTERM first and SIGKILL after grace;
// with grace 0 it sends SIGKILL at once (the fence).
func (p *Provider) stop(ctx context.Context, dir string, grace time.Duration) error {
	pids := nodeProcs(dir)
	if len(pids) == 0 {
		return nil
	}
	if grace > 0 {
		signalAll(pids, syscall.SIGTERM)
		gctx, cancel := context.WithTimeout(ctx, grace)
		err := waitGone(gctx, dir, pids...)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pids = nodeProcs(dir)
	}
	for {
		signalAll(pids, syscall.SIGKILL)
		// Children forked between the scan and the kill are caught by the
		// next scan; waitGone returns once a scan finds nothing.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := waitGone(wctx, dir, pids...)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("processes of %s still running: %w", dir, ctx.Err())
		}
		pids = nodeProcs(dir)
	}
}

// allExited reports whether every pid has exited: each of its threads is
// gone or a zombie. Threads matter: the leader of a multi-threaded process
// (every Go program) can turn zombie while its other threads are still
// exiting and still hold the shared file table, sockets included.
func allExited(pids []int) bool {
	for _, pid := range pids {
		base := "/proc/" + strconv.Itoa(pid)
		tasks, err := os.ReadDir(base + "/task")
		if err != nil {
			continue // gone
		}
		for _, t := range tasks {
			stat, err := os.ReadFile(base + "/task/" + t.Name() + "/stat")
			if err != nil {
				continue // this thread is gone
			}
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 || i+2 >= len(stat) {
				continue
			}
			if st := stat[i+2]; st != 'Z' && st != 'X' && st != 'x' {
				return false
			}
		}
	}
	return true
}

// signalAll sends sig to each process and to its process group, except our
// own group.
func signalAll(pids []int, sig syscall.Signal) {
	own := syscall.Getpgrp()
	for _, pid := range pids {
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != own {
			_ = syscall.Kill(-pgid, sig)
		}
		_ = syscall.Kill(pid, sig)
	}
}

// waitGone polls /proc until no process of the node runs and every pid in
// signalled has exited (gone or a zombie). The second check matters: a
// process that is dying has already released its memory, so its environment
// reads empty and the scan no longer recognises it, but its sockets are
// closed only later in exit; until it is a zombie it may still accept
// connections, and the fence is not yet confirmed.
func waitGone(ctx context.Context, dir string, signalled ...int) error {
	d := 5 * time.Millisecond
	for {
		if len(nodeProcs(dir)) == 0 && allExited(signalled) {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if d < 100*time.Millisecond {
			d *= 2
		}
	}
}
