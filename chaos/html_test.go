package chaos

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
)

// chromium finds Debian's chromium, installing it with apt-get when it is
// missing and the test runs as root; otherwise the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Getuid() != 0 {
		t.Skip("chromium is not installed and cannot be installed here (needs apt-get as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	install := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, apt, "install", "-y", "--no-install-recommends", "chromium")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	t.Log("chromium is missing: installing Debian's chromium package")
	if _, err := install(); err != nil {
		// A fresh machine has no package lists yet.
		if out, err := exec.CommandContext(ctx, apt, "update").CombinedOutput(); err != nil {
			t.Skipf("chromium is not installed and apt-get update failed: %v\n%s", err, out)
		}
		if out, err := install(); err != nil {
			t.Skipf("chromium is not installed and apt-get install -y chromium failed: %v\n%s", err, out)
		}
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium still missing after apt-get install")
	}
	return p
}

func TestReport_HTML_TimelineInChromium(t *testing.T) {
	bin := chromium(t)
	rep := sampleReport()
	dir := t.TempDir()
	_, htmlPath, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+htmlPath), chromedp.WaitVisible("#timeline")); err != nil {
		t.Fatalf("chromium: load %s: %v", htmlPath, err)
	}
	counts, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]int](`({
			nodes: document.querySelectorAll("#timeline g.node-row").length,
			nodeSpans: document.querySelectorAll("#timeline g.node-row rect.span").length,
			probes: document.querySelectorAll("#timeline g.probe-row").length,
			failedSamples: document.querySelectorAll("#timeline g.probe-row rect.pr-fail").length,
			faults: document.querySelectorAll("#timeline line.fault-marker").length,
			recoveries: document.querySelectorAll("#timeline line.recovery-marker").length,
			rounds: document.querySelectorAll("#rounds tr.round").length,
		})`))
	if err != nil {
		t.Fatalf("chromium: count elements: %v", err)
	}
	seed, err := chromedp.Run(ctx, chromedp.Text("#seed"))
	if err != nil {
		t.Fatal(err)
	}
	verdict, err := chromedp.Run(ctx, chromedp.Text("#verdict"))
	if err != nil {
		t.Fatal(err)
	}
	svgWidth, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("timeline").getBoundingClientRect().width`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	want := map[string]int{"nodes": 3, "nodeSpans": 8, "probes": 1, "failedSamples": 1, "faults": 2, "recoveries": 2, "rounds": 2}
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
