package plan

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

func TestPlan_Steps(t *testing.T) {
	cases := []struct {
		name    string
		roles   []*lang.Role
		obs     []Observed
		timeout time.Duration
		known   map[string]int
		want    []string
	}{
		{
			name:  "missing slots are created with generation 1",
			roles: []*lang.Role{newRole("web", 2)},
			want:  []string{"0 create web-1 g1: missing", "1 create web-2 g1: missing"},
		},
		{
			name:  "healthy slots are left alone",
			roles: []*lang.Role{newRole("web", 2)},
			obs:   []Observed{machine("web-1", 1, health(HealthPassing, time.Hour)), machine("web-2", 7)},
		},
		{
			name:  "a missing slot continues the highest generation seen or known",
			roles: []*lang.Role{newRole("web", 2, withProvider("do"))},
			obs:   []Observed{machine("web-1", 4, onProvider("local"))},
			known: map[string]int{"web-2": 9},
			want: []string{
				"0 create web-1 g5: missing",
				"1 create web-2 g10: missing",
				"2 destroy web-1 g4 m=web-1.g4 after=[0 1]: role web moved to provider do",
			},
		},
		{
			name:  "a slot left behind on the old provider is destroyed",
			roles: []*lang.Role{newRole("web", 1, withProvider("do"))},
			obs:   []Observed{machine("web-1", 2, onProvider("do")), machine("web-1", 1)},
			want:  []string{"0 destroy web-1 g1 m=web-1.g1: role web moved to provider do"},
		},
		{
			name:  "count lowered destroys the excess slots after the creates",
			roles: []*lang.Role{newRole("lb", 2)},
			obs:   []Observed{machine("lb-1", 1), machine("lb-3", 1), machine("lb-4", 2)},
			want: []string{
				"0 create lb-2 g1: missing",
				"1 destroy lb-3 g1 m=lb-3.g1 after=[0]: count lowered to 2",
				"2 destroy lb-4 g2 m=lb-4.g2 after=[0]: count lowered to 2",
			},
		},
		{
			name:  "an undeclared role is destroyed",
			roles: []*lang.Role{newRole("web", 1)},
			obs:   []Observed{machine("web-1", 1), machine("cache-1", 1)},
			want:  []string{"0 destroy cache-1 g1 m=cache-1.g1: role cache no longer declared"},
		},
		{
			name:  "older generations are fenced then destroyed",
			roles: []*lang.Role{newRole("web", 1)},
			obs:   []Observed{machine("web-1", 1), machine("web-1", 3), machine("web-1", 2, state(providers.PowerOff))},
			want: []string{
				"0 fence web-1 g1 m=web-1.g1: superseded by generation 3",
				"1 destroy web-1 g2 m=web-1.g2 after=[0]: superseded by generation 3",
				"2 destroy web-1 g1 m=web-1.g1 after=[1]: superseded by generation 3",
			},
		},
		{
			name:  "without fencing an older generation is only destroyed",
			roles: []*lang.Role{newRole("web", 1, withFencing(FenceNone))},
			obs:   []Observed{machine("web-1", 1), machine("web-1", 2)},
			want:  []string{"0 destroy web-1 g1 m=web-1.g1: superseded by generation 2"},
		},
		{
			name:  "a duplicate of the same generation keeps the healthy one",
			roles: []*lang.Role{newRole("web", 1, withFencing(FenceNone))},
			obs: []Observed{
				machine("web-1", 2, func(o *Observed) { o.Machine.ID = "a"; o.Machine.State = providers.PowerStarting }),
				machine("web-1", 2, func(o *Observed) { o.Machine.ID = "b" }),
			},
			want: []string{"0 destroy web-1 g2 m=a: duplicate of machine b"},
		},
		{
			name:  "a powered-off machine is replaced without a fence",
			roles: []*lang.Role{newRole("web", 1)},
			obs:   []Observed{machine("web-1", 2, state(providers.PowerOff))},
			want:  []string{"0 replace web-1 g3 m=web-1.g2: powered off"},
		},
		{
			name:    "an unreachable member past the timeout is fenced then replaced",
			roles:   []*lang.Role{newRole("web", 2)},
			obs:     []Observed{machine("web-1", 1, health(HealthPassing, time.Hour)), machine("web-2", 1, health(HealthUnreached, 12*time.Second))},
			timeout: 10 * time.Second,
			want: []string{
				"0 fence web-2 g1 m=web-2.g1: unreachable for 12s",
				"1 replace web-2 g2 m=web-2.g1 after=[0]: unreachable for 12s",
			},
		},
		{
			name:    "a failing member with fencing none is replaced without a fence",
			roles:   []*lang.Role{newRole("web", 1, withFencing(FenceNone))},
			obs:     []Observed{machine("web-1", 1, health(HealthFailing, time.Minute))},
			timeout: 10 * time.Second,
			want:    []string{"0 replace web-1 g2 m=web-1.g1: failing health checks for 1m0s"},
		},
		{
			name:    "an unreachable member within the timeout is left alone",
			roles:   []*lang.Role{newRole("web", 1)},
			obs:     []Observed{machine("web-1", 1, health(HealthUnreached, 9*time.Second))},
			timeout: 10 * time.Second,
		},
		{
			name:  "a zero timeout replaces as soon as the failure is seen",
			roles: []*lang.Role{newRole("web", 1, withFencing(FenceDestroy))},
			obs:   []Observed{machine("web-1", 1, health(HealthUnreached, 0))},
			want: []string{
				"0 fence web-1 g1 m=web-1.g1: unreachable for 0s",
				"1 replace web-1 g2 m=web-1.g1 after=[0]: unreachable for 0s",
			},
		},
		{
			name:  "a member with unknown health or a starting machine is left alone",
			roles: []*lang.Role{newRole("web", 2)},
			obs:   []Observed{machine("web-1", 1, health(HealthUnknown, 0)), machine("web-2", 1, state(providers.PowerStarting))},
		},
		{
			name:  "a data role restores after every create and replace",
			roles: []*lang.Role{newRole("mail", 2, withData("maildir", "sync"), withData("queue", "async"))},
			obs:   []Observed{machine("mail-1", 1, state(providers.PowerOff))},
			want: []string{
				"0 replace mail-1 g2 m=mail-1.g1: powered off",
				"1 restore-data mail-1 g2 data=maildir after=[0]: restore maildir from replica or backup",
				"2 restore-data mail-1 g2 data=queue after=[1]: restore queue from replica or backup",
				"3 create mail-2 g1: missing",
				"4 restore-data mail-2 g1 data=maildir after=[3]: restore maildir from replica or backup",
				"5 restore-data mail-2 g1 data=queue after=[4]: restore queue from replica or backup",
			},
		},
		{
			name:  "a machine without a valid slot is left alone",
			roles: []*lang.Role{newRole("web", 1)},
			obs:   []Observed{machine("web-1", 1), machine("web-0", 1)},
		},
		{
			name:  "machines of another cluster are ignored",
			roles: []*lang.Role{newRole("web", 1)},
			obs:   []Observed{machine("web-1", 1), machine("cache-1", 1, func(o *Observed) { o.Machine.Cluster = "other" })},
		},
		{
			name:    "the VIP moves off a failed holder after its fence",
			roles:   []*lang.Role{newRole("lb", 3, withVIP("10.0.0.5", ""))},
			timeout: time.Second,
			obs: []Observed{
				machine("lb-1", 1, health(HealthUnreached, time.Minute), holds("10.0.0.5")),
				machine("lb-2", 1, health(HealthFailing, 5*time.Second)),
				machine("lb-3", 1, health(HealthPassing, time.Hour)),
			},
			want: []string{
				"0 fence lb-1 g1 m=lb-1.g1: unreachable for 1m0s",
				"1 fence lb-2 g1 m=lb-2.g1: failing health checks for 5s",
				"2 move-vip lb-3 g1 m=lb-3.g1 vip=10.0.0.5 after=[0]: holder lb-1: unreachable for 1m0s",
				"3 replace lb-1 g2 m=lb-1.g1 after=[0]: unreachable for 1m0s",
				"4 replace lb-2 g2 m=lb-2.g1 after=[1]: failing health checks for 5s",
			},
		},
		{
			name:  "a VIP nobody holds goes to the lowest created slot after its create",
			roles: []*lang.Role{newRole("lb", 2, withVIP("10.0.0.5", ""))},
			want: []string{
				"0 create lb-1 g1: missing",
				"1 create lb-2 g1: missing",
				"2 move-vip lb-1 g1 vip=10.0.0.5 after=[0]: no member holds it",
			},
		},
		{
			name:  "a VIP held by two machines is given to one",
			roles: []*lang.Role{newRole("lb", 2, withVIP("10.0.0.5", ""))},
			obs:   []Observed{machine("lb-1", 1, holds("10.0.0.5")), machine("lb-2", 1, holds("10.0.0.5"))},
			want:  []string{"0 move-vip lb-1 g1 m=lb-1.g1 vip=10.0.0.5: held by 2 machines"},
		},
		{
			name:  "a VIP held by a healthy member stays without failback",
			roles: []*lang.Role{newRole("lb", 2, withVIP("10.0.0.5", lang.FailbackNever))},
			obs:   []Observed{machine("lb-1", 1), machine("lb-2", 1, holds("10.0.0.5"))},
		},
		{
			name: "delayed failback waits for the lower slot to be healthy long enough",
			roles: []*lang.Role{newRole("lb", 3, withVIP("10.0.0.5", lang.FailbackDelayed), func(r *lang.Role) {
				r.VIP.FailbackDelay = time.Minute
			})},
			obs: []Observed{
				machine("lb-1", 1, health(HealthPassing, 30*time.Second)),
				machine("lb-2", 1, health(HealthPassing, 2*time.Minute)),
				machine("lb-3", 1, health(HealthPassing, time.Hour), holds("10.0.0.5")),
			},
		},
		{
			name:  "a VIP held by a machine of another role moves",
			roles: []*lang.Role{newRole("lb", 1, withVIP("10.0.0.5", "")), newRole("web", 1)},
			obs:   []Observed{machine("lb-1", 1), machine("web-1", 1, holds("10.0.0.5"))},
			want:  []string{"0 move-vip lb-1 g1 m=lb-1.g1 vip=10.0.0.5 after=[]: holder web-1 is not a member of role lb"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Config: newConfig(tc.roles...), Observed: tc.obs, Now: t0, FailureTimeout: tc.timeout, KnownGenerations: tc.known}
			got := brief(Plan(in).Steps)
			want := tc.want
			for i, w := range want {
				want[i] = strings.Replace(w, " after=[]", "", 1)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlan_Plan_NilConfig(t *testing.T) {
	r := Plan(Input{Observed: []Observed{machine("web-1", 1)}, Now: t0})
	if len(r.Steps) != 0 || len(r.Warnings) != 1 {
		t.Fatalf("a nil config planned %v with warnings %v", brief(r.Steps), r.Warnings)
	}
}

func TestPlan_Tolerance(t *testing.T) {
	roles := []*lang.Role{
		newRole("web", 3),
		newRole("mail", 3, withData("maildir", lang.ReplicationSync)),
		newRole("queue", 2, withData("q", lang.ReplicationAsync), func(r *lang.Role) { r.Data[0].Interval = 30 * time.Second }),
		newRole("solo", 1, withData("files", lang.ReplicationNone)),
		newRole("off", 0),
	}
	in := Input{
		Config: newConfig(roles...),
		Now:    t0,
		Observed: []Observed{
			machine("web-1", 1, health(HealthPassing, time.Hour)),
			machine("web-2", 1, health(HealthFailing, time.Second)),
			machine("web-3", 1),
			machine("mail-1", 1, state(providers.PowerOff)),
		},
		FailureTimeout: time.Minute,
	}
	got := Plan(in).Tolerance
	want := []Tolerance{
		{Role: "mail", Count: 3, Healthy: 0, CanLose: 1, Note: "sync data: writes are acknowledged on 2 replicas and refused while only 1 is up"},
		{Role: "off", Count: 0, Healthy: 0, CanLose: 0},
		{Role: "queue", Count: 2, Healthy: 0, CanLose: 1, Note: "async data: the last 30s of writes may be lost"},
		{Role: "solo", Count: 1, Healthy: 0, CanLose: 0, Note: "unreplicated data: a lost node loses writes since its last backup"},
		{Role: "web", Count: 3, Healthy: 2, CanLose: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tolerance (-want +got):\n%s", diff)
	}
}

func TestPlan_Quorum(t *testing.T) {
	cases := []struct {
		name    string
		counts  []int
		voters  int
		witness string
		want    Quorum
	}{
		{"automatic odd", []int{2, 1}, 0, "", Quorum{Voters: 3, Automatic: true, Quorum: 2, CanFail: 1}},
		{"automatic even rounds down", []int{2, 2}, 0, "", Quorum{Voters: 3, Automatic: true, Quorum: 2, CanFail: 1}},
		{"automatic caps at five", []int{4, 4}, 0, "", Quorum{Voters: 5, Automatic: true, Quorum: 3, CanFail: 2}},
		{"automatic two nodes", []int{2}, 0, "", Quorum{Voters: 1, Automatic: true, Quorum: 1, CanFail: 0}},
		{"explicit two", []int{2}, 2, "", Quorum{Voters: 2, Quorum: 2, CanFail: 0}},
		{"two with witness", []int{2}, 2, "beachhead", Quorum{Voters: 3, Witness: "beachhead", Quorum: 2, CanFail: 1}},
		{"no nodes", nil, 0, "", Quorum{Automatic: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var roles []*lang.Role
			for i, c := range tc.counts {
				roles = append(roles, newRole(string(rune('a'+i)), c))
			}
			cfg := newConfig(roles...)
			cfg.Cluster.Voters, cfg.Cluster.Witness = tc.voters, tc.witness
			if diff := cmp.Diff(tc.want, Plan(Input{Config: cfg, Now: t0}).Quorum); diff != "" {
				t.Errorf("quorum (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlan_Warnings(t *testing.T) {
	doCaps := map[string]providers.Capabilities{"do": {Fence: true, VIP: true}, "metal": {}}
	cases := []struct {
		name   string
		roles  []*lang.Role
		voters int
		want   []string // substrings, one per warning, in order
	}{
		{
			name:   "a sound cluster has no warnings",
			roles:  []*lang.Role{newRole("web", 3, withProvider("do"), withVIP("1.2.3.4", ""))},
			voters: 3,
		},
		{
			name:   "data without fencing",
			roles:  []*lang.Role{newRole("db", 3, withProvider("do"), withFencing(FenceNone), withData("pg", "sync"))},
			voters: 3,
			want:   []string{`role db keeps data but fencing.method is "none"`},
		},
		{
			name:   "ssh fencing shares the node's failure domain",
			roles:  []*lang.Role{newRole("web", 3, withProvider("do"), withFencing(FenceSSH))},
			voters: 3,
			want:   []string{"role web fences over ssh"},
		},
		{
			name:  "everything local",
			roles: []*lang.Role{newRole("web", 3), newRole("lb", 0, withProvider("do"))},
			want:  []string{"every role runs on the local provider"},
		},
		{
			name:   "count one",
			roles:  []*lang.Role{newRole("web", 3, withProvider("do")), newRole("mail", 1, withProvider("do"))},
			voters: 3,
			want:   []string{"role mail has count 1"},
		},
		{
			name:   "VIP and fencing on a provider without them",
			roles:  []*lang.Role{newRole("web", 3, withProvider("metal"), withVIP("1.2.3.4", ""))},
			voters: 3,
			want:   []string{"role web has a VIP but provider metal cannot move one", "provider metal cannot fence"},
		},
		{
			name:   "two voters without witness",
			roles:  []*lang.Role{newRole("web", 2, withProvider("do"))},
			voters: 2,
			want:   []string{"2 raft voters and no witness"},
		},
		{
			name:   "more voters than nodes",
			roles:  []*lang.Role{newRole("web", 3, withProvider("do"))},
			voters: 5,
			want:   []string{"cluster.voters is 5 but only 3 nodes are declared"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newConfig(tc.roles...)
			cfg.Providers["do"] = &lang.Provider{Name: "do", Type: "digitalocean"}
			cfg.Providers["metal"] = &lang.Provider{Name: "metal", Type: "baremetal"}
			cfg.Cluster.Voters = tc.voters
			var obs []Observed
			for _, r := range tc.roles {
				for s := 1; s <= r.Count; s++ {
					obs = append(obs, machine(providers.NodeName(r.Name, s), 1, onProvider(r.Provider), holds(VIPName(r))))
				}
			}
			ws := Plan(Input{Config: cfg, Now: t0, Capabilities: doCaps}).Warnings
			var got []string
			for _, w := range ws {
				got = append(got, w.Message)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d warnings, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestPlan_Plan_PlacementSpread(t *testing.T) {
	r := newRole("web", 3, func(r *lang.Role) {
		r.Placement = lang.Placement{Regions: []string{"fra1", "ams3"}, Spread: true, Size: "s-1vcpu-1gb", Image: "hactl-base"}
	})
	var got []string
	for _, s := range Plan(Input{Config: newConfig(r), Now: t0}).Steps {
		got = append(got, s.Name+" "+s.Region+" "+s.Size+" "+s.Image)
	}
	want := []string{"web-1 fra1 s-1vcpu-1gb hactl-base", "web-2 ams3 s-1vcpu-1gb hactl-base", "web-3 fra1 s-1vcpu-1gb hactl-base"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("placement (-want +got):\n%s", diff)
	}
}

// TestPlan_Plan_OrderIndependent shuffles the observed machines: the plan
// must not change.
func TestPlan_Plan_OrderIndependent(t *testing.T) {
	in := Input{
		Config:         newConfig(newRole("web", 3, withVIP("10.0.0.1", "")), newRole("mail", 2, withData("m", "sync"))),
		Now:            t0,
		FailureTimeout: time.Second,
		Observed: []Observed{
			machine("web-1", 1, health(HealthUnreached, time.Minute), holds("10.0.0.1")),
			machine("web-1", 2, state(providers.PowerStarting)),
			machine("web-2", 1, health(HealthPassing, time.Hour)),
			machine("web-4", 1),
			machine("mail-1", 3, state(providers.PowerOff)),
			machine("mail-2", 1, health(HealthFailing, time.Hour)),
			machine("db-1", 1),
		},
	}
	want := Plan(in)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		sh := Input(in)
		sh.Observed = append([]Observed(nil), in.Observed...)
		rng.Shuffle(len(sh.Observed), func(i, j int) { sh.Observed[i], sh.Observed[j] = sh.Observed[j], sh.Observed[i] })
		if diff := cmp.Diff(want, Plan(sh)); diff != "" {
			t.Fatalf("plan depends on the order of Observed (-want +got):\n%s", diff)
		}
	}
}

func TestResult_JSON_Shape(t *testing.T) {
	empty, err := Result{}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "format_version": "1",
  "steps": [],
  "tolerance": [],
  "quorum": {
    "voters": 0,
    "automatic": false,
    "quorum": 0,
    "can_fail": 0
  },
  "warnings": [],
  "summary": {
    "create": 0,
    "replace": 0,
    "destroy": 0,
    "fence": 0,
    "move_vip": 0,
    "restore_data": 0
  }
}
`
	if diff := cmp.Diff(want, string(empty)); diff != "" {
		t.Errorf("empty plan JSON (-want +got):\n%s", diff)
	}
	r := Plan(Input{Config: newConfig(newRole("web", 1, withVIP("10.0.0.1", ""))), Now: t0})
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"action": "create"`, `"action": "move-vip"`, `"after": [`, `"vip": "10.0.0.1"`, `"create": 1`, `"move_vip": 1`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("plan JSON lacks %s:\n%s", s, b)
		}
	}
}
