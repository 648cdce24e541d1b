package chaos

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/chaos/chaostest"
)

func TestReport_HTML_TimelineInChromium(t *testing.T) {
	bin := chaostest.Chromium(t)
	rep := sampleReport()
	dir := t.TempDir()
	_, htmlPath, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := chaostest.Render(context.Background(), bin, htmlPath, filepath.Join(dir, "profile"))
	if err != nil {
		t.Fatal(err)
	}
	counts, seed, verdict, svgWidth, shot := got.Counts, got.Seed, got.Verdict, got.TimelineWidth, got.Screenshot
	want := map[string]int{"nodes": 3, "nodeSpans": 8, "probes": 1, "failedSamples": 1, "deferredSamples": 0, "faults": 2, "recoveries": 2, "rounds": 2}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("timeline elements (-want +got):\n%s", diff)
	}
	if seed != "42" || verdict != "PASS" || svgWidth < 500 {
		t.Errorf("seed %q verdict %q svg width %v", seed, verdict, svgWidth)
	}
	if len(shot) < 1000 || !bytes.HasPrefix(shot, []byte("\x89PNG")) {
		t.Errorf("screenshot: %d bytes, not a PNG", len(shot))
	}
	out := filepath.Join(dir, "report.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("HACTL_CHAOS_SCREENSHOT"); d != "" {
		_ = os.WriteFile(d, shot, 0o644)
	}
	t.Logf("screenshot %s (%d bytes)", out, len(shot))
}
