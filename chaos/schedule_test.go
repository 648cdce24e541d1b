package chaos

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCrontabLine_Specs(t *testing.T) {
	tests := []struct {
		spec, cmd, want, err string
	}{
		{spec: "0 3 * * *", want: "0 3 * * * hactl chaos run /etc/blog --stage 1"},
		{spec: "@daily", want: "@daily hactl chaos run /etc/blog --stage 1"},
		{spec: "*/5 * * * *", cmd: "curl -f 'http://x/?a=1%20b'", want: `*/5 * * * * curl -f 'http://x/?a=1\%20b'`},
		{spec: "@every 1h", err: "@every has no crontab equivalent"},
		{spec: "0 3 * *", err: `schedule "0 3 * *"`},
		{spec: "61 3 * * *", err: "61"},
	}
	for _, tt := range tests {
		cmd := tt.cmd
		if cmd == "" {
			cmd = "hactl chaos run /etc/blog --stage 1"
		}
		got, err := CrontabLine(tt.spec, cmd)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("CrontabLine(%q) = %q, %v; want error %q", tt.spec, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("CrontabLine(%q) = %q, %v; want %q", tt.spec, got, err, tt.want)
		}
	}
}

func TestDir_PauseResume(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "blog", "chaos"))
	if p, _ := d.Paused(); p {
		t.Fatal("paused before Pause")
	}
	if err := d.Pause("release freeze"); err != nil {
		t.Fatal(err)
	}
	if p, why := d.Paused(); !p || !strings.Contains(why, "release freeze") {
		t.Errorf("Paused = %v, %q", p, why)
	}
	if err := d.Resume(); err != nil {
		t.Fatal(err)
	}
	if p, _ := d.Paused(); p {
		t.Error("paused after Resume")
	}
	if err := d.Resume(); err != nil {
		t.Errorf("second Resume: %v", err)
	}
}

func TestDir_Record_ConcurrentAppends(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "chaos"))
	h, err := d.History()
	if err != nil || len(h) != 0 {
		t.Fatalf("empty history = %v, %v", h, err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Record(HistoryEntry{Seed: uint64(i), Stage: 1}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h, err = d.History()
	if err != nil || len(h) != 8 {
		t.Errorf("history has %d entries (%v), want 8", len(h), err)
	}
}

func TestScheduler_Run_RunsAndSkipsWhenPaused(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "chaos"))
	var mu sync.Mutex
	runs := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Scheduler{Spec: "@every 1s", Dir: d, Chaos: func(ctx context.Context, at time.Time) (*Report, string, error) {
		mu.Lock()
		defer mu.Unlock()
		runs++
		if runs == 2 {
			return &Report{Stage: 1, Seed: 7, Pass: false, Rounds: []Round{{N: 1}}}, "/r/2", errors.New("boom")
		}
		return &Report{Stage: 1, Seed: 7, Pass: true, Rounds: []Round{{N: 1}}}, "/r/1", nil
	}}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "two runs recorded", func() error {
		if h, _ := d.History(); len(h) < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if err := d.Pause("stop"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a skipped run recorded", func() error {
		h, _ := d.History()
		if len(h) == 0 || !strings.Contains(h[len(h)-1].Skipped, "kill switch") {
			return errors.New("not yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	h, _ := d.History()
	if !h[0].Pass || h[0].Report != "/r/1" || h[0].Schedule != "@every 1s" || h[0].Seed != 7 {
		t.Errorf("first entry %+v", h[0])
	}
	if h[1].Pass || h[1].Error != "boom" {
		t.Errorf("second entry %+v", h[1])
	}
	mu.Lock()
	n := runs
	mu.Unlock()
	paused := 0
	for _, e := range h {
		if e.Skipped != "" {
			paused++
		}
	}
	if n+paused != len(h) {
		t.Errorf("%d runs + %d skipped != %d entries", n, paused, len(h))
	}
	if err := (&Scheduler{Spec: "bogus"}).Run(context.Background()); err == nil {
		t.Error("bad schedule accepted")
	}
}
