package chaos

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hactl/hactl/providers"
)

func TestInjector_Inject_Destroy(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	dir, err := e.p.NodeDir(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := e.injector().Inject(context.Background(), FaultDestroy, e.node(t, "web-1"))
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if inj.Undo != nil {
		t.Error("destroy has an undo")
	}
	ms, err := e.p.List(context.Background(), e.cluster)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 0 {
		t.Errorf("List after destroy = %+v, want none", ms)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("node dir %s still there (err %v): the disk must go too", dir, err)
	}
	if err := getHealth(m.Address); err == nil {
		t.Error("destroyed node still answers /healthz")
	}
}

func TestInjector_Inject_PowerOff(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	if _, err := e.injector().Inject(context.Background(), FaultPowerOff, e.node(t, "web-1")); err != nil {
		t.Fatalf("Inject: %v", err)
	}
	n := e.node(t, "web-1")
	if n.State != providers.PowerOff || n.Health != HealthOff {
		t.Errorf("after power-off: state %s health %s, want off/off", n.State, n.Health)
	}
	if dir, err := e.p.NodeDir(m.ID); err != nil {
		t.Errorf("power-off lost the node dir: %v", err)
	} else if _, err := os.Stat(dir); err != nil {
		t.Errorf("power-off lost the disk: %v", err)
	}
	if err := getHealth(m.Address); err == nil {
		t.Error("powered-off node still answers /healthz")
	}
}

func TestInjector_Inject_KillAgent(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	dir, _ := e.p.NodeDir(m.ID)
	pid, err := AgentPID(dir)
	if err != nil {
		t.Fatal(err)
	}
	inj, err := e.injector().Inject(context.Background(), FaultKillAgent, e.node(t, "web-1"))
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if !slices.Equal(inj.PIDs, []int{pid}) {
		t.Errorf("PIDs = %v, want [%d]", inj.PIDs, pid)
	}
	if processAlive(pid) {
		t.Errorf("agent pid %d alive after kill", pid)
	}
	if err := getHealth(m.Address); err == nil {
		t.Error("killed agent still answers /healthz")
	}
	if inj.Back() {
		t.Error("Back() true before the agent was restarted")
	}
	// PowerOn alone would adopt the orphaned service (it carries the node's
	// HACTL_NODE_DIR) instead of starting an agent: fence first, as the
	// reconciler does with a node that stopped answering.
	if err := e.p.Fence(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.p.PowerOn(context.Background(), m.ID); err != nil {
		t.Fatal(err)
	}
	e.waitHealthy(t, "web-1")
	eventually(t, "Back after restart", func() error {
		if !inj.Back() {
			return os.ErrNotExist
		}
		return nil
	})
}

func TestInjector_Inject_KillService(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	dir, _ := e.p.NodeDir(m.ID)
	var before map[string]int
	eventually(t, "service recorded", func() error {
		var err error
		if before, err = ServicePIDs(dir); err == nil && before["svc"] == 0 {
			err = os.ErrNotExist
		}
		return err
	})
	inj, err := e.injector().Inject(context.Background(), FaultKillService, e.node(t, "web-1"))
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if !slices.Equal(inj.PIDs, []int{before["svc"]}) || processAlive(before["svc"]) {
		t.Errorf("PIDs %v, service pid %d alive %v", inj.PIDs, before["svc"], processAlive(before["svc"]))
	}
	// The node's supervisor restarts it: a new pid, and Back says so.
	eventually(t, "service restarted", func() error {
		if !inj.Back() {
			return os.ErrNotExist
		}
		return nil
	})
	if err := getHealth(m.Address); err != nil {
		t.Errorf("agent hurt by a service kill: %v", err)
	}
	e2 := &Injector{Providers: e.injector().Providers, Service: "nope"}
	if _, err := e2.Inject(context.Background(), FaultKillService, e.node(t, "web-1")); err == nil || !strings.Contains(err.Error(), `service "nope" is not running`) {
		t.Errorf("unknown service: err = %v", err)
	}
}

func TestInjector_Inject_PauseAgentAndResume(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	inj, err := e.injector().Inject(context.Background(), FaultPauseAgent, e.node(t, "web-1"))
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	if !processStopped(inj.PIDs[0]) {
		t.Fatalf("agent pid %d not stopped", inj.PIDs[0])
	}
	if err := getHealth(m.Address); err == nil {
		t.Error("paused agent answered /healthz")
	}
	if inj.Back() {
		t.Error("Back() true while paused")
	}
	if err := inj.Undo(); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	e.waitHealthy(t, "web-1")
	if !inj.Back() {
		t.Error("Back() false after SIGCONT")
	}
}

func TestInjector_Inject_PauseService(t *testing.T) {
	e := newTestEnv(t)
	m := e.create(t, "web", 1, 1)
	e.waitHealthy(t, "web-1")
	dir, _ := e.p.NodeDir(m.ID)
	eventually(t, "service recorded", func() error {
		s, err := ServicePIDs(dir)
		if err == nil && s["svc"] == 0 {
			err = os.ErrNotExist
		}
		return err
	})
	inj, err := e.injector().Inject(context.Background(), FaultPauseService, e.node(t, "web-1"))
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	t.Cleanup(func() { _ = inj.Undo() })
	if !processStopped(inj.PIDs[0]) {
		t.Fatalf("service pid %d not stopped", inj.PIDs[0])
	}
	if err := inj.Undo(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service resumed", func() error {
		if processStopped(inj.PIDs[0]) {
			return os.ErrExist
		}
		return nil
	})
}

func TestSupports_RefusesNamingFaultAndProvider(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		kind FaultKind
		typ  string
		want string // "" = supported
	}{
		{FaultDestroy, "local", ""},
		{FaultPowerOff, "local", ""},
		{FaultKillAgent, "local", ""},
		{FaultPauseService, "local", ""},
		{FaultPartition, "local", "fault partition is not supported by provider type local: it needs lab"},
		{FaultPacketLoss, "local", "fault packet-loss is not supported by provider type local"},
		{FaultKillAgent, "digitalocean", "fault kill-agent is not supported by provider type digitalocean: it needs local"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+"_"+tt.typ, func(t *testing.T) {
			err := Supports(tt.kind, tt.typ, e.p)
			if tt.want == "" {
				if err != nil {
					t.Errorf("Supports = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Supports = %v, want %q", err, tt.want)
			}
		})
	}
	// Inject refuses before touching anything.
	n := Node{Name: "web-1", Provider: "local", ProviderType: "local", Machine: "x/web-1.g1"}
	if _, err := e.injector().Inject(context.Background(), FaultPartition, n); err == nil || !strings.Contains(err.Error(), "partition") {
		t.Errorf("Inject(partition) = %v", err)
	}
	if _, err := ParseFaultKind("meteor"); err == nil || !strings.Contains(err.Error(), "destroy") {
		t.Errorf("ParseFaultKind(meteor) = %v", err)
	}
}
