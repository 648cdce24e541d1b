package agent

import (
	"testing"
	"time"
)

// TestProcsGovernor_LowersWhenQuietRaisesWhenBusy: ten quiet seconds lower
// GOMAXPROCS to 1; one busy second restores the default; a period between
// the two thresholds neither lowers nor counts as quiet.
func TestProcsGovernor_LowersWhenQuietRaisesWhenBusy(t *testing.T) {
	var calls []string
	g := (&Procs{
		lower:   func() { calls = append(calls, "lower") },
		restore: func() { calls = append(calls, "restore") },
		cpu:     func() time.Duration { return 0 },
	}).withDefaults()
	sec := time.Second
	idle, busy, middling := 8*time.Millisecond, 900*time.Millisecond, 100*time.Millisecond

	for range 9 {
		g.sample(idle, sec)
	}
	if len(calls) != 0 {
		t.Fatalf("lowered after 9 quiet periods: %v", calls)
	}
	g.sample(middling, sec) // 10% of a core: not quiet, resets the count
	for range 9 {
		g.sample(idle, sec)
	}
	if len(calls) != 0 {
		t.Fatalf("a middling period did not reset the quiet count: %v", calls)
	}
	g.sample(idle, sec)
	if len(calls) != 1 || calls[0] != "lower" || !g.low {
		t.Fatalf("after 10 quiet periods in a row: calls %v, low %v; want one lower", calls, g.low)
	}
	g.sample(idle, sec)
	g.sample(middling, sec)
	if len(calls) != 1 {
		t.Fatalf("lowered twice or raised on a middling period: %v", calls)
	}
	g.sample(busy, sec)
	if len(calls) != 2 || calls[1] != "restore" || g.low {
		t.Fatalf("a busy period: calls %v, low %v; want a restore", calls, g.low)
	}
	g.sample(busy, sec)
	if len(calls) != 2 {
		t.Fatalf("restored twice: %v", calls)
	}
	// Half a period at 0.9 cores is still busy: the share, not the CPU time, counts.
	for range 10 {
		g.sample(idle, sec)
	}
	g.sample(450*time.Millisecond, 500*time.Millisecond)
	if len(calls) != 4 || calls[3] != "restore" {
		t.Fatalf("calls %v; want lower then restore", calls)
	}
}
