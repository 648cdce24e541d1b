package plan

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// ANSI colours, used only when Render is asked for colour.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// symbols are the Terraform-style markers of each action, right-aligned in
// three columns.
var symbols = map[Action]struct{ sym, color string }{
	ActionCreate:  {"  +", ansiGreen},
	ActionDestroy: {"  -", ansiRed},
	ActionReplace: {"-/+", ansiYellow},
	ActionFence:   {"  !", ansiRed + ansiBold},
	ActionMoveVIP: {"  ~", ansiCyan},
	ActionRestore: {" <=", ansiCyan},
}

// Render writes r for a person, like terraform plan: one line per step with
// its reason, the tolerance table, warnings, and a summary line. Colour
// escapes are written only when color is true. Render returns the first
// write error.
func Render(w io.Writer, r Result, color bool) error {
	ew := &errWriter{w: w}
	paint := func(c, s string) string {
		if !color || c == "" {
			return s
		}
		return c + s + ansiReset
	}
	names := map[string]int{}
	for _, s := range r.Steps {
		names[s.Name]++
	}
	if len(r.Steps) > 0 {
		ew.printf("hactl will perform the following actions:\n\n")
		for _, s := range r.Steps {
			sym := symbols[s.Action]
			ew.printf("%s %s\n", paint(sym.color, sym.sym), paint(sym.color, stepText(s, names[s.Name] > 1)))
		}
		ew.printf("\n")
	}

	if len(r.Tolerance) > 0 {
		ew.printf("%s\n", paint(ansiBold, "Tolerance:"))
		var tb strings.Builder
		tw := tabwriter.NewWriter(&tb, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  ROLE\tCOUNT\tHEALTHY\tCAN LOSE\tNOTE\n")
		for _, t := range r.Tolerance {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%s\n", t.Role, t.Count, t.Healthy, t.CanLose, t.Note)
		}
		tw.Flush()
		for _, line := range strings.SplitAfter(tb.String(), "\n") {
			if line != "" {
				ew.printf("%s\n", strings.TrimRight(line, " \n"))
			}
		}
		q := r.Quorum
		auto := ""
		if q.Automatic {
			auto = " (automatic)"
		}
		witness := ""
		if q.Witness != "" {
			witness = ", witness " + q.Witness
		}
		voters := "voters"
		if q.Voters == 1 {
			voters = "voter"
		}
		ew.printf("  raft: %d %s%s%s, quorum %d, may fail %d\n\n", q.Voters, voters, auto, witness, q.Quorum, q.CanFail)
	}

	if len(r.Warnings) > 0 {
		ew.printf("%s\n", paint(ansiYellow+ansiBold, "Warnings:"))
		for _, wn := range r.Warnings {
			ew.printf("  %s %s\n", paint(ansiYellow, "!"), wn.Message)
		}
		ew.printf("\n")
	}

	if len(r.Steps) == 0 {
		ew.printf("%s\n", paint(ansiGreen+ansiBold, "No changes. The cluster matches the configuration."))
		return ew.err
	}
	c := r.Counts()
	line := fmt.Sprintf("Plan: %d to create, %d to replace, %d to destroy", c.Create, c.Replace, c.Destroy)
	if c.Fence > 0 {
		line += fmt.Sprintf(", %d to fence", c.Fence)
	}
	if c.MoveVIP > 0 {
		line += fmt.Sprintf(", %d VIP to move", c.MoveVIP)
		if c.MoveVIP > 1 {
			line = strings.TrimSuffix(line, "VIP to move") + "VIPs to move"
		}
	}
	ew.printf("%s\n", paint(ansiBold, line+"."))
	return ew.err
}

// stepText is the text of one step without its marker. showGen adds the
// generation where a name alone is ambiguous.
func stepText(s Step, showGen bool) string {
	var b strings.Builder
	b.WriteString(string(s.Action))
	b.WriteByte(' ')
	switch s.Action {
	case ActionMoveVIP:
		b.WriteString(s.VIP)
		if s.From != "" {
			fmt.Fprintf(&b, " %s", s.From)
		}
		fmt.Fprintf(&b, " -> %s", s.Name)
	case ActionReplace:
		fmt.Fprintf(&b, "%s gen %d -> %d", s.Name, s.Previous, s.Generation)
	case ActionCreate:
		b.WriteString(s.Name)
		if s.Generation > 1 {
			fmt.Fprintf(&b, " gen %d", s.Generation)
		}
	default:
		b.WriteString(s.Name)
		if showGen && s.Action != ActionRestore {
			fmt.Fprintf(&b, " gen %d", s.Generation)
		}
	}
	fmt.Fprintf(&b, " (%s)", s.Reason)
	return b.String()
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, a ...any) { fmt.Fprintf(e, format, a...) }

// FormatVersion is the version of the JSON shape of a plan. It changes only
// when a field changes meaning or disappears; fields may be added.
const FormatVersion = "1"

// jsonResult is the stable JSON shape of a plan.
type jsonResult struct {
	FormatVersion string      `json:"format_version"`
	Steps         []Step      `json:"steps"`
	Tolerance     []Tolerance `json:"tolerance"`
	Quorum        Quorum      `json:"quorum"`
	Warnings      []Warning   `json:"warnings"`
	Summary       Counts      `json:"summary"`
}

// JSON returns the plan as indented JSON with a stable shape: lists are
// never null, and a summary of counts per action is included.
func (r Result) JSON() ([]byte, error) {
	j := jsonResult{
		FormatVersion: FormatVersion,
		Steps:         nonNil(r.Steps),
		Tolerance:     nonNil(r.Tolerance),
		Quorum:        r.Quorum,
		Warnings:      nonNil(r.Warnings),
		Summary:       r.Counts(),
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	return append(b, '\n'), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
