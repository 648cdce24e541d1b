package doemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Droplet is what a Backend learns about a droplet it must make real.
type Droplet struct {
	ID       int
	Name     string
	Tags     []string
	UserData string
	// IPv4 is the public address the emulator allocated (Config.IPv4Base).
	IPv4   string
	Region string
	Size   string
	Image  string
}

// Backend decides what a droplet is. The emulator calls it outside any
// request it is answering only for Boot; PowerOff, PowerOn and Destroy are
// called while the request that caused them is being answered, and the
// emulator reports the new status only after they return, so "off" in the
// API means the backend has stopped the droplet.
//
// Implementations must be safe for concurrent use. Calls for an id the
// backend does not know (never booted, already destroyed) return nil.
type Backend interface {
	// Boot makes droplet d exist and start. The droplet stays "new" until
	// Boot returns; an error makes its create action end "errored" and the
	// droplet vanish. Boot returns the address the droplet is reachable at,
	// or "" to keep d.IPv4.
	Boot(ctx context.Context, d Droplet) (ipv4 string, err error)
	// PowerOff stops the droplet hard and returns once it has stopped.
	PowerOff(ctx context.Context, id int) error
	// PowerOn starts a stopped droplet again.
	PowerOn(ctx context.Context, id int) error
	// Destroy stops the droplet and removes its disk.
	Destroy(ctx context.Context, id int) error
}

// NopBackend keeps droplets imaginary; for API-shape tests.
type NopBackend struct{}

func (NopBackend) Boot(context.Context, Droplet) (string, error) { return "", nil }
func (NopBackend) PowerOff(context.Context, int) error           { return nil }
func (NopBackend) PowerOn(context.Context, int) error            { return nil }
func (NopBackend) Destroy(context.Context, int) error            { return nil }

// ProcessBackend runs one real process per droplet. Each droplet gets the
// directory <Dir>/droplet-<id> holding "user-data" (the droplet's user_data
// verbatim) and "meta-data.json" ({"id","name","tags","ipv4","region",
// "size","image"}); the process starts there with DOEMU_DROPLET_DIR set, in
// its own process group, with output in "console.log".
type ProcessBackend struct {
	// Dir holds the droplet directories.
	Dir string
	// Command returns the argv that runs droplet d in dir.
	Command func(dir string, d Droplet) []string

	mu    sync.Mutex
	procs map[int]*dropletProc
}

type dropletProc struct {
	d    Droplet
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

var _ Backend = (*ProcessBackend)(nil)

// Boot writes the droplet's directory and starts its process.
func (b *ProcessBackend) Boot(ctx context.Context, d Droplet) (string, error) {
	dir := filepath.Join(b.Dir, "droplet-"+strconv.Itoa(d.ID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("droplet %d: %w", d.ID, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "user-data"), []byte(d.UserData), 0o600); err != nil {
		return "", fmt.Errorf("droplet %d: %w", d.ID, err)
	}
	meta, _ := json.Marshal(map[string]any{"id": d.ID, "name": d.Name, "tags": d.Tags, "ipv4": d.IPv4,
		"region": d.Region, "size": d.Size, "image": d.Image})
	if err := os.WriteFile(filepath.Join(dir, "meta-data.json"), meta, 0o644); err != nil {
		return "", fmt.Errorf("droplet %d: %w", d.ID, err)
	}
	p := &dropletProc{d: d, dir: dir}
	b.mu.Lock()
	if b.procs == nil {
		b.procs = map[int]*dropletProc{}
	}
	b.procs[d.ID] = p
	b.mu.Unlock()
	return "", b.start(p)
}

func (b *ProcessBackend) start(p *dropletProc) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return nil // already running
		}
	}
	argv := b.Command(p.dir, p.d)
	if len(argv) == 0 {
		return fmt.Errorf("droplet %d: empty command", p.d.ID)
	}
	out, err := os.OpenFile(filepath.Join(p.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("droplet %d: %w", p.d.ID, err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "DOEMU_DROPLET_DIR="+p.dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("droplet %d: start: %w", p.d.ID, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

func (b *ProcessBackend) get(id int) *dropletProc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.procs[id]
}

// PowerOff kills the droplet's process group and waits until it is gone.
func (b *ProcessBackend) PowerOff(ctx context.Context, id int) error {
	p := b.get(id)
	if p == nil {
		return nil
	}
	b.mu.Lock()
	cmd, done := p.cmd, p.done
	b.mu.Unlock()
	if cmd == nil {
		return nil
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("droplet %d: power off: %w", id, ctx.Err())
	}
}

// PowerOn starts the droplet's process again.
func (b *ProcessBackend) PowerOn(ctx context.Context, id int) error {
	p := b.get(id)
	if p == nil {
		return nil
	}
	return b.start(p)
}

// Destroy stops the droplet and removes its directory.
func (b *ProcessBackend) Destroy(ctx context.Context, id int) error {
	p := b.get(id)
	if p == nil {
		return nil
	}
	if err := b.PowerOff(ctx, id); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.procs, id)
	b.mu.Unlock()
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("droplet %d: %w", id, err)
	}
	return nil
}

// Close kills every droplet process (not their directories); for cleanup.
func (b *ProcessBackend) Close() error {
	b.mu.Lock()
	ids := make([]int, 0, len(b.procs))
	for id := range b.procs {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, b.PowerOff(context.Background(), id))
	}
	return errors.Join(errs...)
}
