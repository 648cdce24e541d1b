// Package chaostest holds test helpers for chaos reports: finding (or
// installing) headless Chromium and inspecting a rendered report.html
// through chromedp. It is imported by tests only (chaos and the end-to-end
// tests of cmd/hactl); it does not import chaos, so chaos's own tests can
// use it.
package chaostest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium finds Debian's chromium, installing it with apt-get when it is
// missing and the test runs as root; otherwise the test is skipped.
func Chromium(t testing.TB) string {
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

// Rendered is what headless Chromium shows of a report.html.
type Rendered struct {
	// Counts of timeline elements: node rows and their state spans, probe
	// rows and their failed/deferred sample rects, fault and recovery
	// lines, and rows of the rounds table.
	Counts        map[string]int
	Seed, Verdict string
	// TimelineWidth is the rendered width of the timeline SVG in pixels
	// (0 when it is not laid out, i.e. not visible).
	TimelineWidth float64
	// Screenshot is a full-page PNG.
	Screenshot []byte
}

// Render loads htmlPath in headless Chromium (bin), waits until the
// timeline is visible, and returns what it shows. profile is a scratch
// directory for Chromium's profile.
func Render(ctx context.Context, bin, htmlPath, profile string) (Rendered, error) {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	cctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	cctx, cancelT := context.WithTimeout(cctx, 90*time.Second)
	defer cancelT()

	var r Rendered
	abs, err := filepath.Abs(htmlPath)
	if err != nil {
		return r, err
	}
	if err := chromedp.Do(cctx, chromedp.Navigate("file://"+abs), chromedp.WaitVisible("#timeline")); err != nil {
		return r, fmt.Errorf("chromium: load %s: %w", abs, err)
	}
	r.Counts, err = chromedp.Run(cctx, chromedp.Evaluate[map[string]int](`({
			nodes: document.querySelectorAll("#timeline g.node-row").length,
			nodeSpans: document.querySelectorAll("#timeline g.node-row rect.span").length,
			probes: document.querySelectorAll("#timeline g.probe-row").length,
			failedSamples: document.querySelectorAll("#timeline g.probe-row rect.pr-fail").length,
			deferredSamples: document.querySelectorAll("#timeline g.probe-row rect.pr-deferred").length,
			faults: document.querySelectorAll("#timeline line.fault-marker").length,
			recoveries: document.querySelectorAll("#timeline line.recovery-marker").length,
			rounds: document.querySelectorAll("#rounds tr.round").length,
		})`))
	if err != nil {
		return r, fmt.Errorf("chromium: count elements: %w", err)
	}
	if r.Seed, err = chromedp.Run(cctx, chromedp.Text("#seed")); err != nil {
		return r, err
	}
	if r.Verdict, err = chromedp.Run(cctx, chromedp.Text("#verdict")); err != nil {
		return r, err
	}
	if r.TimelineWidth, err = chromedp.Run(cctx, chromedp.Evaluate[float64](`document.getElementById("timeline").getBoundingClientRect().width`)); err != nil {
		return r, err
	}
	if r.Screenshot, err = chromedp.Run(cctx, chromedp.FullScreenshot(100)); err != nil {
		return r, fmt.Errorf("screenshot: %w", err)
	}
	return r, nil
}
