package plan

import (
	"fmt"
	"strings"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

// t0 is the observation time of every test input.
var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// newRole builds a role on the local provider with provider fencing.
func newRole(name string, count int, opts ...func(*lang.Role)) *lang.Role {
	r := &lang.Role{Name: name, Count: count, Provider: "local", Fencing: lang.Fencing{Method: FenceProvider}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withFencing(m string) func(*lang.Role)  { return func(r *lang.Role) { r.Fencing.Method = m } }
func withProvider(p string) func(*lang.Role) { return func(r *lang.Role) { r.Provider = p } }
func withVIP(addr, failback string) func(*lang.Role) {
	return func(r *lang.Role) { r.VIP = &lang.VIP{Address: addr, Failback: failback} }
}
func withData(name, mode string) func(*lang.Role) {
	return func(r *lang.Role) {
		r.Data = append(r.Data, lang.Data{Name: name, Path: "/var/lib/" + name, Mode: mode})
	}
}

func newConfig(roles ...*lang.Role) *lang.Config {
	return &lang.Config{
		Cluster: &lang.Cluster{Name: "demo", Provider: "local"},
		Providers: map[string]*lang.Provider{
			"local": {Name: "local", Type: "local"},
		},
		Roles: roles,
	}
}

// machine builds an observed machine from a node name ("web-2") and
// generation, powered on, on the local provider, not a member.
func machine(name string, gen int, opts ...func(*Observed)) Observed {
	i := strings.LastIndexByte(name, '-')
	var slot int
	fmt.Sscanf(name[i+1:], "%d", &slot)
	o := Observed{
		Provider: "local",
		Machine: providers.Machine{
			ID:         providers.MachineID(fmt.Sprintf("%s.g%d", name, gen)),
			Cluster:    "demo",
			Role:       name[:i],
			Slot:       slot,
			Generation: gen,
			Name:       name,
			State:      providers.PowerOn,
		},
	}
	for _, f := range opts {
		f(&o)
	}
	return o
}

func state(s providers.PowerState) func(*Observed) {
	return func(o *Observed) { o.Machine.State = s }
}

// health makes the machine a member with health h since d before t0.
func health(h Health, d time.Duration) func(*Observed) {
	return func(o *Observed) { o.Member, o.Health, o.Since = true, h, t0.Add(-d) }
}

func holds(vips ...string) func(*Observed) { return func(o *Observed) { o.VIPs = vips } }

func onProvider(p string) func(*Observed) { return func(o *Observed) { o.Provider = p } }

// brief renders steps compactly for comparisons.
func brief(steps []Step) []string {
	var out []string
	for _, s := range steps {
		line := fmt.Sprintf("%d %s %s g%d", s.ID, s.Action, s.Name, s.Generation)
		if s.Machine != "" {
			line += " m=" + string(s.Machine)
		}
		if s.VIP != "" {
			line += " vip=" + s.VIP
		}
		if s.Data != "" {
			line += " data=" + s.Data
		}
		if len(s.After) > 0 {
			line += fmt.Sprintf(" after=%v", s.After)
		}
		out = append(out, line+": "+s.Reason)
	}
	return out
}
