package cluster

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
)

func TestDecideVIP_Policy(t *testing.T) {
	const vip = "10.0.0.100"
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	alive := func(name string, slot, gen int, since time.Duration, vips ...string) Member {
		return Member{Name: name, Role: "lb", Slot: slot, Generation: gen, State: StateAlive, Since: t0.Add(-since), VIPs: vips}
	}
	dead := func(m Member) Member { m.State = StateDead; return m }
	failing := func(m Member) Member { m.Health = plan.HealthFailing; return m }
	witness := Member{Name: "witness-1", Role: "lb", Slot: 0, Generation: 1, State: StateAlive, Witness: true}
	fenced := map[string]bool{}
	gone := func(name string, gen int, _ time.Time) bool { return fenced[name] }
	holder := func(name string, gen int) VIPOwner { return VIPOwner{VIP: vip, Holder: name, Generation: gen} }
	cases := []struct {
		name     string
		failback string
		delay    time.Duration
		own      VIPOwner
		members  []Member
		fenced   []string
		want     *VIPOwner // nil: leave as is
	}{
		{name: "unassigned goes to lowest slot, never the witness", own: VIPOwner{VIP: vip},
			members: []Member{witness, alive("lb-2", 2, 1, time.Minute), alive("lb-1", 1, 1, time.Minute)},
			want:    &VIPOwner{VIP: vip, Holder: "lb-1", Generation: 1, Since: t0}},
		{name: "fenced holder that gossip still shows alive moves at once", own: holder("lb-1", 1),
			members: []Member{alive("lb-1", 1, 1, time.Minute, vip), alive("lb-2", 2, 1, time.Minute)}, fenced: []string{"lb-1"},
			want: &VIPOwner{VIP: vip, Holder: "lb-2", Generation: 1, Since: t0}},
		{name: "released but old holder still reports it bound", own: VIPOwner{VIP: vip},
			members: []Member{alive("lb-1", 1, 1, time.Minute), alive("lb-2", 2, 1, time.Minute, vip)}},
		{name: "released, dead reporter not fenced", own: VIPOwner{VIP: vip},
			members: []Member{alive("lb-1", 1, 1, time.Minute), dead(alive("lb-2", 2, 1, time.Minute, vip))}},
		{name: "released, dead reporter fenced", own: VIPOwner{VIP: vip}, fenced: []string{"lb-2"},
			members: []Member{alive("lb-1", 1, 1, time.Minute), dead(alive("lb-2", 2, 1, time.Minute, vip))},
			want:    &VIPOwner{VIP: vip, Holder: "lb-1", Generation: 1, Since: t0}},
		{name: "healthy holder stays", own: holder("lb-1", 1),
			members: []Member{alive("lb-1", 1, 1, time.Minute, vip), alive("lb-2", 2, 1, time.Minute)}},
		{name: "failing holder is released first (phase one)", own: holder("lb-1", 1),
			members: []Member{failing(alive("lb-1", 1, 1, time.Minute, vip)), alive("lb-2", 2, 1, time.Minute)},
			want:    &VIPOwner{VIP: vip, Since: t0}},
		{name: "dead holder not fenced: wait", own: holder("lb-1", 1),
			members: []Member{dead(alive("lb-1", 1, 1, time.Minute, vip)), alive("lb-2", 2, 1, time.Minute)}},
		{name: "dead holder fenced: move in one step", own: holder("lb-1", 1), fenced: []string{"lb-1"},
			members: []Member{dead(alive("lb-1", 1, 1, time.Minute, vip)), alive("lb-2", 2, 1, time.Minute)},
			want:    &VIPOwner{VIP: vip, Holder: "lb-2", Generation: 1, Since: t0}},
		{name: "holder replaced by a new generation counts as gone only when fenced", own: holder("lb-1", 1),
			members: []Member{alive("lb-1", 1, 2, time.Minute), alive("lb-2", 2, 1, time.Minute)}},
		{name: "failback never", own: holder("lb-2", 1), failback: lang.FailbackNever,
			members: []Member{alive("lb-1", 1, 2, time.Hour), alive("lb-2", 2, 1, time.Hour, vip)}},
		{name: "failback immediate releases from the higher slot", own: holder("lb-2", 1), failback: lang.FailbackImmediate,
			members: []Member{alive("lb-1", 1, 2, time.Second), alive("lb-2", 2, 1, time.Hour, vip)},
			want:    &VIPOwner{VIP: vip, Since: t0}},
		{name: "failback delayed: preferred member too young", own: holder("lb-2", 1), failback: lang.FailbackDelayed, delay: time.Minute,
			members: []Member{alive("lb-1", 1, 2, 30*time.Second), alive("lb-2", 2, 1, time.Hour, vip)}},
		{name: "failback delayed: preferred member up long enough", own: holder("lb-2", 1), failback: lang.FailbackDelayed, delay: time.Minute,
			members: []Member{alive("lb-1", 1, 2, 2*time.Minute), alive("lb-2", 2, 1, time.Hour, vip)},
			want:    &VIPOwner{VIP: vip, Since: t0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clear(fenced)
			for _, f := range tc.fenced {
				fenced[f] = true
			}
			ms := map[string]Member{}
			for _, m := range tc.members {
				ms[m.Name] = m
			}
			v := VIPSpec{Address: vip, Role: "lb", Failback: tc.failback, FailbackDelay: tc.delay}
			got, why, ok := decideVIP(v, tc.own, ms, t0, gone)
			if tc.want == nil {
				if ok {
					t.Fatalf("changed the owner to %+v (%s); want no change", got, why)
				}
				return
			}
			if !ok {
				t.Fatal("no change; want one")
			}
			if d := cmp.Diff(*tc.want, got); d != "" {
				t.Fatalf("owner (-want +got):\n%s\nwhy: %s", d, why)
			}
		})
	}
}
