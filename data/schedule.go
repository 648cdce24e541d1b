package data

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hactl/hactl/lang"
	"github.com/robfig/cron/v3"
)

// Job is one scheduled backup: a directory, a target, a cron schedule and
// a retention policy.
type Job struct {
	// Name identifies the job in events and status ("mail/maildir/offsite").
	Name      string
	Dir       string
	Target    string // target URL
	Options   TargetOptions
	Schedule  string // cron syntax (5 fields, or @hourly, @every 1h, ...)
	KeepLast  int
	KeepDaily int
}

// JobsFor returns the backup jobs of one data block of role; keyFile is
// the SSH key for sftp targets (empty for the default).
func JobsFor(role string, d lang.Data, keyFile string) []Job {
	var out []Job
	for _, b := range d.Backups {
		out = append(out, Job{
			Name:      role + "/" + d.Name + "/" + b.Name,
			Dir:       d.Path,
			Target:    b.Target,
			Options:   TargetOptions{HostKey: b.HostKey, KeyFile: keyFile},
			Schedule:  b.Schedule,
			KeepLast:  b.KeepLast,
			KeepDaily: b.KeepDaily,
		})
	}
	return out
}

// Event kinds a Scheduler reports.
const (
	EventBackupDone    = "backup-done"
	EventBackupFailed  = "backup-failed" // the backup is delayed; RetryIn says when it is tried again
	EventRetentionFail = "retention-failed"
)

// Event is something a Scheduler did, for logs, metrics and status.
type Event struct {
	Time    time.Time     `json:"time"`
	Kind    string        `json:"kind"`
	Job     string        `json:"job"`
	Target  string        `json:"target"`
	Backup  string        `json:"backup,omitempty"`
	Err     string        `json:"error,omitempty"`
	RetryIn time.Duration `json:"retry_in_ns,omitempty"`
}

