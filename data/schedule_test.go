package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventLog collects scheduler events for tests.
type eventLog struct {
	mu sync.Mutex
	ev []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.ev = append(l.ev, e); l.mu.Unlock() }

func (l *eventLog) has(kind string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.ev {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// waitFor polls cond until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestScheduler_TargetDown_DelaysAndRetries(t *testing.T) {
	srv := startSSHServer(t, "127.0.0.1:0")
	store := t.TempDir()
	srv.Stop() // the target is down
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"mail/1": "hello"})
	var log eventLog
	job := Job{
		Name: "mail/maildir/offsite", Dir: dir, Schedule: "@every 1h",
		Target:  "sftp://backup@" + srv.Addr + store,
		Options: TargetOptions{HostKey: srv.HostKey, KeyFile: srv.KeyFile},
	}
	s, err := NewScheduler([]Job{job}, SchedulerOptions{OnEvent: log.add, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	s.RunNow(job.Name)
	waitFor(t, "a backup-failed event", func() bool { return log.has(EventBackupFailed) })
	st := s.Status()[0]
	if st.Failures == 0 || st.LastError == "" || !st.LastSuccess.IsZero() {
		t.Errorf("status while the target is down = %+v", st)
	}
	// The service keeps writing (replicated, acknowledged) while backups
	// are delayed.
	ca := newTestCA(t)
	peer := startReplica(t, ca, "mail-2", "127.0.0.1:0")
	_, client := ca.tls(t, "mail-1")
	r := NewReplicator(ReplicatorOptions{Dir: dir, Mode: "sync", TLS: client, Peers: func() []string { return []string{peer.addr} }})
	t.Cleanup(r.Close)
	if err := r.Write(context.Background(), "mail/2", []byte("written during the outage")); err != nil {
		t.Fatalf("write while the backup target is down: %v", err)
	}

	srv.Restart(t)
	waitFor(t, "a backup-done event after the target came back", func() bool { return log.has(EventBackupDone) })
	st = s.Status()[0]
	if st.Failures != 0 || st.LastBackup == "" {
		t.Errorf("status after recovery = %+v", st)
	}
	tg, err := NewDirTarget(store)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := Restore(context.Background(), tg, RestoreOptions{Dir: dst}); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dst); got["mail/2"] != "written during the outage" {
		t.Errorf("restored tree = %v, want mail/2 from the outage", got)
	}
}

func TestNewScheduler_BadSchedule(t *testing.T) {
	_, err := NewScheduler([]Job{{Name: "x", Schedule: "every day"}}, SchedulerOptions{})
	if err == nil {
		t.Fatal("bad schedule accepted")
	}
}

// MayRun is asked before every attempt: refused, nothing is written to
// the target and no failure is reported; allowed again, the next run backs
// up.
func TestScheduler_MayRun_SkipsAttempt(t *testing.T) {
	store := t.TempDir()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"f": "x"})
	var log eventLog
	var allowed atomic.Bool
	job := Job{Name: "mail/maildir/offsite", Dir: dir, Schedule: "@every 1h", Target: "dir://" + store}
	s, err := NewScheduler([]Job{job}, SchedulerOptions{OnEvent: log.add, MayRun: func() error {
		if !allowed.Load() {
			return errors.New("the log names mail-2")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	t.Cleanup(s.Stop)
	s.RunNow(job.Name)
	waitFor(t, "the attempt to be skipped", func() bool { return s.Status()[0].Skipped == 1 })
	if ents, _ := os.ReadDir(store); len(ents) != 0 || log.has(EventBackupFailed) || log.has(EventBackupDone) {
		t.Fatalf("a refused attempt wrote %d entries to the target / emitted events %+v", len(ents), log.ev)
	}
	allowed.Store(true)
	s.RunNow(job.Name)
	waitFor(t, "a backup once allowed", func() bool { return log.has(EventBackupDone) })
}
