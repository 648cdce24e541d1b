package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hactl/hactl/providers"
)

// FaultKind names a fault.
type FaultKind string

const (
	FaultDestroy      FaultKind = "destroy"       // Provider.Destroy: machine and disk
	FaultPowerOff     FaultKind = "power-off"     // Fencer.Fence: off, disk kept
	FaultKillAgent    FaultKind = "kill-agent"    // SIGKILL to the node's agent
	FaultKillService  FaultKind = "kill-service"  // SIGKILL to the node's supervised service(s)
	FaultPauseAgent   FaultKind = "pause-agent"   // SIGSTOP the agent, SIGCONT after PauseFor
	FaultPauseService FaultKind = "pause-service" // SIGSTOP the service(s), SIGCONT after PauseFor
	FaultPartition    FaultKind = "partition"     // cut the node off the network
	FaultPacketLoss   FaultKind = "packet-loss"   // drop a share of the node's packets
)

// FaultKinds lists every fault kind.
var FaultKinds = []FaultKind{FaultDestroy, FaultPowerOff, FaultKillAgent, FaultKillService,
	FaultPauseAgent, FaultPauseService, FaultPartition, FaultPacketLoss}

// faultSupport lists, per fault, the provider types that support it ("*" =
// every provider). Power-off also needs the provider to be a Fencer.
var faultSupport = map[FaultKind][]string{
	FaultDestroy:      {"*"},
	FaultPowerOff:     {"*"},
	FaultKillAgent:    {"local"},
	FaultKillService:  {"local"},
	FaultPauseAgent:   {"local"},
	FaultPauseService: {"local"},
	FaultPartition:    {"lab"},
	FaultPacketLoss:   {"lab"},
}

// SupportedOn lists the provider types k supports.
func (k FaultKind) SupportedOn() []string { return faultSupport[k] }

// ParseFaultKind validates a fault name.
func ParseFaultKind(s string) (FaultKind, error) {
	k := FaultKind(s)
	if _, ok := faultSupport[k]; !ok {
		names := make([]string, len(FaultKinds))
		for i, f := range FaultKinds {
			names[i] = string(f)
		}
		return "", fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(names, ", "))
	}
	return k, nil
}

// Supports says whether fault k can be injected on provider p of type typ;
// the error names the fault and the provider.
func Supports(k FaultKind, typ string, p providers.Provider) error {
	types, ok := faultSupport[k]
	if !ok {
		return fmt.Errorf("unknown fault %q", k)
	}
	if !slices.Contains(types, "*") && !slices.Contains(types, typ) {
		why := ""
		if k == FaultPartition || k == FaultPacketLoss {
			why = " (nodes in network namespaces: provider \"lab\")"
		}
		return fmt.Errorf("fault %s is not supported by provider type %s: it needs %s%s", k, typ, strings.Join(types, " or "), why)
	}
	if k == FaultPowerOff {
		if _, ok := p.(providers.Fencer); !ok {
			return fmt.Errorf("fault %s is not supported by provider type %s: it cannot power machines off (no Fencer)", k, typ)
		}
	}
	if isProcessFault(k) {
		if _, ok := p.(nodeDirer); !ok {
			return fmt.Errorf("fault %s is not supported by provider type %s: it has no node directories", k, typ)
		}
	}
	return nil
}

func isProcessFault(k FaultKind) bool {
	return k == FaultKillAgent || k == FaultKillService || k == FaultPauseAgent || k == FaultPauseService
}

// nodeDirer is the local provider's NodeDir.
type nodeDirer interface {
	NodeDir(id providers.MachineID) (string, error)
}

// Injector injects faults through the providers.
type Injector struct {
	// Providers by their configuration name (Node.Provider).
	Providers map[string]providers.Provider
	// Service restricts service faults to one supervised service ("" = every
	// service the node's supervisor recorded).
	Service string
	// ConfirmTimeout bounds the wait for a fault to take effect (0 = 30 s).
	ConfirmTimeout time.Duration
}

