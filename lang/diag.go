package lang

import (
	"io"

	"github.com/hashicorp/hcl/v2"
)

// diagWidth is the column at which diagnostic details are wrapped.
const diagWidth = 78

// WriteDiagnostics renders diags for people: file:line:col, the summary, a
// snippet of the source (from files, name -> bytes, e.g. Config.Files) and
// the detail. color adds terminal colours.
func WriteDiagnostics(w io.Writer, files map[string][]byte, diags hcl.Diagnostics, color bool) error {
	hf := make(map[string]*hcl.File, len(files))
	for name, b := range files {
		hf[name] = &hcl.File{Bytes: b}
	}
	return hcl.NewDiagnosticTextWriter(w, hf, diagWidth, color).WriteDiagnostics(diags)
}

// JSONDiagnostic is the machine-readable form of one diagnostic.
type JSONDiagnostic struct {
	Severity string     `json:"severity"` // "error" or "warning"
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *JSONRange `json:"range,omitempty"`
}

// JSONRange is a source range; lines and columns count from 1, bytes from 0.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is a position in a source file.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// DiagnosticsJSON converts diags to their JSON form, in order. It never
// returns nil, so an empty list encodes as [].
func DiagnosticsJSON(diags hcl.Diagnostics) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(diags))
	for _, d := range diags {
		if d == nil {
			continue
		}
		jd := JSONDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if d.Subject != nil {
			r := d.Subject
			jd.Range = &JSONRange{
				Filename: r.Filename,
				Start:    JSONPos{Line: r.Start.Line, Column: r.Start.Column, Byte: r.Start.Byte},
				End:      JSONPos{Line: r.End.Line, Column: r.End.Column, Byte: r.End.Byte},
			}
		}
		out = append(out, jd)
	}
	return out
}
