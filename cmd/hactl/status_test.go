package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// fakeAgentAPI serves /v1/cluster with cs on a loopback address of its own,
// on the agent API port, and returns that address.
func fakeAgentAPI(t *testing.T, cs agent.ClusterStatus) string {
	t.Helper()
	for range 20 {
		addr := fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(50), rand.IntN(256), 1+rand.IntN(250))
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(agent.DefaultAPIPort)))
		if err != nil {
			continue
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/cluster" {
				http.NotFound(w, r)
				return
			}
			_ = json.NewEncoder(w).Encode(cs)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return addr
	}
	t.Fatal("no free loopback address for a fake agent API")
	return ""
}

// TestControlStatus_PrefersANodeThatKnowsTheLeader: a node rebuilt a moment
// ago answers first but knows no leader (and has no log); the cluster's view
// is that of the next node, which names the leader with quorum. Without any
// such node, the first answer is the view.
func TestControlStatus_PrefersANodeThatKnowsTheLeader(t *testing.T) {
	fresh := fakeAgentAPI(t, agent.ClusterStatus{Node: "lb-1"})
	knows := fakeAgentAPI(t, agent.ClusterStatus{Node: "lb-2", Leader: "web-1@1", Quorum: true})
	lost := fakeAgentAPI(t, agent.ClusterStatus{Node: "mail-1", Leader: "web-1@1"})
	obs := func(addrs ...string) []plan.Observed {
		var out []plan.Observed
		for i, a := range addrs {
			out = append(out, plan.Observed{Machine: providers.Machine{Name: fmt.Sprint("n", i), Address: a}, Health: plan.HealthPassing})
		}
		return out
	}
	from, cs := controlStatus(context.Background(), obs(fresh, lost, knows))
	if cs == nil || from != "n2" || cs.Leader != "web-1@1" || !cs.Quorum {
		t.Fatalf("controlStatus = %q, %+v; want n2's view naming web-1@1 with quorum", from, cs)
	}
	from, cs = controlStatus(context.Background(), obs(fresh, lost))
	if cs == nil || from != "n0" || cs.Node != "lb-1" {
		t.Fatalf("controlStatus without a node that knows the leader = %q, %+v; want the first answer (n0)", from, cs)
	}
}
