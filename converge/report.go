package converge

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Status is the outcome of one resource in a run.
type Status string

// The statuses a resource can end a run with.
const (
	StatusUnchanged   Status = "unchanged"
	StatusChanged     Status = "changed"
	StatusWouldChange Status = "would-change"
	StatusFailed      Status = "failed"
	StatusSkipped     Status = "skipped"
)

// Report is the result of one run. Its JSON form is the run report the
// CLI writes and the agent publishes.
type Report struct {
	Started    time.Time        `json:"started"`
	Duration   time.Duration    `json:"-"`
	DurationMS int64            `json:"duration_ms"`
	DryRun     bool             `json:"dry_run"`
	Resources  []ResourceReport `json:"resources"`
	Summary    Summary          `json:"summary"`
}

// ResourceReport is one resource's line in a Report.
type ResourceReport struct {
	Addr       string        `json:"addr"`
	Kind       string        `json:"kind"`
	Status     Status        `json:"status"`
	Duration   time.Duration `json:"-"`
	DurationMS int64         `json:"duration_ms"`
	Change     string        `json:"change,omitempty"`
	Diff       string        `json:"diff,omitempty"`
	Error      string        `json:"error,omitempty"`
	Range      string        `json:"range,omitempty"`
}

// Summary counts resources by outcome; would-change counts as changed.
type Summary struct {
	Unchanged int `json:"unchanged"`
	Changed   int `json:"changed"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
}

// Failed reports whether any resource failed.
func (r *Report) Failed() bool { return r.Summary.Failed > 0 }

// Resource returns the report line for addr, or nil.
func (r *Report) Resource(addr string) *ResourceReport {
	for i := range r.Resources {
		if r.Resources[i].Addr == addr {
			return &r.Resources[i]
		}
	}
	return nil
}

func (r *Report) finish() {
	r.DurationMS = r.Duration.Milliseconds()
	r.Summary = Summary{}
	for i := range r.Resources {
		rr := &r.Resources[i]
		rr.DurationMS = rr.Duration.Milliseconds()
		switch rr.Status {
		case StatusUnchanged:
			r.Summary.Unchanged++
		case StatusChanged, StatusWouldChange:
			r.Summary.Changed++
		case StatusFailed:
			r.Summary.Failed++
		case StatusSkipped:
			r.Summary.Skipped++
		}
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteFile writes the report as JSON to path atomically (temp + rename),
// creating parent directories. The file holds compact JSON, one line
// (indenting took a third of the time of writing it); WriteJSON indents.
func (r *Report) WriteFile(path string) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := writeReplace(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// WriteText writes a human summary: one line per resource that changed,
// would change, failed or was skipped (with diffs in a dry run), then the
// counts.
func (r *Report) WriteText(w io.Writer) {
	for _, rr := range r.Resources {
		switch rr.Status {
		case StatusUnchanged:
			continue
		case StatusFailed:
			fmt.Fprintf(w, "%-12s %s: %s\n", rr.Status, rr.Addr, rr.Error)
		default:
			line := fmt.Sprintf("%-12s %s", rr.Status, rr.Addr)
			if rr.Change != "" {
				line += ": " + rr.Change
			}
			fmt.Fprintln(w, line)
		}
		if rr.Diff != "" {
			fmt.Fprint(w, rr.Diff)
		}
	}
	verb := "changed"
	if r.DryRun {
		verb = "would change"
	}
	fmt.Fprintf(w, "%d unchanged, %d %s, %d failed, %d skipped (%d ms)\n",
		r.Summary.Unchanged, r.Summary.Changed, verb, r.Summary.Failed, r.Summary.Skipped, r.DurationMS)
}
