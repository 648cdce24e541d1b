package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// TestNode_WaitReconciled_LeaderCarriesOutNewSpec: a new configuration that
// adds a slot is carried out once, by the leader's reconciler, and
// WaitReconciled on the leader reports the rebuild and returns when nothing
// is left; on a follower it refuses with ErrNotLeader.
func TestNode_WaitReconciled_LeaderCarriesOutNewSpec(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v1 := &lang.Config{Cluster: &lang.Cluster{Name: "test", Provider: "test"}}
	v2 := &lang.Config{Cluster: &lang.Cluster{Name: "test", Provider: "test"}}
	var cur atomic.Pointer[lang.Config]
	cur.Store(v1)
	var mu sync.Mutex
	var executed []string
	planner := func(in plan.Input) []plan.Step {
		if in.Config != v2 {
			return nil
		}
		for _, o := range in.Observed {
			if o.Machine.Name == "web-9" {
				return nil
			}
		}
		return []plan.Step{{Action: plan.ActionCreate, Provider: "test", Role: "web", Slot: 9, Generation: 1, Name: "web-9", Reason: "scale up"}}
	}
	nodes := e.startCluster("web", 3, func(c *Config) {
		c.Planner = planner
		c.Spec = cur.Load
		c.Providers = map[string]providers.Provider{"test": e.prov}
		c.Execute = func(ctx context.Context, s plan.Step) error {
			mu.Lock()
			executed = append(executed, string(s.Action)+" "+s.Name)
			mu.Unlock()
			e.prov.put(providers.Machine{ID: "web-9-g1", Cluster: "test", Role: "web", Slot: 9, Generation: 1, Name: "web-9", State: providers.PowerOn})
			return nil
		}
	})
	l := waitLeader(t, nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != l {
			follower = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := follower.WaitReconciled(ctx, func(*lang.Config) bool { return true }, nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("WaitReconciled on follower %s: %v, want ErrNotLeader", follower.Name(), err)
	}
	cur.Store(v2)
	var seen []string
	err := l.WaitReconciled(ctx, func(c *lang.Config) bool { return c == v2 }, func(rb Rebuild) {
		seen = append(seen, rb.Name+" "+rb.State)
	})
	if err != nil {
		t.Fatalf("WaitReconciled on leader %s: %v", l.Name(), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(executed) != 1 || executed[0] != "create web-9" {
		t.Errorf("executed %v, want exactly one create of web-9", executed)
	}
	if len(seen) == 0 || seen[len(seen)-1] != "web-9 "+RebuildWaiting {
		t.Errorf("progress %v, want web-9 ending in %s", seen, RebuildWaiting)
	}
}