// JobStatus is the state of one job.
type JobStatus struct {
	Name        string    `json:"name"`
	Target      string    `json:"target"`
	Running     bool      `json:"running"`
	LastAttempt time.Time `json:"last_attempt"`
	LastSuccess time.Time `json:"last_success"`
	LastBackup  string    `json:"last_backup,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	// Failures counts consecutive failed attempts.
	Failures int       `json:"failures"`
	NextRun  time.Time `json:"next_run"`
	// Skipped counts attempts MayRun refused.
	Skipped int `json:"skipped,omitempty"`
}

// SchedulerOptions tune a Scheduler.
type SchedulerOptions struct {
	Logger *slog.Logger
	// OnEvent, when set, is called from the job's goroutine; it must not
	// block for long.
	OnEvent func(Event)
	// MinBackoff and MaxBackoff bound the retry delay after a failed
	// attempt (defaults 30 s and 1 h); it doubles on each failure.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one attempt (default 6 h).
	Timeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MayRun, when set, is asked right before every attempt; an error
	// skips the attempt (no backup, no retention, no failure event; the
	// job waits for its next time). The agent uses it to re-check that the
	// cluster log still names this node as the role's backup runner.
	MayRun func() error
}

// Scheduler runs backup jobs on their schedules. Each job has one
// goroutine that owns it: a run never overlaps the previous run of the
// same job, a failed run (target down, say) is retried with exponential
// backoff and reported as an event, and nothing ever waits for a backup:
// Start, RunNow and Status return at once.
type Scheduler struct {
	o    SchedulerOptions
	jobs []*jobState

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type jobState struct {
	job     Job
	sched   cron.Schedule
	trigger chan struct{}

	mu     sync.Mutex
	status JobStatus
}

// NewScheduler checks the jobs' schedules and returns a stopped scheduler.
func NewScheduler(jobs []Job, o SchedulerOptions) (*Scheduler, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 30 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Hour, o.MinBackoff)
	}
	if o.Timeout <= 0 {
		o.Timeout = 6 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Scheduler{o: o}
	for _, j := range jobs {
		sc, err := cron.ParseStandard(j.Schedule)
		if err != nil {
			return nil, fmt.Errorf("backup job %s: schedule %q: %w", j.Name, j.Schedule, err)
		}
		s.jobs = append(s.jobs, &jobState{
			job: j, sched: sc, trigger: make(chan struct{}, 1),
			status: JobStatus{Name: j.Name, Target: j.Target},
		})
	}
	return s, nil
}

// Start starts one goroutine per job. Stop (or cancelling ctx) ends them.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, s.cancel = context.WithCancel(ctx)
	for _, js := range s.jobs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(ctx, js)
		}()
	}
}

// Stop cancels running backups and waits for the job goroutines to end.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
}

// RunNow asks job name to run as soon as it is idle; it reports whether
// the job exists. It never waits for the backup.
func (s *Scheduler) RunNow(name string) bool {
	for _, js := range s.jobs {
		if js.job.Name == name {
			select {
			case js.trigger <- struct{}{}:
			default: // already pending
			}
			return true
		}
	}
	return false
}

// Status returns a copy of every job's status.
func (s *Scheduler) Status() []JobStatus {
	out := make([]JobStatus, 0, len(s.jobs))
	for _, js := range s.jobs {
		js.mu.Lock()
		out = append(out, js.status)
		js.mu.Unlock()
	}
	return out
}

func (js *jobState) update(f func(*JobStatus)) {
	js.mu.Lock()
	f(&js.status)
	js.mu.Unlock()
}

// loop owns one job: wait for its next time (or a RunNow), run it, and
// retry with backoff until it succeeds.
func (s *Scheduler) loop(ctx context.Context, js *jobState) {
	for {
		next := js.sched.Next(s.o.Now())
		js.update(func(st *JobStatus) { st.NextRun = next })
		timer := time.NewTimer(next.Sub(s.o.Now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-js.trigger:
			timer.Stop()
		}
		backoff := s.o.MinBackoff
		for {
			if s.o.MayRun != nil {
				if err := s.o.MayRun(); err != nil {
					s.o.Logger.Info("backup skipped", "job", js.job.Name, "reason", err)
					js.update(func(st *JobStatus) { st.Skipped++ })
					break
				}
			}
			err := s.runOnce(ctx, js)
			if err == nil || ctx.Err() != nil {
				break
			}
			js.update(func(st *JobStatus) { st.NextRun = s.o.Now().Add(backoff) })
			s.emit(Event{Kind: EventBackupFailed, Job: js.job.Name, Target: js.job.Target, Err: err.Error(), RetryIn: backoff})
			retry := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				retry.Stop()
				return
			case <-retry.C:
			case <-js.trigger:
				retry.Stop()
			}
			backoff = min(2*backoff, s.o.MaxBackoff)
		}
	}
}

// runOnce makes one backup of the job and applies its retention.
func (s *Scheduler) runOnce(ctx context.Context, js *jobState) error {
	j := js.job
	js.update(func(st *JobStatus) { st.Running, st.LastAttempt = true, s.o.Now() })
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	info, err := func() (BackupInfo, error) {
		o := j.Options
		if o.Logger == nil {
			o.Logger = s.o.Logger
		}
		t, err := OpenTarget(ctx, j.Target, o)
		if err != nil {
			return BackupInfo{}, err
		}
		defer t.Close()
		info, err := Backup(ctx, j.Dir, t)
		if err != nil {
			return info, err
		}
		if j.KeepLast > 0 || j.KeepDaily > 0 {
			if _, err := ApplyRetention(ctx, t, j.KeepLast, j.KeepDaily, s.o.Now(), s.o.Logger); err != nil {
				// The backup itself is stored; retention runs again next time.
				s.emit(Event{Kind: EventRetentionFail, Job: j.Name, Target: j.Target, Backup: info.ID, Err: err.Error()})
			}
		}
		return info, nil
	}()
	js.update(func(st *JobStatus) {
		st.Running = false
		if err != nil {
			st.Failures++
			st.LastError = err.Error()
			return
		}
		st.Failures, st.LastError = 0, ""
		st.LastSuccess, st.LastBackup = s.o.Now(), info.ID
	})
	if err == nil {
		s.emit(Event{Kind: EventBackupDone, Job: j.Name, Target: j.Target, Backup: info.ID})
	}
	return err
}

func (s *Scheduler) emit(e Event) {
	e.Time = s.o.Now()
	switch e.Kind {
	case EventBackupDone:
		s.o.Logger.Info("backup done", "job", e.Job, "target", e.Target, "backup", e.Backup)
	default:
		s.o.Logger.Warn("backup delayed", "job", e.Job, "target", e.Target, "kind", e.Kind, "err", e.Err, "retry_in", e.RetryIn)
	}
	if s.o.OnEvent != nil {
		s.o.OnEvent(e)
	}
}
