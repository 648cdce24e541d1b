package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/data"
)

// mailLog is what the traffic goroutine sent and got 250 for.
type mailLog struct {
	mu       sync.Mutex
	accepted map[string]time.Time // subject → when the 250 arrived
	refused  int
}

func (l *mailLog) snapshot() (map[string]time.Time, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(l.accepted))
	for k, v := range l.accepted {
		out[k] = v
	}
	return out, l.refused
}

// sendMail delivers one message over SMTP with deadlines; nil means 250.
func sendMail(addr, subject string) error {
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Mail("chaos@example.com"); err != nil {
		return err
	}
	if err := c.Rcpt("editor@blog.local"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nbody of %s\r\n", subject, subject)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// agentStatus reads a node's GET /v1/status.
func agentStatus(addr string) (agent.Status, error) {
	var st agent.Status
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(addr, "7480") + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// maildirSubjects lists the subjects of the messages in a node's Maildir.
func (e *e2e) maildirSubjects(machine string) map[string]bool {
	e.t.Helper()
	_, id, _ := strings.Cut(machine, "/")
	root := filepath.Join(e.state, "blog", "nodes", id, "root", "var", "mail", "blog")
	out := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(root, sub))
		for _, en := range ents {
			b, err := os.ReadFile(filepath.Join(root, sub, en.Name()))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if s, ok := strings.CutPrefix(strings.TrimSpace(line), "Subject: "); ok {
					out[s] = true
					break
				}
			}
		}
	}
	return out
}

// mailData waits until node name (the current machine of its slot) reports
// its maildir ready, and returns the node and its data status.
func (e *e2e) mailData(name string, gen int, timeout time.Duration) (statusNode, agent.DataStatus, agent.Status) {
	e.t.Helper()
	var n statusNode
	var ds agent.DataStatus
	var st agent.Status
	waitFor(e.t, timeout, fmt.Sprintf("%s generation %d on, passing, data ready", name, gen), func() (bool, string) {
		var ok bool
		n, ok = nodeOf(e.status(), name)
		if !ok || n.Generation != gen || n.State != "on" || n.Health != "passing" {
			return false, fmt.Sprintf("%s: %+v", name, n)
		}
		var err error
		if st, err = agentStatus(n.Address); err != nil {
			return false, err.Error()
		}
		for _, d := range st.Data {
			if d.Name == "mail/maildir" {
				ds = d
				return d.State == agent.DataReady, fmt.Sprintf("maildir %s: %s", d.State, d.Error)
			}
		}
		return false, "no mail/maildir in /v1/status"
	})
	return n, ds, st
}

