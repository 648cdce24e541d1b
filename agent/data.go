package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hactl/hactl/cluster"
	"github.com/hactl/hactl/data"
	"github.com/hactl/hactl/lang"
)

// DataPort is the TCP port, on the node's address, of the replication
// server (data.Server) of the role's first data block; the n-th block
// (declaration order, from 0) listens on DataPort+n.
const DataPort = 7490

// ErrDataNotReady is wrapped by a run that did not converge because the
// role's data is not in place yet (no replica answered and no backup could
// be restored): the role's services are not started from nothing. It is
// not the configuration's fault, so the commit is not refused.
var ErrDataNotReady = errors.New("data not ready")

// dataRetry is how soon a run that waited for data is tried again.
const dataRetry = 2 * time.Second

// Data states.
const (
	DataWaiting = "waiting" // no source yet; services not started
	DataReady   = "ready"   // restored (or kept, or new) and served to peers
)

// DataStatus is one data block as GET /v1/status reports it.
type DataStatus struct {
	Name  string `json:"name"` // role/data
	Dir   string `json:"dir"`
	Mode  string `json:"mode"`
	State string `json:"state"`
	// Serving is the replication server's address once the data is ready.
	Serving string `json:"serving,omitempty"`
	// Restore says where the data came from and how old it was (RPO).
	Restore *data.BootstrapReport `json:"restore,omitempty"`
	// Error is the last failed attempt to put the data in place.
	Error string `json:"error,omitempty"`
	// BackupRunner is true on the one node of the role that runs the
	// backup schedule (the lowest live slot); Backups are its jobs.
	BackupRunner bool             `json:"backup_runner"`
	Backups      []data.JobStatus `json:"backups,omitempty"`
}

// DataEvent is something the data wiring did (restore, wait, backup).
type DataEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // data-restored, data-waiting, backup-done, backup-failed, ...
	Data    string    `json:"data"`
	Message string    `json:"message"`
}

// DataManager puts a role's data in place before its services start and
// keeps it served and backed up:
//
//   - Prepare (before every converge) restores each data directory that
//     is empty with data.Bootstrap: from a live replica of the role, else
//     the newest verified backup, else empty only on a new cluster (the
//     node is generation 1 and every backup target is reachable and
//     empty); otherwise it returns ErrDataNotReady and the run waits;
//   - once a directory is ready it is served to peers (mutual TLS from the
//     cluster CA) on DataPort: never before, so a rebuilt node that is
//     still empty cannot be mistaken for a source;
//   - async blocks push to the other replicas on their interval (sync
//     blocks are written by the service itself, e.g. the mail service's
//     acknowledged peer copy);
//   - the backup schedule (data.Scheduler) runs on the lowest live slot of
//     the role only, so a target is not written twice.
//
// Prepare must be called from one goroutine (the agent loop); Status and
// Events are safe from any goroutine. Close stops every goroutine it
// started.
type DataManager struct {
	id             Identity
	log            *slog.Logger
	srvTLS, cliTLS *tls.Config
	// Record, when set, also writes events to the cluster's history (the
	// control plane; it fails when this node is not the leader).
	Record func(kind, node, msg string) error
	// LeaderAPI, when set, returns the base URL of the raft leader's local
	// API ("http://10.0.0.5:7480"), or "" when the leader is unknown or is
	// this node. An event Record could not write is POSTed to the leader's
	// /v1/events instead (agent.New sets it from the control plane).
	LeaderAPI func() string
	// Log, when set, is the control plane whose log names each role's
	// backup runner (agent.New sets it); without it the lowest live slot
	// in the node's own view runs the backups.
	Log RunnerLog
	// Retry, when set, asks for another Prepare soon (agent.New sets the
	// agent's Notify): called, after runnerRetry, when this node should
	// run its role's backups but the log could not name it yet (no quorum,
	// no leader).
	Retry func()
	// MinBackoff is the first retry delay of a failed backup (default 5 s).
	MinBackoff time.Duration
	// PeerGrace is how long a rebuilt node (generation 2 and up) tries
	// only live replicas before it considers backups (default 10 s): at
	// boot its view of the cluster may not list the surviving replica
	// yet, and an older backup must not win over a live copy.
	PeerGrace time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// evq holds events on their way to the cluster history; one goroutine
	// (deliverEvents) drains it, so a slow or absent leader never blocks
	// the data path.
	evq chan DataEvent
	hc  *http.Client

	// Owned by the Prepare goroutine.
	blocks  map[string]*dataBlock
	sched   *data.Scheduler
	jobsKey string

	mu      sync.Mutex
	members map[string][]lang.Member // the view of the last Prepare
	status  map[string]DataStatus
	order   []string
	events  []DataEvent
}

