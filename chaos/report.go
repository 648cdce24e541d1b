package chaos

import (
	"encoding/json"
	"fmt"
	"github.com/hactl/hactl/internal/fsutil"
	"os"
	"path/filepath"
	"time"

	"github.com/hactl/hactl/lang"
)

// Report is the outcome of one chaos run. It is written as report.json and
// rendered as report.html.
type Report struct {
	Cluster  string    `json:"cluster"`
	Stage    int       `json:"stage"`
	Fault    FaultKind `json:"fault"`
	Seed     uint64    `json:"seed"`
	Leashed  bool      `json:"leashed"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Refused is why the run stopped before a round could start ("" = it did not).
	Refused string `json:"refused,omitempty"`
	// Paused is set when the kill switch stopped the run.
	Paused     string         `json:"paused,omitempty"`
	Objectives ObjectivesSpec `json:"objectives"`
	Rounds     []Round        `json:"rounds"`
	Probes     []ProbeSeries  `json:"probes"`
	Markers    []string       `json:"markers,omitempty"`
	// MarkersCheckedAtEnd markers (every one read back in its own round)
	// were read once more after the last round; LostAtEnd are those a
	// later round lost ("<marker> <id> (round N)").
	MarkersCheckedAtEnd int               `json:"markers_checked_at_end"`
	LostAtEnd           []string          `json:"lost_at_end,omitempty"`
	Timeline            []NodeSeries      `json:"timeline"`
	Results             []ObjectiveResult `json:"results"`
	// Availability over the whole run (probe successes / samples); -1 when no sample.
	Availability float64 `json:"availability"`
	Pass         bool    `json:"pass"`
}

// ObjectivesSpec are the declared objectives (0 = unset).
type ObjectivesSpec struct {
	RTOSeconds   float64 `json:"rto_seconds,omitempty"`
	RPOSeconds   float64 `json:"rpo_seconds,omitempty"`
	Availability float64 `json:"availability,omitempty"`
}

func objectivesSpec(o lang.Objectives) ObjectivesSpec {
	return ObjectivesSpec{RTOSeconds: o.RTO.Seconds(), RPOSeconds: o.RPO.Seconds(), Availability: o.Availability}
}

// Round is one fault and what followed it.
type Round struct {
	N        int       `json:"n"`
	Fault    FaultKind `json:"fault"`
	Victims  []Victim  `json:"victims"`
	Survivor string    `json:"survivor,omitempty"`
	Intent   string    `json:"intent,omitempty"`
	Started  time.Time `json:"started"`
	// FaultAt is when the fault was injected (zero when leashed or refused).
	FaultAt time.Time `json:"fault_at,omitzero"`
	Ended   time.Time `json:"ended"`
	// DetectionSeconds: fault → the cluster shows every victim gone or
	// unhealthy (nil = never seen). RecoverySeconds: fault → every victim has
	// a healthy replacement (nil = not within the round timeout).
	DetectionSeconds *float64 `json:"detection_seconds"`
	RecoverySeconds  *float64 `json:"recovery_seconds"`
	Recovered        bool     `json:"recovered"`
	Requests         int      `json:"requests"`
	RequestsFailed   int      `json:"requests_failed"`
	// RequestsDeferred: samples the service put off ("try again later",
	// SMTP 4xx); a client retries them, so they are not failed requests.
	RequestsDeferred int `json:"requests_deferred,omitempty"`
	// Availability over the round; -1 when no probe sampled it.
	Availability   float64  `json:"availability"`
	MarkersWritten int      `json:"markers_written"`
	MarkersLost    int      `json:"markers_lost"`
	Lost           []string `json:"lost,omitempty"` // "<marker> <id>"
	// LossWindowSeconds is the age at fault time of the oldest lost marker (the measured RPO).
	LossWindowSeconds float64  `json:"loss_window_seconds,omitempty"`
	Skipped           string   `json:"skipped,omitempty"` // why no fault was injected (leashed, refused)
	Errors            []string `json:"errors,omitempty"`
}

// Victim is one node a round broke.
type Victim struct {
	Node
	Detail           string   `json:"detail,omitempty"`
	DetectionSeconds *float64 `json:"detection_seconds"`
	RecoverySeconds  *float64 `json:"recovery_seconds"`
	// Replacement is the machine that recovered the slot.
	Replacement string `json:"replacement,omitempty"`

	back func() bool // process faults: the processes run again
}

// ProbeSeries is one probe's samples over the run.
type ProbeSeries struct {
	Name    string   `json:"name"`
	Samples []Sample `json:"samples"`
}

// NodeSeries is one node name's states over the run.
type NodeSeries struct {
	Name  string `json:"name"`
	Spans []Span `json:"spans"`
}

// Span is a stretch of time a node spent in one state.
type Span struct {
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	State      string    `json:"state"` // healthy, unhealthy, off, missing
	Generation int       `json:"generation,omitempty"`
}

// ObjectiveResult is one objective judged.
type ObjectiveResult struct {
	Name      string `json:"name"`
	Objective string `json:"objective"`
	Measured  string `json:"measured"`
	Pass      bool   `json:"pass"`
}

func secs(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

// Evaluate judges the rounds against the objectives and sets Results and
// Pass. A leashed run, or a run with no fault injected, judges nothing
// but a refusal (which fails). An objective that could not be measured (no
// probe sample for availability, no marker for rpo and stage 1's "no
// acknowledged data lost") fails: it was not shown to hold.
func (r *Report) Evaluate() {
	r.Results = nil
	r.Pass = true
	fail := func(res ObjectiveResult) {
		r.Results = append(r.Results, res)
		if !res.Pass {
			r.Pass = false
		}
	}
	if r.Refused != "" {
		fail(ObjectiveResult{Name: "run", Objective: "the cluster may be broken", Measured: "refused: " + r.Refused})
	}
	faulted := 0
	worstRTO, unrecovered := 0.0, 0
	lost, written, worstRPO := 0, 0, 0.0
	for _, rd := range r.Rounds {
		if rd.FaultAt.IsZero() {
			continue
		}
		faulted++
		if !rd.Recovered || rd.RecoverySeconds == nil {
			unrecovered++
		} else {
			worstRTO = max(worstRTO, *rd.RecoverySeconds)
		}
		lost += rd.MarkersLost
		written += rd.MarkersWritten
		worstRPO = max(worstRPO, rd.LossWindowSeconds)
	}
	if faulted == 0 {
		return
	}
	o := r.Objectives
	measured := fmt.Sprintf("worst recovery %.1fs", worstRTO)
	switch {
	case unrecovered == faulted:
		measured = fmt.Sprintf("%d round(s) not recovered", unrecovered)
	case unrecovered > 0:
		measured = fmt.Sprintf("%d round(s) not recovered; %s", unrecovered, measured)
	}
	if o.RTOSeconds > 0 {
		fail(ObjectiveResult{Name: "rto", Objective: fmt.Sprintf("%gs", o.RTOSeconds), Measured: measured,
			Pass: unrecovered == 0 && worstRTO <= o.RTOSeconds})
	} else {
		fail(ObjectiveResult{Name: "recovery", Objective: "every victim replaced", Measured: measured, Pass: unrecovered == 0})
	}
	lostLater := len(r.LostAtEnd)
	lost += lostLater
	dataMeasured := fmt.Sprintf("%d of %d acknowledged marker(s) lost", lost, written)
	if lostLater > 0 {
		dataMeasured += fmt.Sprintf(" (%d of them by a later round: missing when all were read back at the end)", lostLater)
	} else if r.MarkersCheckedAtEnd > 0 {
		dataMeasured += fmt.Sprintf(" (all %d read back again at the end)", r.MarkersCheckedAtEnd)
	}
	if written == 0 {
		dataMeasured = "not measured: no marker was written (give --marker)"
	}
	if o.RPOSeconds > 0 {
		res := ObjectiveResult{Name: "rpo", Objective: fmt.Sprintf("%gs", o.RPOSeconds), Measured: dataMeasured}
		if written > 0 {
			res.Measured += fmt.Sprintf("; loss window %.1fs", worstRPO)
			if lostLater > 0 {
				res.Measured += " (unknown for the markers lost by a later round)"
			}
			res.Pass = worstRPO <= o.RPOSeconds && lostLater == 0
		}
		fail(res)
	}
	if r.Stage == 1 {
		fail(ObjectiveResult{Name: "data", Objective: "no acknowledged data lost (stage 1)", Measured: dataMeasured, Pass: written > 0 && lost == 0})
	}
	if o.Availability > 0 {
		res := ObjectiveResult{Name: "availability", Objective: fmt.Sprintf("%.4g%%", o.Availability*100)}
		if r.Availability < 0 {
			res.Measured = "not measured: no probe samples"
		} else {
			res.Measured = fmt.Sprintf("%.4g%%", r.Availability*100)
			res.Pass = r.Availability >= o.Availability
		}
		fail(res)
	}
}

// WriteFiles writes report.json and report.html into dir (created if
// needed) and returns their paths.
func (r *Report) WriteFiles(dir string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("report dir %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	jsonPath, htmlPath = filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
	if err := writeFileAtomic(jsonPath, append(b, '\n')); err != nil {
		return "", "", err
	}
	h, err := r.HTML()
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(htmlPath, h); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}

func writeFileAtomic(path string, b []byte) error {
	if err := fsutil.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
