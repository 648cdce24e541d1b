package chaos

import (
	"bytes"
	"fmt"
	"html/template"
	"sync"
	"time"
)

// The timeline geometry, in SVG user units.
const (
	tlLabel = 230.0 // label column
	tlWidth = 900.0 // time axis
	tlRow   = 22.0
	tlTop   = 28.0
)

type htmlRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type htmlRow struct {
	Label string
	Y     float64
	Rects []htmlRect
}

type htmlMarker struct {
	X      float64
	Label  string
	Round  int
	Y1, Y2 float64
}

type htmlTick struct {
	X     float64
	Label string
}

type htmlView struct {
	R                    *Report
	Width, Height        float64
	AxisY                float64
	Nodes, Probes        []htmlRow
	ProbeTop             float64
	Faults, Recoveries   []htmlMarker
	Ticks                []htmlTick
	Verdict, VerdictCSS  string
	Availability         string
	Duration             string
	LabelX, AxisX, AxisW float64
}

func (r *Report) view() htmlView {
	start, end := r.Started, r.Finished
	if !end.After(start) {
		end = start.Add(time.Second)
	}
	dur := end.Sub(start)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(start)) / float64(dur)
		return tlLabel + min(max(f, 0), 1)*tlWidth
	}
	v := htmlView{R: r, LabelX: 4, AxisX: tlLabel, AxisW: tlWidth, Duration: dur.Round(100 * time.Millisecond).String()}
	y := tlTop
	for _, ns := range r.Timeline {
		row := htmlRow{Label: ns.Name, Y: y}
		for _, s := range ns.Spans {
			w := max(x(s.To)-x(s.From), 1.5)
			row.Rects = append(row.Rects, htmlRect{X: x(s.From), Y: y + 3, W: w, H: tlRow - 6, Class: "st-" + s.State,
				Title: fmt.Sprintf("%s gen %d %s from +%.1fs to +%.1fs", ns.Name, s.Generation, s.State, s.From.Sub(start).Seconds(), s.To.Sub(start).Seconds())})
		}
		v.Nodes = append(v.Nodes, row)
		y += tlRow
	}
	y += 16
	v.ProbeTop = y
	for _, ps := range r.Probes {
		row := htmlRow{Label: ps.Name, Y: y}
		// Consecutive samples with the same outcome make one rect.
		for i := 0; i < len(ps.Samples); {
			j := i
			for j+1 < len(ps.Samples) && ps.Samples[j+1].OK == ps.Samples[i].OK && ps.Samples[j+1].Deferred == ps.Samples[i].Deferred {
				j++
			}
			first, next := ps.Samples[i], end
			if j+1 < len(ps.Samples) {
				next = ps.Samples[j+1].At
			}
			cls, title := "ok", fmt.Sprintf("%d ok from +%.1fs", j-i+1, first.At.Sub(start).Seconds())
			if first.Deferred {
				cls, title = "deferred", fmt.Sprintf("%d deferred (try again later) from +%.1fs: %s", j-i+1, first.At.Sub(start).Seconds(), first.Error)
			} else if !first.OK {
				cls, title = "fail", fmt.Sprintf("%d FAILED from +%.1fs: %s", j-i+1, first.At.Sub(start).Seconds(), first.Error)
			}
			row.Rects = append(row.Rects, htmlRect{X: x(first.At), Y: y + 3, W: max(x(next)-x(first.At), 1.5), H: tlRow - 6, Class: "pr-" + cls, Title: title})
			i = j + 1
		}
		v.Probes = append(v.Probes, row)
		y += tlRow
	}
	bottom := y + 4
	for _, rd := range r.Rounds {
		if rd.FaultAt.IsZero() {
			continue
		}
		v.Faults = append(v.Faults, htmlMarker{X: x(rd.FaultAt), Round: rd.N, Y1: tlTop - 6, Y2: bottom,
			Label: fmt.Sprintf("round %d: %s %v at +%.1fs", rd.N, rd.Fault, victimNames(rd.Victims), rd.FaultAt.Sub(start).Seconds())})
		if rd.Recovered && rd.RecoverySeconds != nil {
			t := rd.FaultAt.Add(time.Duration(*rd.RecoverySeconds * float64(time.Second)))
			v.Recoveries = append(v.Recoveries, htmlMarker{X: x(t), Round: rd.N, Y1: tlTop - 6, Y2: bottom,
				Label: fmt.Sprintf("round %d recovered after %.1fs", rd.N, *rd.RecoverySeconds)})
		}
	}
	v.AxisY = bottom + 4
	step := tickStep(dur)
	for t := time.Duration(0); t <= dur; t += step {
		v.Ticks = append(v.Ticks, htmlTick{X: x(start.Add(t)), Label: "+" + t.String()})
	}
	v.Width, v.Height = tlLabel+tlWidth+20, v.AxisY+22
	v.Verdict, v.VerdictCSS = "PASS", "pass"
	if !r.Pass {
		v.Verdict, v.VerdictCSS = "FAIL", "fail"
	}
	v.Availability = "not measured"
	if r.Availability >= 0 {
		v.Availability = fmt.Sprintf("%.4g%%", r.Availability*100)
	}
	return v
}

func tickStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour} {
		if d/s <= 10 {
			return s
		}
	}
	return d / 10
}

func fsec(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.1fs", *p)
}

func pct(f float64) string {
	if f < 0 {
		return "—"
	}
	return fmt.Sprintf("%.4g%%", f*100)
}

// reportTmpl is parsed on first use, not at package init: every hactl
// command links this package, and parsing took ~0.3 ms of each start-up.
var reportTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("report").Funcs(template.FuncMap{
		"fsec": fsec, "pct": pct,
		"f":  func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>hactl chaos: {{.R.Cluster}} stage {{.R.Stage}} — {{.Verdict}}</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.verdict.pass{background:#1a7f37}.verdict.fail{background:#cf222e}
table{border-collapse:collapse;margin:4px 0} td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.fail{color:#cf222e;font-weight:600} td.pass{color:#1a7f37;font-weight:600}
.meta span{margin-right:18px} code{font-family:ui-monospace,monospace}
svg text{font:11px ui-monospace,monospace;fill:#1d232a}
.st-healthy{fill:#2da44e}.st-unhealthy{fill:#d4a72c}.st-off{fill:#8c959f}.st-missing{fill:#cf222e;opacity:.35}
.pr-ok{fill:#2da44e}.pr-fail{fill:#cf222e}.pr-deferred{fill:#bf8700}
.fault-marker{stroke:#cf222e;stroke-width:2}.recovery-marker{stroke:#1a7f37;stroke-width:2;stroke-dasharray:4 3}
.grid{stroke:#eaeef2}.legend span{display:inline-block;margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px}
.sw.st-healthy,.sw.pr-ok{background:#2da44e}.sw.st-unhealthy{background:#d4a72c}.sw.st-off{background:#8c959f}.sw.st-missing{background:#f0a8ad}.sw.pr-fail{background:#cf222e}.sw.pr-deferred{background:#bf8700}
</style></head><body>
<h1>hactl chaos — cluster <code>{{.R.Cluster}}</code>, stage {{.R.Stage}} <span class="verdict {{.VerdictCSS}}" id="verdict">{{.Verdict}}</span></h1>
<p class="meta"><span>seed <code id="seed">{{.R.Seed}}</code></span><span>fault <code>{{.R.Fault}}</code></span>
<span>started {{ts .R.Started}}</span><span>duration {{.Duration}}</span><span>availability {{.Availability}}</span>
{{if .R.Leashed}}<span><b>leashed</b>: no fault injected</span>{{end}}</p>
{{if .R.Refused}}<p><b>Refused:</b> {{.R.Refused}}</p>{{end}}
{{if .R.Paused}}<p><b>Paused by the kill switch:</b> {{.R.Paused}}</p>{{end}}
<h2>Timeline</h2>
<p class="legend"><span><i class="sw st-healthy"></i>healthy</span><span><i class="sw st-unhealthy"></i>unhealthy</span><span><i class="sw st-off"></i>off</span><span><i class="sw st-missing"></i>missing</span><span><i class="sw pr-ok"></i>probe ok</span><span><i class="sw pr-deferred"></i>probe deferred (4xx, retried)</span><span><i class="sw pr-fail"></i>probe failed</span><span style="color:#cf222e">│ fault</span><span style="color:#1a7f37">┆ recovered</span></p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{{f .Width}}" height="{{f .Height}}" viewBox="0 0 {{f .Width}} {{f .Height}}">
{{range .Ticks}}<line class="grid" x1="{{f .X}}" x2="{{f .X}}" y1="20" y2="{{f $.AxisY}}"/><text x="{{f .X}}" y="{{f $.AxisY}}" dy="14" text-anchor="middle">{{.Label}}</text>
{{end}}<text x="4" y="16" font-weight="bold">nodes</text>
{{range .Nodes}}<g class="node-row" data-node="{{.Label}}"><text x="4" y="{{f .Y}}" dy="15">{{.Label}}</text>{{range .Rects}}<rect class="span {{.Class}}" x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}"><title>{{.Title}}</title></rect>{{end}}</g>
{{end}}{{if .Probes}}<text x="4" y="{{f .ProbeTop}}" dy="-1" font-weight="bold">probes</text>
{{end}}{{range .Probes}}<g class="probe-row" data-probe="{{.Label}}"><text x="4" y="{{f .Y}}" dy="15">{{printf "%.32s" .Label}}</text>{{range .Rects}}<rect class="sample {{.Class}}" x="{{f .X}}" y="{{f .Y}}" width="{{f .W}}" height="{{f .H}}"><title>{{.Title}}</title></rect>{{end}}</g>
{{end}}{{range .Faults}}<line class="fault-marker" data-round="{{.Round}}" x1="{{f .X}}" x2="{{f .X}}" y1="{{f .Y1}}" y2="{{f .Y2}}"><title>{{.Label}}</title></line><text x="{{f .X}}" y="{{f .Y1}}" dy="-2" text-anchor="middle" fill="#cf222e">R{{.Round}}</text>
{{end}}{{range .Recoveries}}<line class="recovery-marker" data-round="{{.Round}}" x1="{{f .X}}" x2="{{f .X}}" y1="{{f .Y1}}" y2="{{f .Y2}}"><title>{{.Label}}</title></line>
{{end}}</svg>
<h2>Objectives</h2>
<table id="objectives"><tr><th>objective</th><th>declared</th><th>measured</th><th>result</th></tr>
{{range .R.Results}}<tr><td>{{.Name}}</td><td>{{.Objective}}</td><td>{{.Measured}}</td>{{if .Pass}}<td class="pass">pass</td>{{else}}<td class="fail">FAIL</td>{{end}}</tr>
{{else}}<tr><td colspan="4">nothing judged (no fault injected)</td></tr>{{end}}</table>
<h2>Rounds</h2>
<table id="rounds"><tr><th>#</th><th>fault</th><th>victims</th><th>detection</th><th>recovery</th><th>requests failed</th><th>availability</th><th>data lost</th><th>notes</th></tr>
{{range .R.Rounds}}<tr class="round"><td>{{.N}}</td><td>{{.Fault}}</td><td>{{range .Victims}}<code>{{.Name}}</code> ({{.Machine}}) {{end}}{{if .Survivor}}<br>survivor <code>{{.Survivor}}</code>{{end}}</td>
<td>{{fsec .DetectionSeconds}}</td><td>{{if .Recovered}}{{fsec .RecoverySeconds}}{{else if .FaultAt.IsZero}}—{{else}}<b>not recovered</b>{{end}}</td>
<td>{{.RequestsFailed}} / {{.Requests}}{{if .RequestsDeferred}} ({{.RequestsDeferred}} deferred){{end}}</td><td>{{pct .Availability}}</td><td>{{.MarkersLost}} of {{.MarkersWritten}}</td>
<td>{{.Intent}}{{if .Skipped}} {{.Skipped}}{{end}}{{range .Errors}}<br>{{.}}{{end}}</td></tr>
{{end}}</table>
</body></html>
`))
})

// HTML renders the report as one self-contained page: inline CSS and SVG,
// no scripts, no external assets.
func (r *Report) HTML() ([]byte, error) {
	var b bytes.Buffer
	if err := reportTmpl().Execute(&b, r.view()); err != nil {
		return nil, fmt.Errorf("render chaos report: %w", err)
	}
	return b.Bytes(), nil
}