type dataBlock struct {
	dir      string
	ready    bool
	firstTry time.Time          // first bootstrap attempt
	lastErr  string             // of the last attempt, to report each new reason once
	stop     context.CancelFunc // the server and push loop
}

// NewDataManager builds the data wiring of a node from its cluster CA
// (SecretsDir/ca.crt and ca.key): it issues the node a replication
// certificate for its name and address. It returns ErrNoControlPlane when
// the CA is absent (the node then runs without data wiring).
func NewDataManager(cfg Config, id Identity, log *slog.Logger) (*DataManager, error) {
	cfg = cfg.WithDefaults()
	secrets, err := underRoot(id.Root, cfg.SecretsDir)
	if err != nil {
		return nil, err
	}
	caCert, err1 := os.ReadFile(filepath.Join(secrets, SecretCACert))
	caKey, err2 := os.ReadFile(filepath.Join(secrets, SecretCAKey))
	if errors.Is(err1, fs.ErrNotExist) || errors.Is(err2, fs.ErrNotExist) {
		return nil, ErrNoControlPlane
	}
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("node %s: cluster ca: %w", id.Name, err)
	}
	ca, err := cluster.LoadCA(caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", id.Name, filepath.Join(secrets, SecretCACert), err)
	}
	addr, err := netip.ParseAddr(id.Address)
	if err != nil {
		return nil, fmt.Errorf("node %s: address %q: %w", id.Name, id.Address, err)
	}
	files, err := ca.Issue(id.Name, net.IP(addr.AsSlice()))
	if err != nil {
		return nil, fmt.Errorf("node %s: replication certificate: %w", id.Name, err)
	}
	st, ct, err := data.MutualTLS(files.CACert, files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id.Name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &DataManager{
		id: id, log: log.With("node", id.Name), srvTLS: st, cliTLS: ct, MinBackoff: 5 * time.Second, PeerGrace: 10 * time.Second,
		ctx: ctx, cancel: cancel, blocks: map[string]*dataBlock{}, status: map[string]DataStatus{},
		evq: make(chan DataEvent, eventQueue), hc: &http.Client{Timeout: 5 * time.Second},
	}
	m.wg.Add(1)
	go m.deliverEvents()
	return m, nil
}

