package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/chaos"
	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

// scheduledOptions are the options of a chaos schedule kept in the cluster
// log (cluster.ChaosSchedule.Options): what `hactl chaos schedule` was given.
type scheduledOptions struct {
	Stage        int           `json:"stage"`
	Rounds       int           `json:"rounds"`
	Interval     time.Duration `json:"interval,omitempty"`
	Seed         uint64        `json:"seed,omitempty"` // 0 = a new random seed per run
	Roles        []string      `json:"roles,omitempty"`
	BlastRadius  int           `json:"blast_radius,omitempty"`
	Leashed      bool          `json:"leashed,omitempty"`
	Fault        string        `json:"fault"`
	Service      string        `json:"service,omitempty"`
	PauseFor     time.Duration `json:"pause_for,omitempty"`
	Probes       []string      `json:"probes,omitempty"`
	Markers      []string      `json:"markers,omitempty"`
	RoundTimeout time.Duration `json:"round_timeout,omitempty"`
	Poll         time.Duration `json:"poll,omitempty"`
	ProbeEvery   time.Duration `json:"probe_interval,omitempty"`
	ProbeTimeout time.Duration `json:"probe_timeout,omitempty"`
	Baseline     time.Duration `json:"baseline,omitempty"`
}

func (f *chaosFlags) scheduled(fixedSeed bool) scheduledOptions {
	o := scheduledOptions{Stage: f.stage, Rounds: f.rounds, Interval: f.interval, Roles: f.roles, BlastRadius: f.blastRadius,
		Leashed: f.leashed, Fault: f.fault, Service: f.service, PauseFor: f.pauseFor, Probes: f.probes, Markers: f.markers,
		RoundTimeout: f.roundTimeout, Poll: f.poll, ProbeEvery: f.probeEvery, ProbeTimeout: f.probeTimeout, Baseline: f.baseline}
	if fixedSeed {
		o.Seed = f.seed
	}
	return o
}

// check refuses what the leader could not run, before it is stored.
func (o scheduledOptions) check() error {
	if _, err := chaos.ParseFaultKind(o.Fault); err != nil {
		return err
	}
	if o.Stage == 3 {
		return chaos.ErrStage3
	}
	for _, s := range o.Probes {
		if _, err := chaos.ParseProbe(s); err != nil {
			return err
		}
	}
	for _, s := range o.Markers {
		if _, err := chaos.ParseMarker(s); err != nil {
			return err
		}
	}
	return nil
}

// errNoChaosLeader: no leader with quorum keeps a chaos schedule.
var errNoChaosLeader = errors.New("no leader with quorum answered")