// Injected is a fault in effect. Undo ends a pause (SIGCONT); it is nil for
// faults that the cluster must repair itself.
type Injected struct {
	Kind   FaultKind
	Node   Node
	PIDs   []int // processes signalled, for process faults
	Detail string
	Undo   func() error
	// Back reports whether the processes a process fault hit run again:
	// a new agent or service process for kills, no process stopped for
	// pauses. Nil for destroy and power-off.
	Back func() bool
}

// Inject applies fault k to node n and returns once the fault is confirmed
// in effect: the provider no longer lists the machine (destroy), the
// provider confirmed power-off (Fence), the processes are gone (kill) or
// stopped, state T in /proc (pause).
func (in *Injector) Inject(ctx context.Context, k FaultKind, n Node) (*Injected, error) {
	p, ok := in.Providers[n.Provider]
	if !ok {
		return nil, fmt.Errorf("fault %s on %s: provider %q is not configured", k, n.Name, n.Provider)
	}
	if err := Supports(k, n.ProviderType, p); err != nil {
		return nil, err
	}
	timeout := in.ConfirmTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inj := &Injected{Kind: k, Node: n}
	switch k {
	case FaultDestroy:
		if err := p.Destroy(ctx, n.Machine); err != nil {
			return nil, fmt.Errorf("destroy %s (%s): %w", n.Name, n.Machine, err)
		}
		ms, err := p.List(ctx, n.Cluster())
		if err != nil {
			return nil, fmt.Errorf("destroy %s: confirm through list: %w", n.Name, err)
		}
		if slices.ContainsFunc(ms, func(m providers.Machine) bool { return m.ID == n.Machine }) {
			return nil, fmt.Errorf("destroy %s: provider still lists %s after destroy", n.Name, n.Machine)
		}
		inj.Detail = "destroyed " + string(n.Machine)
		return inj, nil
	case FaultPowerOff:
		if err := p.(providers.Fencer).Fence(ctx, n.Machine); err != nil {
			return nil, fmt.Errorf("power off %s (%s): %w", n.Name, n.Machine, err)
		}
		inj.Detail = "powered off " + string(n.Machine)
		return inj, nil
	case FaultPartition, FaultPacketLoss:
		return in.injectNet(ctx, k, n, p, inj)
	}
	dir, err := p.(nodeDirer).NodeDir(n.Machine)
	if err != nil {
		return nil, fmt.Errorf("fault %s on %s: %w", k, n.Name, err)
	}
	var pids []int
	var what string
	var killedNames []string
	if k == FaultKillAgent || k == FaultPauseAgent {
		pid, err := AgentPID(dir)
		if err != nil {
			return nil, fmt.Errorf("fault %s on %s: %w", k, n.Name, err)
		}
		pids, what = []int{pid}, "agent"
	} else {
		svcs, err := ServicePIDs(dir)
		if err != nil {
			return nil, fmt.Errorf("fault %s on %s: %w", k, n.Name, err)
		}
		var names []string
		for name, pid := range svcs {
			if in.Service == "" || name == in.Service {
				pids, names = append(pids, pid), append(names, name)
			}
		}
		if len(pids) == 0 {
			if in.Service != "" {
				return nil, fmt.Errorf("fault %s on %s: service %q is not running there", k, n.Name, in.Service)
			}
			return nil, fmt.Errorf("fault %s on %s: no supervised service is running there", k, n.Name)
		}
		slices.Sort(names)
		slices.Sort(pids)
		killedNames = names
		what = "service " + strings.Join(names, ",")
	}
	inj.PIDs = pids
	switch k {
	case FaultKillAgent, FaultKillService:
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return nil, fmt.Errorf("kill %s pid %d on %s: %w", what, pid, n.Name, err)
			}
		}
		if err := waitFor(ctx, func() bool { return !slices.ContainsFunc(pids, processAlive) }); err != nil {
			return nil, fmt.Errorf("kill %s on %s: still running after SIGKILL: %w", what, n.Name, err)
		}
		inj.Detail = fmt.Sprintf("killed %s (pid %v)", what, pids)
		inj.Back = func() bool {
			if k == FaultKillAgent {
				pid, err := AgentPID(dir)
				return err == nil && pid != pids[0]
			}
			now, err := ServicePIDs(dir)
			if err != nil {
				return false
			}
			for name, pid := range now {
				if (in.Service == "" || name == in.Service) && slices.Contains(pids, pid) {
					return false
				}
			}
			for _, name := range killedNames {
				if _, ok := now[name]; !ok {
					return false
				}
			}
			return true
		}
	case FaultPauseAgent, FaultPauseService:
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				return nil, fmt.Errorf("pause %s pid %d on %s: %w", what, pid, n.Name, err)
			}
		}
		if err := waitFor(ctx, func() bool { return !slices.ContainsFunc(pids, func(p int) bool { return !processStopped(p) }) }); err != nil {
			return nil, fmt.Errorf("pause %s on %s: not stopped after SIGSTOP: %w", what, n.Name, err)
		}
		inj.Detail = fmt.Sprintf("paused %s (pid %v)", what, pids)
		inj.Back = func() bool { return !slices.ContainsFunc(pids, processStopped) }
		inj.Undo = func() error {
			var errs []error
			for _, pid := range pids {
				if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
					errs = append(errs, fmt.Errorf("resume %s pid %d on %s: %w", what, pid, n.Name, err))
				}
			}
			return errors.Join(errs...)
		}
	}
	return inj, nil
}