// Prepare makes the data of the node's role ready before converge. It
// returns an error wrapping ErrDataNotReady while a data directory has no
// source; members is the cluster view (role → live members by slot).
func (m *DataManager) Prepare(ctx context.Context, lc *lang.Config, members map[string][]lang.Member) error {
	role := lc.Role(m.id.Role)
	if role == nil {
		return nil
	}
	m.mu.Lock()
	m.members = members
	m.mu.Unlock()
	var jobs []data.Job
	var waiting []string
	for i, d := range role.Data {
		name := role.Name + "/" + d.Name
		dir, err := underRoot(m.id.Root, d.Path)
		if err != nil {
			return fmt.Errorf("data %s: %w", name, err)
		}
		b := m.blocks[name]
		if b == nil || b.dir != dir {
			if b != nil && b.stop != nil {
				b.stop()
			}
			b = &dataBlock{dir: dir}
			m.blocks[name] = b
			m.setStatus(name, func(s *DataStatus) {
				*s = DataStatus{Name: name, Dir: dir, Mode: d.Mode, State: DataWaiting}
			})
		}
		if !b.ready {
			if err := m.bootstrap(ctx, name, d, b, DataPort+i, members[role.Name]); err != nil {
				waiting = append(waiting, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			m.serve(name, d, b, DataPort+i, role.Name)
		}
		for _, j := range data.JobsFor(role.Name, d, "") {
			j.Dir, j.Target = dir, m.targetURL(j.Target)
			jobs = append(jobs, j)
		}
	}
	// Only a role with backups has a runner to name in the log.
	runner := len(waiting) == 0 && len(jobs) > 0 && m.backupRunner(ctx, role.Name, members[role.Name])
	m.schedule(jobs, runner, role.Name)
	if len(waiting) > 0 {
		return fmt.Errorf("%w: %s", ErrDataNotReady, strings.Join(waiting, "; "))
	}
	return nil
}

// bootstrap puts one data directory in place, or says why it cannot.
func (m *DataManager) bootstrap(ctx context.Context, name string, d lang.Data, b *dataBlock, port int, members []lang.Member) error {
	if ents, err := os.ReadDir(b.dir); err == nil && len(ents) > 0 {
		// The node restarted rather than being rebuilt: its data stays.
		rep := &data.BootstrapReport{Name: name, Kind: data.SourceLocal, Source: "local data kept (directory not empty)"}
		m.ready(name, b, rep)
		return nil
	}
	peers := peerAddrs(members, m.id.Name, port)
	if b.firstTry.IsZero() {
		b.firstTry = time.Now()
	}
	// A rebuilt node tries replicas only, for a while: its view may not
	// list the surviving replica yet.
	replicasOnly := m.id.Generation > 1 && time.Since(b.firstTry) < m.PeerGrace
	var targets []data.Target
	allOpen := true
	for _, bk := range d.Backups {
		if replicasOnly {
			break
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		t, err := data.OpenTarget(octx, m.targetURL(bk.Target), data.TargetOptions{HostKey: bk.HostKey, Logger: m.log})
		cancel()
		if err != nil {
			allOpen = false
			m.log.Warn("backup target unavailable for restore", "data", name, "target", bk.Target, "err", err)
			continue
		}
		defer t.Close()
		targets = append(targets, t)
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := data.Bootstrap(bctx, data.BootstrapSpec{
		Name: name, Dir: b.dir, TLS: m.cliTLS, Logger: m.log,
		NewCluster: m.id.Generation <= 1 && allOpen && !replicasOnly,
	}, peers, targets)
	if err != nil && replicasOnly {
		err = fmt.Errorf("%w; backups are considered %s after the first attempt", err, m.PeerGrace)
	}
	if err != nil {
		m.setStatus(name, func(s *DataStatus) { s.State, s.Error = DataWaiting, err.Error() })
		if err.Error() == b.lastErr {
			return err
		}
		b.lastErr = err.Error()
		m.event("data-waiting", name, fmt.Sprintf("%s on %s waits for a source; services not started: %v", name, m.id.Name, err))
		return err
	}
	m.ready(name, b, &rep)
	return nil
}

// StatePrefix starts the path of a dir:// backup target that lives in the
// local provider's state directory: on a local node (root other than "/",
// at <state>/<cluster>/nodes/<machine>/root) "dir:///@state/blog-backups"
// is <state>/blog-backups, outside every node, so that two local clusters
// (or two test runs) never share a target. On a machine it is left as is.
const StatePrefix = "/@state/"

func (m *DataManager) targetURL(u string) string {
	rest, ok := strings.CutPrefix(u, "dir://"+StatePrefix)
	if !ok || m.id.Root == "/" {
		return u
	}
	state := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(m.id.Root))))
	return "dir://" + filepath.Join(state, filepath.FromSlash(rest))
}

// peerAddrs are the replication addresses ("name=host:port") of the
// members other than self.
func peerAddrs(members []lang.Member, self string, port int) []string {
	var out []string
	for _, mb := range members {
		if mb.Name != self {
			out = append(out, mb.Name+"="+net.JoinHostPort(mb.Address, strconv.Itoa(port)))
		}
	}
	return out
}

func (m *DataManager) ready(name string, b *dataBlock, rep *data.BootstrapReport) {
	b.ready = true
	m.setStatus(name, func(s *DataStatus) { s.State, s.Error, s.Restore = DataReady, "", rep })
	msg := fmt.Sprintf("%s on %s from %s", name, m.id.Name, rep.Source)
	if rep.Kind == data.SourceBackup {
		msg += fmt.Sprintf(", %s old (data written after it is lost)", rep.Age.Round(time.Millisecond))
	}
	if rep.Files > 0 || rep.Kind != data.SourceLocal {
		msg += fmt.Sprintf(", %d files", rep.Files)
	}
	m.event("data-restored", name, msg)
}

// serve starts the replication server of a ready block and, for async
// blocks, its push loop.
func (m *DataManager) serve(name string, d lang.Data, b *dataBlock, port int, role string) {
	addr := net.JoinHostPort(m.id.Address, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		m.setStatus(name, func(s *DataStatus) { s.Error = fmt.Sprintf("replication server %s: %v", addr, err) })
		m.log.Error("replication server", "data", name, "addr", addr, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	b.stop = cancel
	srv := data.NewServer(b.dir, m.log)
	var rp *data.Replicator
	if d.Mode == lang.ReplicationAsync {
		rp = data.NewReplicator(data.ReplicatorOptions{Dir: b.dir, Mode: d.Mode, Interval: d.Interval, TLS: m.cliTLS, Logger: m.log,
			Peers: func() []string {
				m.mu.Lock()
				defer m.mu.Unlock()
				return peerAddrs(m.members[role], m.id.Name, port)
			}})
		srv.Deleted = rp.Deleted
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := srv.Serve(ctx, ln, m.srvTLS); err != nil {
			m.log.Error("replication server stopped", "data", name, "err", err)
		}
	}()
	if rp != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer rp.Close()
			rp.Run(ctx)
		}()
	}
	m.setStatus(name, func(s *DataStatus) { s.Serving = addr })
	m.log.Info("serving data to replicas", "data", name, "addr", addr, "mode", d.Mode)
}

// isLowestSlot reports whether self is the live member of its role with
// the lowest slot (members are ordered by slot).
func isLowestSlot(members []lang.Member, self Identity) bool {
	return len(members) > 0 && members[0].Name == self.Name
}

// schedule runs the backup jobs on this node when it is the runner, and
// stops them otherwise; a change of the jobs restarts the scheduler.
func (m *DataManager) schedule(jobs []data.Job, runner bool, role string) {
	key := ""
	if runner {
		key = fmt.Sprintf("%+v", jobs)
	}
	if key == m.jobsKey {
		return
	}
	if old := m.sched; old != nil {
		old.Stop()
		m.mu.Lock()
		m.sched = nil
		m.mu.Unlock()
		m.log.Info("backup schedule stopped on this node")
	}
	m.jobsKey = key
	if runner && len(jobs) > 0 {
		s, err := data.NewScheduler(jobs, data.SchedulerOptions{Logger: m.log, MinBackoff: m.MinBackoff, OnEvent: m.backupEvent,
			MayRun: func() error { return m.stillRunner(role) }})
		if err != nil {
			m.log.Error("backup schedule", "err", err)
			m.jobsKey = ""
			return
		}
		s.Start(m.ctx)
		// A first backup at once: a role that loses every replica before
		// the first scheduled run still has one to restore from.
		for _, j := range jobs {
			s.RunNow(j.Name)
		}
		m.mu.Lock()
		m.sched = s
		m.mu.Unlock()
		m.log.Info("backup schedule started on this node (lowest live slot)", "jobs", len(jobs))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, st := range m.status {
		st.BackupRunner = m.sched != nil
		m.status[n] = st
	}
}

func (m *DataManager) backupEvent(e data.Event) {
	msg := fmt.Sprintf("%s to %s", e.Job, e.Target)
	switch {
	case e.Backup != "" && e.Err == "":
		msg += ": backup " + e.Backup
	case e.Err != "":
		msg += ": " + e.Err
		if e.RetryIn > 0 {
			msg += fmt.Sprintf("; retried in %s (services keep running)", e.RetryIn)
		}
	}
	name := e.Job
	if i := strings.LastIndexByte(name, '/'); i > 0 {
		name = name[:i]
	}
	m.event(e.Kind, name, msg)
}

func (m *DataManager) setStatus(name string, f func(*DataStatus)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.status[name]
	if !ok {
		m.order = append(m.order, name)
	}
	f(&st)
	m.status[name] = st
}

// maxDataEvents bounds the events kept for /v1/status.
const maxDataEvents = 50

// event records e locally (Events, /v1/status), logs it, and offers it to
// the cluster's history. Backup events repeat on a schedule, so only
// failures and restores go to the cluster history.
func (m *DataManager) event(kind, name, msg string) {
	e := DataEvent{Time: time.Now().UTC(), Kind: kind, Data: name, Message: msg}
	m.mu.Lock()
	m.events = append(m.events, e)
	if n := len(m.events); n > maxDataEvents {
		m.events = append([]DataEvent{}, m.events[n-maxDataEvents:]...)
	}
	m.mu.Unlock()
	if kind == data.EventBackupDone {
		return // the scheduler logged it
	}
	if kind != data.EventBackupFailed {
		m.log.Info(msg, "event", kind, "data", name)
	}
	select {
	case m.evq <- e:
	default:
		m.log.Warn("data event not sent to the cluster history: queue full", "event", kind, "data", name)
	}
}

// Delivery of data events to the cluster history: at most eventQueue
// waiting, each tried recordAttempts times, recordBackoff doubling between
// attempts (about 30 s in all), then dropped with a warning (it stays in
// /v1/status and the log). Delivery is at least once: a POST whose answer
// is lost is sent again.
const (
	eventQueue     = 64
	recordAttempts = 5
)

var recordBackoff = time.Second

// deliverEvents owns the delivery of queued events until Close.
func (m *DataManager) deliverEvents() {
	defer m.wg.Done()
	for {
		var e DataEvent
		select {
		case <-m.ctx.Done():
			return
		case e = <-m.evq:
		}
		wait := recordBackoff
		for attempt := 1; ; attempt++ {
			err := m.record(e)
			if err == nil {
				break
			}
			if attempt == recordAttempts {
				m.log.Warn("data event not in the cluster history", "event", e.Kind, "data", e.Data, "attempts", attempt, "err", err)
				break
			}
			m.log.Debug("data event not recorded yet", "event", e.Kind, "err", err)
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
}

// record writes e to the cluster history: through Record on the leader,
// else by POSTing it to the leader's agent API.
func (m *DataManager) record(e DataEvent) error {
	if m.Record == nil && m.LeaderAPI == nil {
		return nil // no control plane: the event stays local
	}
	var errs []error
	if m.Record != nil {
		err := m.Record(e.Kind, m.id.Name, e.Message)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if m.LeaderAPI != nil {
		if base := m.LeaderAPI(); base == "" {
			errs = append(errs, errors.New("no leader to forward to"))
		} else if err := m.postEvent(base, e); err != nil {
			errs = append(errs, err)
		} else {
			return nil
		}
	}
	return errors.Join(errs...)
}

// EventPost is the body of POST /v1/events: a data event of node for the
// cluster history.
type EventPost struct {
	Kind    string `json:"kind"`
	Node    string `json:"node"`
	Message string `json:"message"`
}

func (m *DataManager) postEvent(base string, e DataEvent) error {
	b, err := json.Marshal(EventPost{Kind: e.Kind, Node: m.id.Name, Message: e.Message})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("forward event to the leader: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("forward event to the leader %s: %s: %s", base, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// maxEventPost bounds the body of POST /v1/events.
const maxEventPost = 8 << 10

// EventRecorder is what POST /v1/events needs of the control plane
// (*cluster.Node): Record appends to the replicated history and fails on a
// node that is not the leader.
type EventRecorder interface {
	Record(kind, node, msg string) error
}

// serveRecordEvent is POST /v1/events: on the leader, append a data event
// forwarded by another node (an EventPost) to the cluster history. Only
// data kinds ("data-*", "backup-*") are accepted. 421 on a node that is
// not the leader, 404 without a control plane.
func serveRecordEvent(c ControlPlane) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec, ok := c.(EventRecorder)
		if c == nil || !ok {
			http.Error(w, "this node runs without the control plane", http.StatusNotFound)
			return
		}
		var ev EventPost
		if err := json.NewDecoder(io.LimitReader(r.Body, maxEventPost)).Decode(&ev); err != nil {
			http.Error(w, "event: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !strings.HasPrefix(ev.Kind, "data-") && !strings.HasPrefix(ev.Kind, "backup-") || ev.Node == "" {
			http.Error(w, fmt.Sprintf("event kind %q from %q: only data events of a named node are accepted", ev.Kind, ev.Node), http.StatusBadRequest)
			return
		}
		if st := c.Status(); !st.IsLeader {
			http.Error(w, "not the leader (leader: "+st.Leader+")", http.StatusMisdirectedRequest)
			return
		}
		if err := rec.Record(ev.Kind, ev.Node, ev.Message); err != nil {
			http.Error(w, "record event: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// leaderAPIURL returns the base URL of the leader's local API as c sees
// it (the leader's gossip address, API port port), or "" when the leader
// is unknown, absent from the view, or c's own node.
func leaderAPIURL(c ControlPlane, port int) string {
	s := c.Status()
	if s.Leader == "" || s.IsLeader {
		return ""
	}
	name, gen, _ := strings.Cut(s.Leader, "@")
	for _, mb := range s.Members {
		if mb.Name == name && strconv.Itoa(mb.Generation) == gen && mb.Addr.IsValid() {
			return "http://" + net.JoinHostPort(mb.Addr.Addr().String(), strconv.Itoa(port))
		}
	}
	return ""
}

// Status returns every data block's status, with the backup jobs when
// this node runs them.
func (m *DataManager) Status() []DataStatus {
	m.mu.Lock()
	out := make([]DataStatus, 0, len(m.order))
	for _, n := range m.order {
		out = append(out, m.status[n])
	}
	sched := m.sched
	m.mu.Unlock()
	if sched == nil {
		return out
	}
	if err := m.stillRunner(m.id.Role); err != nil {
		// The log moved the schedule away since the last Prepare: its
		// attempts are skipped until then.
		for i := range out {
			out[i].BackupRunner = false
		}
	}
	jobs := sched.Status()
	for i := range out {
		for _, j := range jobs {
			if strings.HasPrefix(j.Name, out[i].Name+"/") {
				out[i].Backups = append(out[i].Backups, j)
			}
		}
	}
	return out
}

// Events returns the data events of this node, oldest first.
func (m *DataManager) Events() []DataEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]DataEvent{}, m.events...)
}

// Close stops the replication servers, push loops and backups, and waits
// for them.
func (m *DataManager) Close() {
	m.cancel()
	m.mu.Lock()
	sched := m.sched
	m.mu.Unlock()
	if sched != nil {
		sched.Stop()
	}
	m.wg.Wait()
}

// The backup runner of a role is the node the cluster log names under
// RunnerKey(role) (cluster.Node.SetPrimary/Primary), not whoever the
// node's own gossip view makes the lowest live slot: after a partition
// two nodes can each see themselves as the lowest slot, but the log names
// one. A node runs the schedule only while it has quorum and the applied
// log names it; every attempt re-checks (data.SchedulerOptions.MayRun).
// The lowest live slot in a node's own view claims the role; the leader
// grants the claim only when the log names nobody, or a node that is not
// alive in the leader's view, or a live node of a higher slot: in steady
// state the lowest live slot runs the backups, and a node that merely
// lost sight of the runner cannot take them over.

// RunnerLog is what the choice of the backup runner needs of the control
// plane (*cluster.Node).
type RunnerLog interface {
	Status() cluster.Status
	Primary(key string) string
	SetPrimary(key, node string) error
}

// RunnerKey is the key under which the log names role's backup runner.
func RunnerKey(role string) string { return "backup-runner/" + role }

// runnerApplied is how long a claim waits for the local log to name this
// node; runnerRetry is when an unsettled claim is tried again.
const (
	runnerApplied = 3 * time.Second
	runnerRetry   = 5 * time.Second
)

// backupRunner reports whether this node runs role's backups, claiming
// the role in the log when it should.
func (m *DataManager) backupRunner(ctx context.Context, role string, members []lang.Member) bool {
	if m.Log == nil {
		return isLowestSlot(members, m.id)
	}
	key := RunnerKey(role)
	st := m.Log.Status()
	named := m.Log.Primary(key)
	if st.Quorum && !st.SelfFenced && named == m.id.Name {
		return true
	}
	if !isLowestSlot(members, m.id) {
		return false
	}
	retry := func() bool {
		if m.Retry != nil {
			time.AfterFunc(runnerRetry, m.Retry)
		}
		return false
	}
	if !st.Quorum || st.SelfFenced {
		return retry()
	}
	if err := m.claimRunner(ctx, key, st); err != nil {
		m.log.Info("backup runner not claimed", "role", role, "named", named, "err", err)
		if errors.Is(err, errRunnerHeld) {
			return false // a live lower slot runs them
		}
		return retry()
	}
	deadline := time.Now().Add(runnerApplied)
	for m.Log.Primary(key) != m.id.Name {
		if time.Now().After(deadline) {
			return retry()
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.log.Info("backup runner claimed in the cluster log", "role", role, "previous", named)
	return true
}

// stillRunner is the scheduler's MayRun: nil while the applied log names
// this node and it has quorum.
func (m *DataManager) stillRunner(role string) error {
	if m.Log == nil {
		return nil
	}
	st := m.Log.Status()
	if !st.Quorum || st.SelfFenced {
		return errors.New("no quorum")
	}
	if named := m.Log.Primary(RunnerKey(role)); named != m.id.Name {
		return fmt.Errorf("the cluster log names %q as the backup runner", named)
	}
	return nil
}

// aliveMember returns the member called name when it is alive.
func aliveMember(ms []cluster.Member, name string) (cluster.Member, bool) {
	for _, mb := range ms {
		if mb.Name == name && mb.State == cluster.StateAlive {
			return mb, true
		}
	}
	return cluster.Member{}, false
}

// claimRunner asks the leader to name this node under key: directly on
// the leader, else through the leader's POST /v1/backup-runner.
func (m *DataManager) claimRunner(ctx context.Context, key string, st cluster.Status) error {
	if st.IsLeader {
		return claimOnLeader(m.Log, key, m.id.Name)
	}
	base := ""
	if m.LeaderAPI != nil {
		base = m.LeaderAPI()
	}
	if base == "" {
		return errors.New("no leader to claim from")
	}
	b, err := json.Marshal(RunnerClaim{Key: key, Node: m.id.Name})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/backup-runner", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		err := fmt.Errorf("claim at the leader %s: %s: %s", base, resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusConflict {
			err = fmt.Errorf("%w: %w", errRunnerHeld, err)
		}
		return err
	}
	return nil
}

// errRunnerHeld is returned by a claim while another live node is named.
var errRunnerHeld = errors.New("held by a live node")

// claimOnLeader names node under key unless a different node is named
// that is alive in the leader's view and not of a higher slot than node.
func claimOnLeader(l RunnerLog, key, node string) error {
	cur := l.Primary(key)
	if cur == node {
		return nil
	}
	if cur != "" {
		ms := l.Status().Members
		held, alive := aliveMember(ms, cur)
		claimant, ok := aliveMember(ms, node)
		if alive && !(ok && claimant.Role == held.Role && claimant.Slot < held.Slot) {
			return fmt.Errorf("%s: %w (%s)", key, errRunnerHeld, cur)
		}
	}
	return l.SetPrimary(key, node)
}

// RunnerClaim is the body of POST /v1/backup-runner.
type RunnerClaim struct {
	Key  string `json:"key"`
	Node string `json:"node"`
}

// serveClaimRunner is POST /v1/backup-runner: on the leader, name the
// claiming node as a role's backup runner unless another live node is
// named that is alive and not of a higher slot (409). 421 on a node that
// is not the leader.
func serveClaimRunner(c ControlPlane) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l, ok := c.(RunnerLog)
		if c == nil || !ok {
			http.Error(w, "this node runs without the control plane", http.StatusNotFound)
			return
		}
		var rc RunnerClaim
		if err := json.NewDecoder(io.LimitReader(r.Body, maxEventPost)).Decode(&rc); err != nil {
			http.Error(w, "claim: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !strings.HasPrefix(rc.Key, RunnerKey("")) || rc.Node == "" {
			http.Error(w, fmt.Sprintf("claim of %q by %q: want a backup-runner key and a node", rc.Key, rc.Node), http.StatusBadRequest)
			return
		}
		if st := c.Status(); !st.IsLeader {
			http.Error(w, "not the leader (leader: "+st.Leader+")", http.StatusMisdirectedRequest)
			return
		}
		if err := claimOnLeader(l, rc.Key, rc.Node); errors.Is(err, errRunnerHeld) {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		} else if err != nil {
			http.Error(w, "claim: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
