package converge

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
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
// creating parent directories. The file holds compact JSON,
// one line (indenting took a third of the time of writing it); WriteJSON
// indents.
func (r *Report) WriteFile(path string) error {
	data, err := r.appendJSON(make([]byte, 0, 256+160*len(r.Resources)))
	if err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := writeReplace(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

// appendJSON appends exactly what json.Marshal(r) returns, without
// reflection: every run writes its report, and json.Marshal was a quarter
// of the CPU time writing it took in a 230-resource no-op (perf).
// TestReport_AppendJSON checks the equality.
func (r *Report) appendJSON(b []byte) ([]byte, error) {
	t, err := r.Started.MarshalJSON()
	if err != nil {
		return json.Marshal(r) // its error, e.g. a year out of range
	}
	b = append(b, `{"started":`...)
	b = append(b, t...)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, r.DurationMS, 10)
	b = append(b, `,"dry_run":`...)
	b = strconv.AppendBool(b, r.DryRun)
	b = append(b, `,"resources":`...)
	if r.Resources == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Resources {
			rr := &r.Resources[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"addr":`...)
			b = appendJSONString(b, rr.Addr)
			b = append(b, `,"kind":`...)
			b = appendJSONString(b, rr.Kind)
			b = append(b, `,"status":`...)
			b = appendJSONString(b, string(rr.Status))
			b = append(b, `,"duration_ms":`...)
			b = strconv.AppendInt(b, rr.DurationMS, 10)
			for _, f := range [...]struct{ name, v string }{{`,"change":`, rr.Change}, {`,"diff":`, rr.Diff}, {`,"error":`, rr.Error}, {`,"range":`, rr.Range}} {
				if f.v != "" {
					b = append(b, f.name...)
					b = appendJSONString(b, f.v)
				}
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	s := r.Summary
	b = append(b, `,"summary":{"unchanged":`...)
	b = strconv.AppendInt(b, int64(s.Unchanged), 10)
	b = append(b, `,"changed":`...)
	b = strconv.AppendInt(b, int64(s.Changed), 10)
	b = append(b, `,"failed":`...)
	b = strconv.AppendInt(b, int64(s.Failed), 10)
	b = append(b, `,"skipped":`...)
	b = strconv.AppendInt(b, int64(s.Skipped), 10)
	return append(b, "}}"...), nil
}

// appendJSONString appends s as json.Marshal writes a string: printable
// ASCII other than the quote, backslash, <, > and & as it is; anything else (escapes,
// HTML-safe escapes, invalid UTF-8) through json.Marshal itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