func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// AgentPID returns the pid of a local node's agent from <dir>/agent.pid,
// checked in /proc to be a live process of that node (its environment or
// argv names the node directory), so a reused pid is never signalled.
func AgentPID(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "agent.pid"))
	if err != nil {
		return 0, fmt.Errorf("read agent pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: bad pid %q", filepath.Join(dir, "agent.pid"), strings.TrimSpace(string(b)))
	}
	if !processAlive(pid) || !belongsTo(pid, dir) {
		return 0, fmt.Errorf("agent pid %d from %s is not running", pid, filepath.Join(dir, "agent.pid"))
	}
	return pid, nil
}

// ServicePIDs returns the live supervised services of a local node by name,
// from the supervisor's records <dir>/root/var/lib/hactl/supervise/<name>.json
// (see converge/supervise). A record whose pid is dead or runs another
// command line is skipped.
func ServicePIDs(dir string) (map[string]int, error) {
	sdir := filepath.Join(dir, "root", "var", "lib", "hactl", "supervise")
	ents, err := os.ReadDir(sdir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read service records: %w", err)
	}
	out := map[string]int{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sdir, e.Name()))
		if err != nil {
			continue
		}
		var rec struct {
			PID     int      `json:"pid"`
			Name    string   `json:"name"`
			Command []string `json:"command"`
		}
		if json.Unmarshal(b, &rec) != nil || rec.PID <= 0 || !processAlive(rec.PID) {
			continue
		}
		if argv := procArgv(rec.PID); len(rec.Command) > 0 && !slices.Equal(argv, rec.Command) {
			continue
		}
		out[cmpOr(rec.Name, strings.TrimSuffix(e.Name(), ".json"))] = rec.PID
	}
	return out, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// procState returns the state letter of pid from /proc ("" when gone).
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	st := procState(pid)
	return st != "" && st != "Z" && st != "X"
}

// processStopped reports whether pid is stopped by a signal (state T).
func processStopped(pid int) bool { return procState(pid) == "T" }

func procArgv(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// belongsTo reports whether pid carries HACTL_NODE_DIR=dir in its
// environment or --node-dir dir in its argv.
func belongsTo(pid int, dir string) bool {
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); err == nil {
		if slices.Contains(strings.Split(string(b), "\x00"), "HACTL_NODE_DIR="+dir) {
			return true
		}
	}
	argv := procArgv(pid)
	for i, a := range argv {
		if (a == "--node-dir" || a == "-node-dir") && i+1 < len(argv) && argv[i+1] == dir {
			return true
		}
		if a == "--node-dir="+dir {
			return true
		}
	}
	return false
}
