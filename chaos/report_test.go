package chaos

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func fp(f float64) *float64 { return &f }

func TestReport_Evaluate_Objectives(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	round := func(rec *float64, lost int, window float64) Round {
		return Round{N: 1, FaultAt: t0, Recovered: rec != nil, RecoverySeconds: rec, DetectionSeconds: fp(1), MarkersWritten: 1, MarkersLost: lost, LossWindowSeconds: window}
	}
	tests := []struct {
		name   string
		rep    Report
		pass   bool
		failed []string // names of failed results
	}{
		{name: "all met", pass: true, rep: Report{Stage: 1, Objectives: ObjectivesSpec{RTOSeconds: 60, RPOSeconds: 5, Availability: 0.99},
			Availability: 0.995, Rounds: []Round{round(fp(30), 0, 0)}}},
		{name: "rto missed", rep: Report{Stage: 1, Objectives: ObjectivesSpec{RTOSeconds: 60}, Availability: 1, Rounds: []Round{round(fp(30), 0, 0), round(fp(61), 0, 0)}},
			failed: []string{"rto"}},
		{name: "not recovered without rto", rep: Report{Stage: 2, Availability: 1, Rounds: []Round{round(nil, 0, 0)}}, failed: []string{"recovery"}},
		{name: "availability missed", rep: Report{Stage: 2, Objectives: ObjectivesSpec{Availability: 0.999}, Availability: 0.99, Rounds: []Round{round(fp(1), 0, 0)}},
			failed: []string{"availability"}},
		{name: "availability unmeasured", rep: Report{Stage: 2, Objectives: ObjectivesSpec{Availability: 0.9}, Availability: -1, Rounds: []Round{round(fp(1), 0, 0)}},
			failed: []string{"availability"}},
		{name: "stage 1 loses data", rep: Report{Stage: 1, Availability: 1, Rounds: []Round{round(fp(1), 1, 0.2)}}, failed: []string{"data"}},
		{name: "stage 2 loss within rpo", pass: true, rep: Report{Stage: 2, Objectives: ObjectivesSpec{RPOSeconds: 1}, Availability: 1, Rounds: []Round{round(fp(1), 1, 0.2)}}},
		{name: "stage 2 loss beyond rpo", rep: Report{Stage: 2, Objectives: ObjectivesSpec{RPOSeconds: 1}, Availability: 1, Rounds: []Round{round(fp(1), 1, 3)}}, failed: []string{"rpo"}},
		{name: "stage 1 without markers", rep: Report{Stage: 1, Objectives: ObjectivesSpec{RPOSeconds: 60}, Availability: 1,
			Rounds: []Round{{N: 1, FaultAt: t0, Recovered: true, RecoverySeconds: fp(1)}}}, failed: []string{"rpo", "data"}},
		{name: "refused", rep: Report{Stage: 1, Refused: "degraded"}, failed: []string{"run"}},
		{name: "leashed judges nothing", pass: true, rep: Report{Stage: 1, Leashed: true, Rounds: []Round{{N: 1, Skipped: "leashed"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.rep.Evaluate()
			var failed []string
			for _, r := range tt.rep.Results {
				if !r.Pass {
					failed = append(failed, r.Name)
				}
			}
			if tt.rep.Pass != (tt.pass && len(tt.failed) == 0) {
				t.Errorf("Pass = %v, results %+v", tt.rep.Pass, tt.rep.Results)
			}
			if diff := cmp.Diff(tt.failed, failed); diff != "" {
				t.Errorf("failed objectives (-want +got):\n%s", diff)
			}
		})
	}
}

// sampleReport is a two-round report with three nodes and one probe.
func sampleReport() *Report {
	t0 := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	rep := &Report{Cluster: "blog", Stage: 1, Fault: FaultDestroy, Seed: 42, Started: t0, Finished: at(60),
		Objectives: ObjectivesSpec{RTOSeconds: 30, Availability: 0.9}, Availability: 0.95}
	rep.Timeline = []NodeSeries{
		{Name: "web-1", Spans: []Span{{From: at(0), To: at(10), State: "healthy", Generation: 1}, {From: at(10), To: at(12), State: "missing"},
			{From: at(12), To: at(18), State: "unhealthy", Generation: 2}, {From: at(18), To: at(60), State: "healthy", Generation: 2}}},
		{Name: "web-2", Spans: []Span{{From: at(0), To: at(60), State: "healthy", Generation: 1}}},
		{Name: "web-3", Spans: []Span{{From: at(0), To: at(35), State: "healthy", Generation: 1}, {From: at(35), To: at(40), State: "off", Generation: 1}, {From: at(40), To: at(60), State: "healthy", Generation: 2}}},
	}
	var ss []Sample
	for s := 0.0; s < 60; s++ {
		ss = append(ss, Sample{At: at(s), OK: s < 10 || s > 12, LatencyMS: 3})
	}
	rep.Probes = []ProbeSeries{{Name: "http=http://127.1.2.200/", Samples: ss}}
	rep.Rounds = []Round{
		{N: 1, Fault: FaultDestroy, Victims: []Victim{{Node: Node{Name: "web-1", Machine: "blog/web-1.g1"}}}, Started: at(9), FaultAt: at(10), Ended: at(19),
			DetectionSeconds: fp(0.5), RecoverySeconds: fp(8), Recovered: true, Requests: 10, RequestsFailed: 3, Availability: 0.7, MarkersWritten: 1},
		{N: 2, Fault: FaultDestroy, Victims: []Victim{{Node: Node{Name: "web-3", Machine: "blog/web-3.g1"}}}, Started: at(34), FaultAt: at(35), Ended: at(41),
			DetectionSeconds: fp(0.5), RecoverySeconds: fp(5), Recovered: true, Requests: 7, Availability: 1, MarkersWritten: 1},
	}
	rep.Evaluate()
	return rep
}

func TestReport_WriteFiles_JSONRoundTrips(t *testing.T) {
	rep := sampleReport()
	dir := filepath.Join(t.TempDir(), "out")
	jp, hp, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Seed != 42 || len(back.Rounds) != 2 || *back.Rounds[0].RecoverySeconds != 8 || !back.Pass {
		t.Errorf("round trip: seed %d, %d rounds, pass %v, results %+v", back.Seed, len(back.Rounds), back.Pass, back.Results)
	}
	h, err := os.ReadFile(hp)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "http-equiv", "<link", "src=\"http", "@import"} {
		if strings.Contains(string(h), bad) {
			t.Errorf("HTML is not self-contained: has %q", bad)
		}
	}
}