// TestE2E_Blog_MailData_RebuildRestoreBackup: the mail role's data wired
// into the nodes, on local nodes with real processes:
//
//  1. a backup target that is down delays backups with an event (on the
//     lowest mail slot, which runs them) and never blocks mail;
//  2. mail-1 is destroyed (kill -9, its disk gone with the machine) while
//     a goroutine sends mail; the rebuilt mail-1 restores its Maildir from
//     mail-2 before its service starts, and every message that got 250 is
//     on both mail nodes;
//  3. both mail nodes are destroyed: the rebuilt ones restore from the
//     newest backup, and every message accepted before it is back (what
//     came after is the RPO the restore reports).
func TestE2E_Blog_MailData_RebuildRestoreBackup(t *testing.T) {
	e := newE2E(t, "blog")
	// The example's target, dir:///@state/blog-backups, is in the local
	// provider's state directory.
	backups := filepath.Join(e.state, "blog-backups")
	patch := func(file, from, to string) {
		p := filepath.Join(e.config, file)
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), from) {
			t.Fatalf("%s lacks %q (%v)", p, from, err)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	patch(filepath.Join("roles", "mail.hcl"), `"@every 1m"`, `"@every 2s"`)

	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	e.controlReady()
	mail1, d1, _ := e.mailData("mail-1", 1, 60*time.Second)
	mail2, d2, _ := e.mailData("mail-2", 1, 60*time.Second)
	t.Logf("new cluster: mail-1 from %q, mail-2 from %q", d1.Restore.Source, d2.Restore.Source)

	log := &mailLog{accepted: map[string]time.Time{}}
	var seq int
	var seqMu sync.Mutex
	send := func(addr string) bool {
		seqMu.Lock()
		seq++
		subj := fmt.Sprintf("msg-%04d", seq)
		seqMu.Unlock()
		err := sendMail(addr+":2525", subj)
		log.mu.Lock()
		defer log.mu.Unlock()
		if err != nil {
			log.refused++
			return false
		}
		log.accepted[subj] = time.Now()
		return true
	}
	waitFor(t, 30*time.Second, "SMTP 250 from mail-1", func() (bool, string) { return send(mail1.Address), "refused" })

	// 1. The backup runner is mail-1 (lowest live slot); a first backup.
	waitFor(t, 30*time.Second, "a backup by mail-1", func() (bool, string) {
		st, err := agentStatus(mail1.Address)
		if err != nil || len(st.Data) == 0 {
			return false, fmt.Sprint(err)
		}
		d := st.Data[0]
		return d.BackupRunner && len(d.Backups) == 1 && d.Backups[0].LastBackup != "", fmt.Sprintf("%+v", d)
	})
	if st, _ := agentStatus(mail2.Address); len(st.Data) == 0 || st.Data[0].BackupRunner {
		t.Errorf("mail-2 runs backups too (or reports no data): %+v", st.Data)
	}
	// Take the target down: its directory becomes a file.
	if err := os.Rename(backups, backups+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(backups, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	waitFor(t, 30*time.Second, "a backup-failed event on mail-1", func() (bool, string) {
		st, err := agentStatus(mail1.Address)
		if err != nil {
			return false, err.Error()
		}
		for _, ev := range st.DataEvents {
			if ev.Kind == data.EventBackupFailed && ev.Time.After(downAt) {
				t.Logf("event: %s", ev.Message)
				return true, ""
			}
		}
		return false, "no backup-failed event yet"
	})
	for i := range 3 {
		if !send([]string{mail1.Address, mail2.Address}[i%2]) {
			t.Errorf("mail refused while the backup target is down")
		}
	}
	if err := os.Remove(backups); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backups+".away", backups); err != nil {
		t.Fatal(err)
	}

	// 2. Destroy mail-1 while traffic flows to both mail nodes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var addrMu sync.Mutex
	addrs := []string{mail1.Address, mail2.Address}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			addrMu.Lock()
			a := addrs[i%len(addrs)]
			addrMu.Unlock()
			if !send(a) {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	stopTraffic := func() {
		if stop != nil {
			close(stop)
			wg.Wait()
			stop = nil
		}
	}
	t.Cleanup(stopTraffic)
	time.Sleep(time.Second) // some traffic before the kill (not a timing assertion)
	e.killNode(mail1.Machine)
	killed := time.Now()
	mail1, d1, _ = e.mailData("mail-1", 2, 120*time.Second)
	t.Logf("mail-1 generation 2 ready %s after the kill; data from %q (%d files)", time.Since(killed).Round(time.Millisecond), d1.Restore.Source, d1.Restore.Files)
	if d1.Restore.Kind != data.SourceReplica || d1.Restore.Peer != "mail-2" {
		t.Errorf("rebuilt mail-1 restored from %+v, want the replica mail-2", d1.Restore)
	}
	// Its restore reaches the cluster history even when mail-1 is not the
	// raft leader (a follower forwards it to the leader's agent API).
	waitFor(t, 60*time.Second, "mail-1's data-restored event in hactl events", func() (bool, string) {
		var evs struct {
			Node   string
			Events []struct{ Kind, Node, Message string }
		}
		out, code := e.run("events", "-json", e.config)
		if err := json.Unmarshal([]byte(out), &evs); code != 0 || err != nil {
			return false, fmt.Sprintf("events -json: exit %d, %v", code, err)
		}
		for _, ev := range evs.Events {
			// The rebuild's own restore (generation 1 may also have come
			// from mail-2, with another file count).
			if ev.Kind == "data-restored" && ev.Node == "mail-1" && strings.HasSuffix(ev.Message, fmt.Sprintf("from replica mail-2, %d files", d1.Restore.Files)) {
				t.Logf("in hactl events (from %s; leader %s): %s", evs.Node, e.status().Control.Leader, ev.Message)
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events, none a data-restored of mail-1 from mail-2", len(evs.Events))
	})
	addrMu.Lock()
	addrs[0] = mail1.Address
	addrMu.Unlock()
	before := len(func() map[string]time.Time { m, _ := log.snapshot(); return m }())
	waitFor(t, 30*time.Second, "250 again from both mail nodes after the rebuild", func() (bool, string) {
		m, _ := log.snapshot()
		return len(m) >= before+4, fmt.Sprintf("%d accepted", len(m))
	})
	stopTraffic()
	accepted, refused := log.snapshot()
	t.Logf("%d messages accepted, %d refused (while mail-1 was away)", len(accepted), refused)
	on1, on2 := e.maildirSubjects(mail1.Machine), e.maildirSubjects(mail2.Machine)
	for subj := range accepted {
		if !on1[subj] || !on2[subj] {
			t.Errorf("%s got 250 but is on mail-1: %v, mail-2: %v", subj, on1[subj], on2[subj])
		}
	}

	// 3. A backup that holds everything so far, a few more messages, then
	// both mail nodes destroyed. The reconciler rebuilds one slot at a
	// time and counts mail-1's rebuild in flight until the new member has
	// been up for its minimum uptime (30 s): wait for that first.
	waitFor(t, 90*time.Second, "mail-1's rebuild recorded as finished", func() (bool, string) {
		c := e.status().Control
		if c == nil {
			return false, "no control-plane status"
		}
		for _, rb := range c.Rebuilds {
			if rb.Name == "mail-1" && (rb.State == "planned" || rb.State == "running" || rb.State == "waiting") {
				return false, fmt.Sprintf("rebuild of mail-1 generation %d %s", rb.Generation, rb.State)
			}
		}
		return true, ""
	})
	var last string
	var lastAt time.Time
	waitFor(t, 60*time.Second, "a backup after the last message", func() (bool, string) {
		st, err := agentStatus(mail1.Address)
		if err != nil || len(st.Data) == 0 || len(st.Data[0].Backups) == 0 {
			return false, fmt.Sprint("no backup status from mail-1: ", err)
		}
		last = st.Data[0].Backups[0].LastBackup
		lastAt, err = data.ParseBackupID(last)
		return err == nil && lastAt.After(time.Now().Add(-time.Minute)) && len(accepted) > 0 && lastAt.After(latest(accepted)), "last backup " + last
	})
	for range 3 {
		send(mail2.Address)
	}
	e.killNode(mail1.Machine)
	e.killNode(mail2.Machine)
	killed = time.Now()
	final, _ := log.snapshot()
	mail1, d1, _ = e.mailData("mail-1", 3, 150*time.Second)
	mail2, d2, _ = e.mailData("mail-2", 2, 120*time.Second)
	t.Logf("both rebuilt %s after the kill: mail-1 from %q age %s, mail-2 from %q age %s", time.Since(killed).Round(time.Millisecond),
		d1.Restore.Source, d1.Restore.Age, d2.Restore.Source, d2.Restore.Age)
	var fromBackup *data.BootstrapReport
	for _, d := range []agent.DataStatus{d1, d2} {
		switch d.Restore.Kind {
		case data.SourceBackup:
			fromBackup = d.Restore
		case data.SourceReplica:
		default:
			t.Errorf("%s restored from %+v, want a backup or the other restored replica", d.Name, d.Restore)
		}
	}
	if fromBackup == nil {
		t.Fatalf("no rebuilt mail node restored from a backup: %+v, %+v", d1.Restore, d2.Restore)
	}
	bt, err := data.ParseBackupID(fromBackup.Backup)
	if err != nil {
		t.Fatal(err)
	}
	if bt.Before(lastAt) {
		t.Errorf("restored backup %s, older than %s that existed before the kill", fromBackup.Backup, last)
	}
	on1, on2 = e.maildirSubjects(mail1.Machine), e.maildirSubjects(mail2.Machine)
	lost := 0
	for subj, at := range final {
		if at.Before(bt) {
			if !on1[subj] || !on2[subj] {
				t.Errorf("%s (250 at %s, before backup %s) is on mail-1: %v, mail-2: %v", subj, at.Format(time.RFC3339Nano), fromBackup.Backup, on1[subj], on2[subj])
			}
		} else if !on1[subj] {
			lost++
		}
	}
	t.Logf("RPO reported by the restore: %s (backup %s); %d of %d accepted messages came after it and were lost", fromBackup.Age, fromBackup.Backup, lost, len(final))
	if !send(mail1.Address) {
		t.Errorf("mail refused after both mail nodes were restored")
	}
}

func latest(m map[string]time.Time) time.Time {
	var t time.Time
	for _, v := range m {
		if v.After(t) {
			t = v
		}
	}
	return t
}
