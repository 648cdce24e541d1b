package plan

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/providers"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// goldenInput is the HCL-ish description of a planner input used by the
// golden files (a test format, not hactl's configuration language).
type goldenInput struct {
	FailureTimeout string           `hcl:"failure_timeout,optional"`
	Cluster        goldenCluster    `hcl:"cluster,block"`
	Providers      []goldenProvider `hcl:"provider,block"`
	Roles          []goldenRole     `hcl:"role,block"`
	Machines       []goldenMachine  `hcl:"machine,block"`
}

type goldenCluster struct {
	Name    string `hcl:"name,label"`
	Voters  int    `hcl:"voters,optional"`
	Witness string `hcl:"witness,optional"`
}

type goldenProvider struct {
	Name  string `hcl:"name,label"`
	Type  string `hcl:"type"`
	Fence bool   `hcl:"fence,optional"`
	VIP   bool   `hcl:"vip,optional"`
}

type goldenRole struct {
	Name     string   `hcl:"name,label"`
	Count    int      `hcl:"count"`
	Provider string   `hcl:"provider,optional"`
	Fencing  string   `hcl:"fencing,optional"`
	VIP      string   `hcl:"vip,optional"`
	Failback string   `hcl:"failback,optional"`
	Data     []string `hcl:"data,optional"` // "name:mode"
	Regions  []string `hcl:"regions,optional"`
	Spread   bool     `hcl:"spread,optional"`
	Size     string   `hcl:"size,optional"`
}

type goldenMachine struct {
	Name     string   `hcl:"name,label"` // web-2
	Gen      int      `hcl:"gen,optional"`
	ID       string   `hcl:"id,optional"`
	Provider string   `hcl:"provider,optional"`
	State    string   `hcl:"state,optional"`  // on (default), off, starting, unknown
	Health   string   `hcl:"health,optional"` // makes it a member: passing, failing, unreachable
	For      string   `hcl:"for,optional"`    // how long it has had that health
	VIPs     []string `hcl:"vips,optional"`
}

// goldenToInput turns the description into a planner input at t0.
func goldenToInput(t *testing.T, name string, src []byte) Input {
	t.Helper()
	var g goldenInput
	if err := hclsimple.Decode(name+".hcl", src, nil, &g); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	dur := func(s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return d
	}
	cfg := &lang.Config{
		Cluster:   &lang.Cluster{Name: g.Cluster.Name, Provider: "local", Voters: g.Cluster.Voters, Witness: g.Cluster.Witness},
		Providers: map[string]*lang.Provider{"local": {Name: "local", Type: "local"}},
	}
	in := Input{Config: cfg, Now: t0, FailureTimeout: dur(g.FailureTimeout), Capabilities: map[string]providers.Capabilities{}}
	in.Capabilities["local"] = providers.Capabilities{Fence: true, VIP: true, PowerOn: true}
	for _, p := range g.Providers {
		cfg.Providers[p.Name] = &lang.Provider{Name: p.Name, Type: p.Type}
		in.Capabilities[p.Name] = providers.Capabilities{Fence: p.Fence, VIP: p.VIP}
	}
	for _, gr := range g.Roles {
		r := newRole(gr.Name, gr.Count)
		if gr.Provider != "" {
			r.Provider = gr.Provider
		}
		if gr.Fencing != "" {
			r.Fencing.Method = gr.Fencing
		}
		if gr.VIP != "" {
			r.VIP = &lang.VIP{Address: gr.VIP, Failback: gr.Failback}
		}
		for _, d := range gr.Data {
			n, mode, _ := strings.Cut(d, ":")
			r.Data = append(r.Data, lang.Data{Name: n, Mode: mode, Interval: time.Minute})
		}
		r.Placement = lang.Placement{Regions: gr.Regions, Spread: gr.Spread, Size: gr.Size}
		cfg.Roles = append(cfg.Roles, r)
	}
	for _, gm := range g.Machines {
		gen := max(gm.Gen, 1)
		o := machine(gm.Name, gen)
		o.Machine.Cluster = cfg.Cluster.Name
		if r := cfg.Role(o.Machine.Role); r != nil {
			o.Provider = r.Provider
		}
		if gm.Provider != "" {
			o.Provider = gm.Provider
		}
		if gm.ID != "" {
			o.Machine.ID = providers.MachineID(gm.ID)
		}
		if gm.State != "" {
			o.Machine.State = providers.PowerState(gm.State)
		}
		if gm.Health != "" {
			health(Health(gm.Health), dur(gm.For))(&o)
		}
		o.VIPs = gm.VIPs
		in.Observed = append(in.Observed, o)
	}
	return in
}

const goldenSep = "----------\n"

// TestPlan_Render_Golden plans every testdata/*.golden input and compares
// the rendered plan with the text after the separator line.
func TestPlan_Render_Golden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.golden")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(b), goldenSep)
			if !ok {
				t.Fatalf("%s: no %q separator line", f, strings.TrimSpace(goldenSep))
			}
			in := goldenToInput(t, name, []byte(input))
			var out bytes.Buffer
			if err := Render(&out, Plan(in), false); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			if *update {
				if err := os.WriteFile(f, []byte(input+goldenSep+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: rendered plan differs (-want +got; run go test ./plan -run Golden -update to accept):\n%s", f, diff)
			}
		})
	}
}

// TestPlan_Render_Color checks colour escapes appear only when asked for.
func TestPlan_Render_Color(t *testing.T) {
	in := Input{Config: newConfig(newRole("web", 2)), Now: t0}
	for _, color := range []bool{false, true} {
		var b bytes.Buffer
		if err := Render(&b, Plan(in), color); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "\x1b["); got != color {
			t.Errorf("color=%v: escapes present = %v in\n%s", color, got, b.String())
		}
		if !strings.Contains(b.String(), "Plan: 2 to create, 0 to replace, 0 to destroy.") {
			t.Errorf("color=%v: summary line missing in\n%s", color, b.String())
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, fmt.Errorf("disk full") }

func TestPlan_Render_WriteError(t *testing.T) {
	in := Input{Config: newConfig(newRole("web", 2)), Now: t0}
	if err := Render(failWriter{}, Plan(in), false); err == nil {
		t.Fatal("Render returned nil on a failing writer")
	}
}

// TestResult_JSON_Golden pins the JSON shape of a full plan: the plan of
// testdata/failover.golden's input must match testdata/failover.json.
func TestResult_JSON_Golden(t *testing.T) {
	b, err := os.ReadFile("testdata/failover.golden")
	if err != nil {
		t.Fatal(err)
	}
	input, _, _ := strings.Cut(string(b), goldenSep)
	got, err := Plan(goldenToInput(t, "failover", []byte(input))).JSON()
	if err != nil {
		t.Fatal(err)
	}
	const file = "testdata/failover.json"
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("plan JSON differs (-want +got; run with -update to accept):\n%s", diff)
	}
}
