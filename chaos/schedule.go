package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSchedule validates a cron expression in robfig/cron/v3's standard
// syntax (five fields, or a descriptor such as @daily or @every 1h).
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return s, nil
}

// CrontabLine returns the crontab(5) line that runs command on spec. A
// five-field spec or a descriptor (@daily) is used as it is; @every has no
// crontab equivalent. Every % in command is escaped (cron reads it as a
// newline).
func CrontabLine(spec, command string) (string, error) {
	if _, err := ParseSchedule(spec); err != nil {
		return "", err
	}
	if strings.HasPrefix(spec, "@every") {
		return "", fmt.Errorf("schedule %q: @every has no crontab equivalent", spec)
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return "", fmt.Errorf("schedule %q: a time zone prefix has no portable crontab equivalent; set CRON_TZ in the crontab", spec)
	}
	// cron turns an unescaped % into a newline.
	return spec + " " + strings.ReplaceAll(command, "%", `\%`), nil
}

// Dir is a cluster's chaos state directory: <state>/<cluster>/chaos. It
// holds history.json and the kill switch file "paused".
type Dir string

func (d Dir) historyPath() string { return filepath.Join(string(d), "history.json") }
func (d Dir) pausePath() string   { return filepath.Join(string(d), "paused") }

// Pause sets the kill switch: every runner that checks Paused stops before
// its next round, and scheduled runs are skipped until Resume.
func (d Dir) Pause(reason string) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]any{"at": time.Now().UTC(), "reason": reason})
	return writeFileAtomic(d.pausePath(), append(b, '\n'))
}

// Resume clears the kill switch. Resuming what is not paused is not an error.
func (d Dir) Resume() error {
	if err := os.Remove(d.pausePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resume chaos: %w", err)
	}
	return nil
}

// Paused reports whether the kill switch is set, with its reason. An
// unreadable switch file counts as paused: fail safe.
func (d Dir) Paused() (bool, string) {
	b, err := os.ReadFile(d.pausePath())
	if errors.Is(err, os.ErrNotExist) {
		return false, ""
	}
	if err != nil {
		return true, "kill switch unreadable: " + err.Error()
	}
	var v struct {
		At     time.Time `json:"at"`
		Reason string    `json:"reason"`
	}
	if json.Unmarshal(b, &v) != nil {
		return true, "kill switch set (" + d.pausePath() + ")"
	}
	why := "paused at " + v.At.Format(time.RFC3339)
	if v.Reason != "" {
		why += ": " + v.Reason
	}
	return true, why
}

// HistoryEntry is one scheduled (or manual) run.
type HistoryEntry struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Schedule string    `json:"schedule,omitempty"`
	Stage    int       `json:"stage"`
	Seed     uint64    `json:"seed"`
	Rounds   int       `json:"rounds"`
	Pass     bool      `json:"pass"`
	// Skipped says why the run did not happen (paused, refused).
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
	Report  string `json:"report,omitempty"` // directory of report.json and report.html
	// State and Leader are set for runs the cluster's leader hosted (the
	// cluster log's record): running, done, skipped or interrupted, and the
	// leader's server id. Empty for runs of this machine's history file.
	State  string `json:"state,omitempty"`
	Leader string `json:"leader,omitempty"`
}

type historyFile struct {
	Runs []HistoryEntry `json:"runs"`
}

// History reads the history, oldest first (empty when none).
func (d Dir) History() ([]HistoryEntry, error) {
	b, err := os.ReadFile(d.historyPath())
	if errors.Is(err, os.ErrNotExist) {
		return []HistoryEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read chaos history: %w", err)
	}
	var h historyFile
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", d.historyPath(), err)
	}
	if h.Runs == nil {
		h.Runs = []HistoryEntry{}
	}
	return h.Runs, nil
}

// historyKeep bounds the history file.
const historyKeep = 500

// Record appends e to the history under an exclusive flock, so runs from
// several processes do not lose each other's entries.
func (d Dir) Record(e HistoryEntry) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return err
	}
	lf, err := os.OpenFile(filepath.Join(string(d), ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock chaos history: %w", err)
	}
	defer syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	runs, err := d.History()
	if err != nil {
		return err
	}
	runs = append(runs, e)
	if len(runs) > historyKeep {
		runs = runs[len(runs)-historyKeep:]
	}
	b, err := json.MarshalIndent(historyFile{Runs: runs}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.historyPath(), append(b, '\n'))
}

// Scheduler runs chaos on a cron schedule. It is built so that whoever
// hosts it (the CLI in the foreground today, the cluster leader once the
// control plane is wired into the agent) calls Run and cancels ctx to stop
// it; it owns no goroutine beyond Run's.
type Scheduler struct {
	Spec string // cron expression (ParseSchedule)
	Dir  Dir
	// Chaos performs one chaos run (its report directory is for the
	// history). It is called only while the kill switch is off.
	Chaos  func(ctx context.Context, at time.Time) (rep *Report, reportDir string, err error)
	Logger *slog.Logger
	// Now is the clock (nil = time.Now); tests may set it.
	Now func() time.Time
}

// Run waits for each scheduled time, checks the kill switch, runs chaos and
// records the outcome in the history, until ctx is done. It returns nil
// when ctx is cancelled, an error when the schedule is invalid.
func (s *Scheduler) Run(ctx context.Context) error {
	sched, err := ParseSchedule(s.Spec)
	if err != nil {
		return err
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	for {
		next := sched.Next(now())
		log.Info("chaos scheduled", "next", next, "schedule", s.Spec)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		e := HistoryEntry{Started: now().UTC(), Schedule: s.Spec}
		if p, why := s.Dir.Paused(); p {
			e.Skipped, e.Finished = "kill switch: "+why, now().UTC()
			log.Warn("scheduled chaos skipped", "reason", why)
		} else {
			rep, dir, err := s.Chaos(ctx, next)
			e.Finished, e.Report = now().UTC(), dir
			if rep != nil {
				e.Stage, e.Seed, e.Rounds, e.Pass = rep.Stage, rep.Seed, len(rep.Rounds), rep.Pass
				if rep.Refused != "" {
					e.Skipped = "refused: " + rep.Refused
				}
				if rep.Paused != "" {
					e.Skipped = "kill switch: " + rep.Paused
				}
			}
			if err != nil {
				e.Error, e.Pass = err.Error(), false
			}
		}
		if err := s.Dir.Record(e); err != nil {
			log.Error("record chaos history", "err", err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}
