package chaos

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRoles_Update_HealthyFirstThenRunning(t *testing.T) {
	rs := &Roles{}
	rs.Update(Snapshot{Nodes: []Node{
		{Name: "mail-1", Role: "mail", Generation: 1, Address: "127.0.0.11", State: "on", Health: HealthFailing},
		{Name: "mail-2", Role: "mail", Generation: 1, Address: "127.0.0.12", State: "on", Health: HealthPassing},
		{Name: "mail-3", Role: "mail", Generation: 1, Address: "127.0.0.13", State: "off", Health: HealthOff},
		{Name: "web-1", Role: "web", Generation: 1, Address: "127.0.0.21", State: "on", Health: HealthPassing},
		{Name: "web-1", Role: "web", Generation: 2, Address: "127.0.0.22", State: "starting", Health: HealthUnreachable},
	}})
	if diff := cmp.Diff([]string{"127.0.0.12", "127.0.0.11"}, rs.Addrs("mail")); diff != "" {
		t.Errorf("mail (-want +got):\n%s", diff)
	}
	// Only the newest generation of a slot counts.
	if diff := cmp.Diff([]string{"127.0.0.22"}, rs.Addrs("web")); diff != "" {
		t.Errorf("web (-want +got):\n%s", diff)
	}
	if got, err := expand(rs, "http://{web}:8080/"); err != nil || got[0] != "http://127.0.0.22:8080/" {
		t.Errorf("expand = %v, %v", got, err)
	}
	if _, err := expand(rs, "{repo}:8090"); err == nil || !strings.Contains(err.Error(), "no running node") {
		t.Errorf("expand of a role without nodes: err = %v", err)
	}
	if got, err := expand(nil, "127.0.0.1:25"); err != nil || len(got) != 1 {
		t.Errorf("expand of a plain target = %v, %v", got, err)
	}
}

func TestParseProbe_TwoRoles_Refused(t *testing.T) {
	if _, err := ParseProbe("http=http://{web}:1/{lb}"); err == nil || !strings.Contains(err.Error(), "two roles") {
		t.Errorf("err = %v, want two roles", err)
	}
	if _, err := ParseMarker("git=http://{repo}:8090/x.git,/nonexistent/token"); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("missing token file: err = %v", err)
	}
}

// A mail client moves to the next MX when one is down; when the only one
// up says 451 the delivery is deferred (retried later), not failed.
func TestSMTPProbe_Check_FailsOverAndDefers(t *testing.T) {
	up := newMailServer(t)
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no second loopback address: %v", err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there any more: connection refused
	upHost, upPort, _ := net.SplitHostPort(up.addr)
	downHost, _, _ := net.SplitHostPort(down)
	rs := &Roles{}
	rs.Update(Snapshot{Nodes: []Node{
		{Name: "mail-1", Role: "mail", Generation: 1, Address: downHost, State: "on", Health: HealthPassing},
		{Name: "mail-2", Role: "mail", Generation: 1, Address: upHost, State: "on", Health: HealthPassing},
	}})
	p, err := ParseProbe("smtp={mail}:" + upPort + ",editor@blog.test")
	if err != nil {
		t.Fatal(err)
	}
	p.(RoleAware).SetRoles(rs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Check(ctx); err != nil {
		t.Fatalf("with mail-1 down and mail-2 up: %v", err)
	}
	if up.count() != 1 {
		t.Errorf("mail-2 holds %d messages, want 1", up.count())
	}
	up.mu.Lock()
	up.deferData = true
	up.mu.Unlock()
	err = p.Check(ctx)
	if err == nil || !errors.Is(err, ErrDeferred) || !strings.Contains(err.Error(), "451") {
		t.Errorf("mail-1 down, mail-2 answering 451: err = %v, want deferred", err)
	}
	up.mu.Lock()
	up.deferData, up.refuseRcpt = false, true
	up.mu.Unlock()
	if err := p.Check(ctx); err == nil || errors.Is(err, ErrDeferred) {
		t.Errorf("550 is permanent: err = %v, want a failure that is not deferred", err)
	}

	s := &Sampler{Probes: []Probe{p}, Interval: 10 * time.Millisecond}
	up.mu.Lock()
	up.refuseRcpt, up.deferData = false, true
	up.mu.Unlock()
	s.Start(context.Background())
	eventually(t, "deferred samples", func() error {
		if total, _, deferred := s.Between(time.Time{}, time.Now().Add(time.Hour)); total < 2 || deferred < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	s.Stop()
	total, failed, deferred := s.Between(time.Time{}, time.Now().Add(time.Hour))
	if failed != 0 || deferred != total {
		t.Errorf("%d samples, %d failed, %d deferred; want every one deferred", total, failed, deferred)
	}
}

func TestControlView_Noticed(t *testing.T) {
	fault := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := fault.Add(2 * time.Second)
	cases := []struct {
		name string
		c    *ControlView
		ok   bool
		when time.Time
	}{
		{"no view", nil, false, time.Time{}},
		{"still alive, nothing planned", &ControlView{Members: []ControlMember{{Name: "web-1", Generation: 1, State: "alive"}}}, false, time.Time{}},
		{"rebuild to a newer generation, at its start", &ControlView{Rebuilds: []ControlRebuild{{Name: "web-1", Generation: 2, State: "planned", Started: fault.Add(300 * time.Millisecond)}}},
			true, fault.Add(300 * time.Millisecond)},
		{"rebuild started before the fault counts at the observation", &ControlView{Rebuilds: []ControlRebuild{{Name: "web-1", Generation: 2, Started: fault.Add(-time.Second)}}}, true, at},
		{"rebuild of the same generation is not this loss", &ControlView{Rebuilds: []ControlRebuild{{Name: "web-1", Generation: 1, Started: fault}}}, false, time.Time{}},
		{"member dead", &ControlView{Members: []ControlMember{{Name: "web-1", Generation: 1, State: "dead"}}}, true, at},
		{"newer generation already a member", &ControlView{Members: []ControlMember{{Name: "web-1", Generation: 2, State: "alive"}}}, true, at},
		{"another slot", &ControlView{Members: []ControlMember{{Name: "web-2", Generation: 1, State: "dead"}}}, false, time.Time{}},
	}
	for _, c := range cases {
		when, ok := c.c.noticed("web-1", 1, fault, at)
		if ok != c.ok || !when.Equal(c.when) {
			t.Errorf("%s: noticed = %v, %v; want %v, %v", c.name, when, ok, c.when, c.ok)
		}
	}
	v := &ControlView{Members: []ControlMember{{Name: "web-1", Generation: 2, State: "alive"}, {Name: "web-2", Generation: 1, State: "suspect"}}}
	if !v.alive("web-1", 2) || v.alive("web-1", 1) || v.alive("web-2", 1) || (*ControlView)(nil).alive("web-1", 2) {
		t.Error("alive: want only web-1@2")
	}
}
