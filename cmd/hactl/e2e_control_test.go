package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond every 250 ms until it returns true or the deadline
// passes; it fails the test with the last reason cond gave.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	why := ""
	for {
		ok, w := cond()
		if ok {
			return
		}
		why = w
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %s", what, timeout, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// killNode kills every process of a local node with SIGKILL: the agent's
// process group, and the process group of every process whose environment
// names the node directory (the services the agent supervises run in
// process groups of their own).
func (e *e2e) killNode(machine string) {
	e.t.Helper()
	_, id, _ := strings.Cut(machine, "/")
	dir := filepath.Join(e.state, "blog", "nodes", id)
	b, err := os.ReadFile(filepath.Join(dir, "agent.pid"))
	if err != nil {
		e.t.Fatalf("pid of %s: %v", machine, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		e.t.Fatalf("pid of %s: %q", machine, b)
	}
	groups := map[int]bool{pid: true}
	for _, p := range procsUnder(dir) {
		if g, err := syscall.Getpgid(p); err == nil && g > 1 {
			groups[g] = true
		}
	}
	for g := range groups {
		if err := syscall.Kill(-g, syscall.SIGKILL); err != nil && g == pid {
			e.t.Fatalf("kill -9 -%d (%s): %v", g, machine, err)
		}
	}
	waitFor(e.t, 30*time.Second, "every process of "+machine+" gone", func() (bool, string) {
		if left := procsUnder(dir); len(left) > 0 {
			return false, fmt.Sprintf("still running: %v", left)
		}
		return true, ""
	})
	e.t.Logf("killed %d process groups of %s", len(groups), machine)
}

// logEvents logs the cluster's history (for the reader of a failed test).
func (e *e2e) logEvents() {
	e.t.Helper()
	out, _ := e.run("events", e.config)
	e.t.Logf("hactl events:\n%s", out)
}

// controlReady waits until a node answers /v1/cluster with quorum and the
// lb VIP has a holder, and returns the VIP address and the status.
func (e *e2e) controlReady() (string, statusReport) {
	e.t.Helper()
	var vip string
	var rep statusReport
	waitFor(e.t, 60*time.Second, "control plane with quorum and a VIP holder", func() (bool, string) {
		rep = e.status()
		c := rep.Control
		if c == nil || !c.Quorum || c.Leader == "" {
			return false, "no node reports quorum and a leader"
		}
		for v, h := range c.VIPs {
			vip = v
			if h != "" {
				return true, ""
			}
		}
		return false, "VIP unassigned"
	})
	return vip, rep
}

// getBlog fetches the blog's front page through addr (host:port).
func getBlog(addr string) (bool, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "highly available blog") {
		return false, "status " + resp.Status + ": " + strings.TrimSpace(string(b))
	}
	return true, ""
}

func nodeOf(rep statusReport, name string) (statusNode, bool) {
	for _, n := range rep.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return statusNode{}, false
}

// TestE2E_Blog_KillNode_Rebuilt: every process of web-1 is killed with
// SIGKILL; the cluster fences it (confirmed through the provider), rebuilds
// the slot as generation 2 from the same user-data, the new node converges
// and passes its health check, and the blog keeps answering through the
// lb's VIP.
func TestE2E_Blog_KillNode_Rebuilt(t *testing.T) {
	e := newE2E(t, "blog")
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, rep := e.controlReady()
	addr := vip + ":8000"
	waitFor(t, 30*time.Second, "blog through the VIP "+addr, func() (bool, string) { return getBlog(addr) })

	// Mail is accepted (250) only once the peer mail node stored it too:
	// that needs the delivered cluster token and the peers from membership.
	mail1, _ := nodeOf(rep, "mail-1")
	waitFor(t, 30*time.Second, "SMTP 250 from mail-1", func() (bool, string) {
		err := smtp.SendMail(mail1.Address+":2525", nil, "chaos@example.com", []string{"editor@blog.local"},
			[]byte("Subject: e2e\r\n\r\nstored twice\r\n"))
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})

	web1, ok := nodeOf(rep, "web-1")
	if !ok || web1.Generation != 1 {
		t.Fatalf("web-1 before the kill: %+v", web1)
	}
	e.killNode(web1.Machine)
	killed := time.Now()

	waitFor(t, 90*time.Second, "web-1 rebuilt as generation 2, on and passing", func() (bool, string) {
		rep = e.status()
		n, ok := nodeOf(rep, "web-1")
		if !ok {
			return false, "web-1 has no machine"
		}
		if n.Generation != 2 || n.State != "on" || n.Health != "passing" {
			return false, "web-1 is generation " + strconv.Itoa(n.Generation) + ", " + n.State + ", " + n.Health
		}
		return true, ""
	})
	t.Logf("web-1 generation 2 on and passing %s after the kill", time.Since(killed).Round(time.Millisecond))
	wantNodes(t, rep, blogCounts)
	fenced := false
	if rep.Control != nil {
		for _, f := range rep.Control.Fences {
			if f.Name == "web-1" && f.Generation == 1 {
				fenced = true
			}
		}
	}
	if !fenced {
		t.Errorf("no confirmed fence of web-1 generation 1 in the cluster log: %+v", rep.Control)
	}
	var evs struct {
		Events []struct{ Kind, Node, Message string }
	}
	if err := json.Unmarshal([]byte(e.mustRun("events", "-json", e.config)), &evs); err != nil {
		t.Fatalf("events -json: %v", err)
	}
	kinds := map[string]bool{}
	for _, ev := range evs.Events {
		if ev.Node == "web-1" {
			kinds[ev.Kind] = true
		}
	}
	if !kinds["fence"] || !kinds["rebuild"] {
		t.Errorf("hactl events lacks web-1's fence and rebuild: %+v", evs.Events)
	}
	waitFor(t, 30*time.Second, "blog through the VIP after the rebuild", func() (bool, string) { return getBlog(addr) })
	// The lb's backend list follows membership: web-1's new generation is in it.
	waitFor(t, 30*time.Second, "the blog served by web-1 generation 2", func() (bool, string) {
		n, _ := nodeOf(e.status(), "web-1")
		return getBlog(n.Address + ":8080")
	})
}

// TestE2E_Blog_VIPFailover: the VIP's holder is killed with SIGKILL; the
// leader fences it and gives the VIP to a live lb, whose agent binds it, and
// the blog answers through the VIP again.
func TestE2E_Blog_VIPFailover(t *testing.T) {
	e := newE2E(t, "blog")
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, rep := e.controlReady()
	addr := vip + ":8000"
	waitFor(t, 30*time.Second, "blog through the VIP "+addr, func() (bool, string) { return getBlog(addr) })
	holder := rep.Control.VIPs[vip]
	h, ok := nodeOf(rep, holder)
	if !ok {
		t.Fatalf("VIP holder %q is not a machine of the cluster", holder)
	}
	e.killNode(h.Machine)
	killed := time.Now()
	waitFor(t, 60*time.Second, "VIP held by a live lb and answering", func() (bool, string) {
		rep := e.status()
		c := rep.Control
		if c == nil {
			return false, "no control plane status"
		}
		nh := c.VIPs[vip]
		if nh == "" {
			return false, "VIP unassigned"
		}
		for _, m := range c.Members {
			if m.Name == nh && m.State == "alive" && !(m.Name == holder && m.Generation == h.Generation) {
				return getBlog(addr)
			}
		}
		return false, "VIP still recorded for " + nh
	})
	t.Logf("the VIP answered again %s after its holder was killed", time.Since(killed).Round(time.Millisecond))
}

// TestE2E_Blog_FrozenVIPHolder_FencedBeforeMove: the VIP holder's agent is
// frozen (SIGSTOP): its machine is still on and its socket still bound, so
// only gossip can tell. The leader waits for the failure timeout, fences it
// through the provider (confirmed), and only then gives the VIP to a live
// lb; the history shows the fence before the move.
func TestE2E_Blog_FrozenVIPHolder_FencedBeforeMove(t *testing.T) {
	e := newE2E(t, "blog")
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, rep := e.controlReady()
	addr := vip + ":8000"
	waitFor(t, 30*time.Second, "blog through the VIP "+addr, func() (bool, string) { return getBlog(addr) })
	holder := rep.Control.VIPs[vip]
	h, ok := nodeOf(rep, holder)
	if !ok {
		t.Fatalf("VIP holder %q is not a machine of the cluster", holder)
	}
	_, id, _ := strings.Cut(h.Machine, "/")
	b, err := os.ReadFile(filepath.Join(e.state, "blog", "nodes", id, "agent.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid of %s: %q", h.Machine, b)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })

	var moved *statusReport
	waitFor(t, 60*time.Second, "VIP moved off the frozen holder and answering", func() (bool, string) {
		rep := e.status()
		c := rep.Control
		if c == nil {
			return false, "no control plane status"
		}
		nh := c.VIPs[vip]
		for _, m := range c.Members {
			if m.Name == nh && m.State == "alive" && !(m.Name == holder && m.Generation == h.Generation) {
				if ok, why := getBlog(addr); !ok {
					return false, why
				}
				moved = &rep
				return true, ""
			}
		}
		return false, "VIP recorded for " + nh
	})
	t.Logf("the VIP answered again %s after its holder froze", time.Since(frozen).Round(time.Millisecond))
	fenced := false
	for _, f := range moved.Control.Fences {
		if f.Name == holder && f.Generation == h.Generation {
			fenced = true
		}
	}
	if !fenced {
		t.Fatalf("the VIP moved without a confirmed fence of %s generation %d: %+v", holder, h.Generation, moved.Control.Fences)
	}
	// The fence really stopped the frozen node: its processes are gone.
	waitFor(t, 30*time.Second, "the frozen holder's processes gone", func() (bool, string) {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true, ""
		}
		// "pid (comm) S ...": a zombie (Z) is dead, waiting to be reaped.
		if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return true, ""
		}
		return false, "pid " + strconv.Itoa(pid) + " still runs"
	})
}