// chaosToLeader sends a chaos change to the cluster's leader (following a
// 421 to the leader it names) and returns the chaos state it answers with.
func chaosToLeader(ctx context.Context, obs []plan.Observed, method, path string, body any) (*cluster.ChaosState, string, error) {
	_, cs := controlStatus(ctx, obs)
	if cs == nil || cs.Leader == "" || !cs.Quorum {
		return nil, "", errNoChaosLeader
	}
	leader := cs.Leader
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	client := &http.Client{Timeout: 15 * time.Second}
	for attempt := 0; ; attempt++ {
		addr := leaderAddress(obs, leader)
		if addr == "" {
			return nil, leader, fmt.Errorf("the cluster's leader %s has no running machine with an address in the inventory", leader)
		}
		req, err := http.NewRequestWithContext(ctx, method, agentURL(addr, path), bytes.NewReader(payload))
		if err != nil {
			return nil, leader, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, leader, fmt.Errorf("%s %s on leader %s: %w", method, path, leader, err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			var st cluster.ChaosState
			if err := json.Unmarshal(b.Bytes(), &st); err != nil {
				return nil, leader, fmt.Errorf("%s %s on leader %s: %w", method, path, leader, err)
			}
			return &st, leader, nil
		case http.StatusMisdirectedRequest:
			var nl agent.NotLeader
			_ = json.Unmarshal(b.Bytes(), &nl)
			if nl.Leader == "" || attempt >= 3 {
				return nil, leader, fmt.Errorf("node %s is no longer the leader and names no other; try again", leader)
			}
			leader = nl.Leader
		case http.StatusNotFound, http.StatusNotImplemented:
			return nil, leader, fmt.Errorf("leader %s keeps no chaos schedule: %s", leader, strings.TrimSpace(b.String()))
		default:
			return nil, leader, fmt.Errorf("leader %s refused %s %s: %s: %s", leader, method, path, resp.Status, strings.TrimSpace(b.String()))
		}
	}
}

// chaosFromCluster reads the chaos state in the log from the first passing
// node that answers GET /v1/chaos.
func chaosFromCluster(ctx context.Context, obs []plan.Observed) (*cluster.ChaosState, string) {
	client := &http.Client{Timeout: 3 * time.Second}
	for _, o := range obs {
		if o.Health != plan.HealthPassing || o.Machine.Address == "" {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, agentURL(o.Machine.Address, "/v1/chaos"), nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var st cluster.ChaosState
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && err == nil {
			return &st, o.Machine.Name
		}
	}
	return nil, ""
}

// chaosHost builds the node's chaos schedule host (it acts only while the
// node leads): each run builds a chaos.Runner from the configuration in
// force and the node's providers, never draws this node as a victim, and
// writes its report under the node's /var/lib/hactl/chaos/reports.
func (c *control) chaosHost(id agent.Identity) *agent.ChaosHost {
	return &agent.ChaosHost{Log: c.node, Logger: c.log.With("component", "chaos"),
		Run: func(ctx context.Context, s cluster.ChaosSchedule, paused func() (bool, string)) cluster.ChaosRun {
			var out cluster.ChaosRun
			rep, dir, err := c.scheduledRun(ctx, id, s, paused)
			out.Report = dir
			if rep != nil {
				out.Stage, out.Seed, out.Rounds, out.Pass = rep.Stage, rep.Seed, len(rep.Rounds), rep.Pass
				switch {
				case rep.Refused != "":
					out.Skipped = "refused: " + rep.Refused
				case rep.Paused != "":
					out.Skipped = "kill switch: " + rep.Paused
				}
			}
			if err != nil {
				out.Error, out.Pass = err.Error(), false
			}
			return out
		}}
}

func (c *control) scheduledRun(ctx context.Context, id agent.Identity, s cluster.ChaosSchedule, paused func() (bool, string)) (*chaos.Report, string, error) {
	cfg := c.spec()
	if cfg == nil || cfg.Cluster == nil {
		return nil, "", errors.New("no configuration in force on the leader yet")
	}
	var o scheduledOptions
	if err := json.Unmarshal(s.Options, &o); err != nil {
		return nil, "", fmt.Errorf("chaos schedule options: %w", err)
	}
	if err := o.check(); err != nil {
		return nil, "", err
	}
	kind, _ := chaos.ParseFaultKind(o.Fault)
	provs := c.provs
	if provs == nil && c.lp != nil {
		provs = map[string]providers.Provider{cfg.Cluster.Provider: c.lp}
	}
	if len(provs) == 0 {
		return nil, "", errors.New("this node has no provider to break machines with")
	}
	spec := chaos.SpecFromConfig(cfg)
	types := map[string]string{}
	for name := range provs {
		types[name] = chaos.ProviderType(cfg, name)
	}
	for _, r := range spec.Roles {
		if len(o.Roles) > 0 && !contains(o.Roles, r.Name) {
			continue
		}
		if err := chaos.Supports(kind, r.ProviderType, provs[r.Provider]); err != nil {
			return nil, "", fmt.Errorf("role %s: %w", r.Name, err)
		}
	}
	var probes []chaos.Probe
	for _, p := range o.Probes {
		pr, _ := chaos.ParseProbe(p)
		probes = append(probes, pr)
	}
	var markers []chaos.Marker
	for _, m := range o.Markers {
		mk, _ := chaos.ParseMarker(m)
		markers = append(markers, mk)
	}
	seed := o.Seed
	if seed == 0 {
		seed = randomSeed()
	}
	r := &chaos.Runner{
		Spec:     spec,
		Cluster:  &chaos.ProviderCluster{Name: spec.Cluster, Providers: provs, ProviderTypes: types},
		Injector: &chaos.Injector{Providers: provs, Service: o.Service},
		Probes:   probes, Markers: markers, Logger: c.log.With("component", "chaos"), Paused: paused,
		Options: chaos.Options{Stage: o.Stage, Rounds: o.Rounds, Fault: kind, Seed: seed, Interval: o.Interval,
			Roles: o.Roles, BlastRadius: o.BlastRadius, Leashed: o.Leashed, PauseFor: o.PauseFor, Poll: o.Poll,
			RoundTimeout: o.RoundTimeout, ProbeInterval: o.ProbeEvery, ProbeTimeout: o.ProbeTimeout, Baseline: o.Baseline,
			// The leader hosts the run: breaking itself would end it.
			Exclude: []string{id.Name}},
	}
	rep, runErr := r.Run(ctx)
	dir := filepath.Join(id.Root, "var", "lib", "hactl", "chaos", "reports", rep.Started.UTC().Format("20060102T150405.000Z"))
	if _, _, err := rep.WriteFiles(dir); err != nil {
		runErr = errors.Join(runErr, err)
	}
	return rep, dir, runErr
}
