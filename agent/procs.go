package agent

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Procs runs the agent's Go code on one thread while the agent is idle and
// on the runtime's default number (GOMAXPROCS) while it works.
//
// An idle agent does small things often: gossip probes and acks, raft
// heartbeats, its control loop. With more than one P, the scheduler wakes a
// second thread to look for work each time a goroutine is readied, and that
// thread finds nothing; with one P it does not. Measured on the 8-node blog
// (docs/performance.md, agent section): GOMAXPROCS=1 lowers an idle agent's
// CPU by about a sixth. A converge run, a data push or a restore wants every
// CPU, so Procs watches the process's own CPU time: it lowers GOMAXPROCS to
// 1 after Quiet below LowerBelow of a core, and raises it back to the
// default as soon as one Every saw RaiseAt or more.
//
// A GOMAXPROCS environment variable is the operator's choice: Run then
// changes nothing.
type Procs struct {
	Every      time.Duration // sampling period (1 s)
	RaiseAt    float64       // share of a core in one period that restores the default (0.2)
	LowerBelow float64       // share of a core below which a period counts as quiet (0.05)
	Quiet      int           // quiet periods in a row before lowering (10)
	Logger     *slog.Logger

	// For tests: the process's CPU time, and the setters. nil: getrusage,
	// runtime.GOMAXPROCS(1) and runtime.SetDefaultGOMAXPROCS.
	cpu     func() time.Duration
	lower   func()
	restore func()

	low      bool // GOMAXPROCS is 1
	quietFor int  // quiet periods in a row
}

// Run samples until ctx is done and leaves the runtime's default in place
// when it returns.
func (p *Procs) Run(ctx context.Context) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	g := p.withDefaults()
	t := time.NewTicker(g.Every)
	defer t.Stop()
	last, lastAt := g.cpu(), time.Now()
	defer func() {
		if g.low {
			g.restore()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			used := g.cpu()
			g.sample(used-last, now.Sub(lastAt))
			last, lastAt = used, now
		}
	}
}

// withDefaults returns a copy with the defaults filled in and fresh state.
func (p *Procs) withDefaults() *Procs {
	g := *p
	g.low, g.quietFor = false, 0
	if g.Every <= 0 {
		g.Every = time.Second
	}
	if g.RaiseAt <= 0 {
		g.RaiseAt = 0.2
	}
	if g.LowerBelow <= 0 {
		g.LowerBelow = 0.05
	}
	if g.Quiet <= 0 {
		g.Quiet = 10
	}
	if g.cpu == nil {
		g.cpu = processCPU
	}
	if g.lower == nil {
		g.lower = func() { runtime.GOMAXPROCS(1) }
	}
	if g.restore == nil {
		g.restore = runtime.SetDefaultGOMAXPROCS
	}
	if g.Logger == nil {
		g.Logger = slog.New(slog.DiscardHandler)
	}
	return &g
}

// sample takes the CPU time used over one period of length elapsed.
func (p *Procs) sample(used, elapsed time.Duration) {
	if elapsed <= 0 {
		return
	}
	share := float64(used) / float64(elapsed)
	switch {
	case share >= p.RaiseAt:
		p.quietFor = 0
		if p.low {
			p.low = false
			p.restore()
			p.Logger.Debug("agent busy: GOMAXPROCS back to the default", "cpu", share)
		}
	case share < p.LowerBelow:
		p.quietFor++
		if !p.low && p.quietFor >= p.Quiet {
			p.low = true
			p.lower()
			p.Logger.Debug("agent idle: GOMAXPROCS 1", "quiet_periods", p.quietFor)
		}
	default:
		p.quietFor = 0
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
