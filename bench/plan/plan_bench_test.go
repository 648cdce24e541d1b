// Package plan_test benchmarks the planner on large clusters: 50 roles of
// 1,000 and 10,000 nodes observed with some slots missing, failed,
// powered off or superseded. Run:
//
//	go test -run='^$' -bench=. -benchmem -count=6 ./bench/plan/ | benchstat -
//
// Targets: 1,000 nodes under 100 ms; 10,000 nodes under 1 s and 300 MB.
// peak-heap-MB is the heap one Plan call adds with the collector off (an
// upper bound of its peak); input-MB is the heap the Input itself holds.
package plan_test

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
	"github.com/hactl/hactl/providers"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// cluster builds an input of nodes machines over roles roles. Of every 100
// slots: 4 are missing, 3 unreachable for a minute, 1 powered off, 2 have a
// superseded older generation next to a healthy newest one; every 5th role
// keeps data, every 10th has a VIP.
func cluster(roles, nodes int) plan.Input {
	cfg := &lang.Config{
		Cluster:   &lang.Cluster{Name: "bench", Provider: "do", Voters: 5},
		Providers: map[string]*lang.Provider{"do": {Name: "do", Type: "digitalocean"}},
	}
	in := plan.Input{
		Config:         cfg,
		Now:            now,
		FailureTimeout: 10 * time.Second,
		Capabilities:   map[string]providers.Capabilities{"do": {Fence: true, VIP: true, PowerOn: true, Snapshot: true}},
	}
	per := nodes / roles
	id := 0
	for ri := range roles {
		r := &lang.Role{
			Name:      fmt.Sprintf("role%02d", ri),
			Count:     per,
			Provider:  "do",
			Fencing:   lang.Fencing{Method: "provider"},
			Placement: lang.Placement{Regions: []string{"fra1", "ams3", "lon1"}, Spread: true, Size: "s-1vcpu-1gb"},
		}
		if ri%5 == 0 {
			r.Data = []lang.Data{{Name: "data", Path: "/var/lib/data", Mode: lang.ReplicationSync}}
		}
		if ri%10 == 0 {
			r.VIP = &lang.VIP{Address: fmt.Sprintf("203.0.113.%d", ri), Failback: lang.FailbackNever}
		}
		cfg.Roles = append(cfg.Roles, r)
		for slot := 1; slot <= per; slot++ {
			k := (ri*per + slot) % 100
			if k < 4 {
				continue // missing
			}
			id++
			o := plan.Observed{
				Provider: "do",
				Member:   true,
				Health:   plan.HealthPassing,
				Since:    now.Add(-time.Hour),
				Machine: providers.Machine{
					ID: providers.MachineID(fmt.Sprint(id)), Cluster: "bench", Role: r.Name, Slot: slot, Generation: 2,
					Name: providers.NodeName(r.Name, slot), State: providers.PowerOn, Address: fmt.Sprintf("10.%d.%d.%d", ri, slot/256, slot%256),
				},
			}
			switch {
			case k < 7:
				o.Health, o.Since = plan.HealthUnreached, now.Add(-time.Minute)
			case k < 8:
				o.Machine.State = providers.PowerOff
			case k < 10:
				old := o
				id++
				old.Machine.ID, old.Machine.Generation = providers.MachineID(fmt.Sprint(id)), 1
				in.Observed = append(in.Observed, old)
			}
			if r.VIP != nil && slot == 5 {
				o.VIPs = []string{r.VIP.Address}
			}
			in.Observed = append(in.Observed, o)
		}
	}
	return in
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkPlan(b *testing.B) {
	for _, nodes := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			base := heapAlloc()
			in := cluster(50, nodes)
			inputMB := float64(heapAlloc()-base) / (1 << 20)

			// One call with the collector off: everything it allocates stays
			// on the heap, so the growth bounds its peak.
			old := debug.SetGCPercent(-1)
			before := heapAlloc()
			r := plan.Plan(in)
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peakMB := float64(m.HeapAlloc-before) / (1 << 20)
			debug.SetGCPercent(old)
			c := r.Counts()
			if c.Create == 0 || c.Replace == 0 || c.Destroy == 0 || c.Fence == 0 {
				b.Fatalf("bench input does not exercise the planner: %+v", c)
			}

			for b.Loop() {
				plan.Plan(in)
			}
			b.ReportMetric(peakMB, "peak-heap-MB")
			b.ReportMetric(inputMB, "input-MB")
			b.ReportMetric(float64(len(r.Steps)), "steps")
		})
	}
}

func BenchmarkFingerprint(b *testing.B) {
	in := cluster(50, 10000)
	for b.Loop() {
		plan.Fingerprint(in)
	}
}
