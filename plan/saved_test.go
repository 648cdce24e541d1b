package plan

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/zclconf/go-cty/cty"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

func savedInput() Input {
	cfg, obs := failoverScenario()
	cfg.Providers["do"] = &lang.Provider{Name: "do", Type: "digitalocean", Config: cty.ObjectVal(map[string]cty.Value{"region": cty.StringVal("fra1")})}
	cfg.Files = map[string][]byte{"cluster.hcl": []byte(`cluster "demo" {}`)}
	return Input{Config: cfg, Observed: obs, Now: t0, FailureTimeout: 10 * time.Second}
}

func TestSave_Load_RoundTrip(t *testing.T) {
	in := savedInput()
	r := Plan(in)
	var b bytes.Buffer
	if err := Save(&b, r, Fingerprint(in)); err != nil {
		t.Fatal(err)
	}
	s, err := Load(&b)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff(r, s.Result); diff != "" {
		t.Errorf("loaded plan differs (-saved +loaded):\n%s", diff)
	}
	if err := s.Check(in); err != nil {
		t.Errorf("Check on the same world: %v", err)
	}
}

func TestSaved_Check(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Input)
		stale bool
	}{
		{name: "same world, machines listed in another order", edit: func(in *Input) { slices.Reverse(in.Observed) }},
		{name: "later observation time and other timeout", edit: func(in *Input) { in.Now = in.Now.Add(time.Hour); in.FailureTimeout = time.Minute }},
		{name: "health timestamps and addresses", edit: func(in *Input) {
			in.Observed[0].Since = t0.Add(-time.Hour)
			in.Observed[0].Machine.Address = "10.1.1.1"
		}},
		{name: "a machine appeared", stale: true, edit: func(in *Input) { in.Observed = append(in.Observed, machine("web-3", 1)) }},
		{name: "a machine is gone", stale: true, edit: func(in *Input) { in.Observed = in.Observed[1:] }},
		{name: "a machine powered off", stale: true, edit: func(in *Input) { in.Observed[1].Machine.State = providers.PowerOff }},
		{name: "a member recovered", stale: true, edit: func(in *Input) { in.Observed[0].Health = HealthPassing }},
		{name: "the VIP moved", stale: true, edit: func(in *Input) { in.Observed[0].VIPs = nil }},
		{name: "count changed", stale: true, edit: func(in *Input) { in.Config.Roles[2].Count = 4 }},
		{name: "fencing changed", stale: true, edit: func(in *Input) { in.Config.Roles[0].Fencing.Method = FenceNone }},
		{name: "provider setting changed", stale: true, edit: func(in *Input) {
			in.Config.Providers["do"].Config = cty.ObjectVal(map[string]cty.Value{"region": cty.StringVal("ams3")})
		}},
		{name: "a file changed", stale: true, edit: func(in *Input) { in.Config.Files["cluster.hcl"] = []byte(`cluster "demo" { }`) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := savedInput()
			s := Saved{Fingerprint: Fingerprint(in), Result: Plan(in)}
			now := savedInput()
			tc.edit(&now)
			err := s.Check(now)
			if tc.stale != (err != nil) {
				t.Fatalf("Check = %v, want stale=%v", err, tc.stale)
			}
			if tc.stale && (!errors.Is(err, ErrStale) || !strings.Contains(err.Error(), "run hactl plan again")) {
				t.Errorf("Check error %q does not wrap ErrStale or say what to do", err)
			}
		})
	}
}

func TestLoad_Errors(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"not json", "hello", "read saved plan"},
		{"other kind", `{"kind":"tfplan","fingerprint":"x","plan":{"format_version":"1"}}`, "not a hactl plan file"},
		{"other version", `{"kind":"hactl-plan","fingerprint":"x","plan":{"format_version":"9"}}`, `format version "9"`},
		{"no fingerprint", `{"kind":"hactl-plan","plan":{"format_version":"1"}}`, "no fingerprint"},
		{"unknown field", `{"kind":"hactl-plan","fingerprint":"x","extra":1,"plan":{"format_version":"1"}}`, "unknown field"},
		{"forward dependency", `{"kind":"hactl-plan","fingerprint":"x","plan":{"format_version":"1","steps":[{"id":0,"action":"create","role":"w","slot":1,"generation":1,"name":"w-1","reason":"r","after":[0]}]}}`,
			"waits for step 0, which does not come before it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
