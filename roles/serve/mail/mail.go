package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/hactl/hactl/roles/serve"
)

// Config configures a Server. Zero values take the defaults of
// DefaultConfig.
type Config struct {
	// Listen is the SMTP address; ignored when Listener is set.
	Listen   string
	Listener net.Listener
	// HTTPListen is the address of the message and replication endpoint;
	// ignored when HTTPListener is set. Required: peers replicate to it.
	HTTPListen   string
	HTTPListener net.Listener
	// Domain is the one mail domain accepted; other recipients get 550.
	Domain string
	// Maildir is the directory holding tmp/, new/ and cur/.
	Maildir string
	// MaxSize is the largest message accepted, in bytes (552 above it).
	MaxSize int64
	// Peers are URL-or-FILE specs (see serve.List) of the other mail
	// nodes' HTTP endpoints, e.g. http://127.0.2.2:8025.
	Peers []string
	// MinAcks is how many peers must acknowledge a message before 250.
	MinAcks int
	// ReplicateTimeout bounds the wait for peer acknowledgements.
	ReplicateTimeout time.Duration
	// Token is the cluster token: it authenticates HTTP clients and this
	// node to its peers. Required.
	Token string
	// Hostname names this node in the greeting and Received headers.
	Hostname string
	// Log receives refusals, deliveries and replication results; nil
	// discards. Message contents and the token are never logged.
	Log *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxSize:          10 << 20,         // 10 MiB, postfix's default message_size_limit
		MinAcks:          1,                // two replicas: this node and one peer
		ReplicateTimeout: 10 * time.Second, // well below SMTP clients' DATA timeout (10 min, RFC 5321)
	}
}

// Server is the mail service. Create it with New and start it with Run.
type Server struct {
	cfg    Config
	log    *slog.Logger
	md     *maildir
	peers  *serve.List
	smtp   *smtp.Server
	ln     net.Listener
	httpLn net.Listener
	client *http.Client
	origin string // random per process: refuses replication to itself

	wg sync.WaitGroup // replication sends that outlive their SMTP answer
}

// New validates cfg, creates the Maildir and opens both listeners.
func New(cfg Config) (*Server, error) {
	def := DefaultConfig()
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = def.MaxSize
	}
	if cfg.MinAcks <= 0 {
		cfg.MinAcks = def.MinAcks
	}
	if cfg.ReplicateTimeout <= 0 {
		cfg.ReplicateTimeout = def.ReplicateTimeout
	}
	cfg.Domain = strings.ToLower(strings.TrimSpace(cfg.Domain))
	switch {
	case cfg.Domain == "" || strings.ContainsAny(cfg.Domain, "@ /"):
		return nil, fmt.Errorf("mail: domain %q: want a domain name such as example.org", cfg.Domain)
	case cfg.Maildir == "":
		return nil, errors.New("mail: maildir is required")
	case cfg.Token == "":
		return nil, errors.New("mail: a cluster token is required (HTTP endpoint and replication)")
	case cfg.HTTPListener == nil && cfg.HTTPListen == "":
		return nil, errors.New("mail: an HTTP address is required (peers replicate to it)")
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	peers, err := serve.NewList(cfg.Peers)
	if err != nil {
		return nil, fmt.Errorf("mail: peers: %w", err)
	}
	md, err := openMaildir(cfg.Maildir, cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	var o [8]byte
	_, _ = rand.Read(o[:])
	s := &Server{
		cfg:    cfg,
		log:    serve.Logger(cfg.Log).With("service", "mail"),
		md:     md,
		peers:  peers,
		origin: hex.EncodeToString(o[:]),
		client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}},
	}
	s.smtp = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.smtp.Domain = cfg.Hostname
	s.smtp.MaxMessageBytes = cfg.MaxSize
	s.smtp.MaxRecipients = 100
	s.smtp.ReadTimeout = 5 * time.Minute
	s.smtp.WriteTimeout = time.Minute
	s.smtp.ErrorLog = slogPrinter{s.log}

	if s.ln = cfg.Listener; s.ln == nil {
		if s.ln, err = serve.Listen(cfg.Listen); err != nil {
			return nil, fmt.Errorf("mail: smtp: %w", err)
		}
	}
	if s.httpLn = cfg.HTTPListener; s.httpLn == nil {
		if s.httpLn, err = serve.Listen(cfg.HTTPListen); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("mail: http: %w", err)
		}
	}
	return s, nil
}

// Addr is the SMTP address; HTTPAddr the HTTP endpoint's.
func (s *Server) Addr() net.Addr     { return s.ln.Addr() }
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// Run serves SMTP and HTTP until ctx is done, then shuts both down
// gracefully, waits for replication in flight and returns.
func (s *Server) Run(ctx context.Context) error {
	if n, err := s.md.sweepTmp(36 * time.Hour); err == nil && n > 0 {
		s.log.Info("removed stale unacknowledged messages from tmp/", "count", n)
	}
	s.log.Info("serving", "smtp", s.ln.Addr().String(), "http", s.httpLn.Addr().String(), "domain", s.cfg.Domain, "maildir", s.cfg.Maildir)
	defer s.log.Info("stopped", "smtp", s.ln.Addr().String())

	smtpErr := make(chan error, 1)
	go func() { smtpErr <- s.smtp.Serve(s.ln) }()
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	httpErr := make(chan error, 1)
	go func() { httpErr <- serve.Serve(hctx, &http.Server{Handler: s.Handler()}, s.httpLn, s.log) }()

	var err error
	httpDone := false
	select {
	case <-ctx.Done():
	case err = <-smtpErr:
		err = fmt.Errorf("mail: smtp on %s: %w", s.ln.Addr(), err)
	case err = <-httpErr:
		httpDone = true
	}
	hcancel()
	sctx, cancel := context.WithTimeout(context.Background(), serve.ShutdownGrace)
	defer cancel()
	if serr := s.smtp.Shutdown(sctx); serr != nil && !errors.Is(serr, smtp.ErrServerClosed) {
		s.log.Warn("smtp shutdown incomplete, closing connections", "err", serr)
		s.smtp.Close()
	}
	if !httpDone {
		if herr := <-httpErr; err == nil {
			err = herr
		}
	}
	s.wg.Wait()
	s.client.CloseIdleConnections()
	return err
}

// slogPrinter adapts slog to go-smtp's Logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.l.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (p slogPrinter) Println(v ...any) { p.l.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }

// session is one SMTP transaction state; go-smtp calls it from the
// connection's goroutine only.
type session struct {
	s      *Server
	remote string
	from   string
	rcpts  []string
}

var _ smtp.Session = (*session)(nil)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, remote: c.Conn().RemoteAddr().String()}, nil
}

func (ss *session) Reset()        { ss.from, ss.rcpts = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	i := strings.LastIndexByte(to, '@')
	if i <= 0 || !strings.EqualFold(to[i+1:], ss.s.cfg.Domain) {
		ss.s.log.Warn("refused recipient", "rcpt", to, "remote", ss.remote, "reason", "relay denied")
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay denied: this server accepts mail for @" + ss.s.cfg.Domain + " only"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			ss.s.log.Warn("refused message", "remote", ss.remote, "reason", "larger than max size", "max_size", ss.s.cfg.MaxSize)
			return smtp.ErrDataTooLarge
		}
		return err
	}
	var hdr bytes.Buffer
	fmt.Fprintf(&hdr, "Return-Path: <%s>\r\n", ss.from)
	fmt.Fprintf(&hdr, "Received: from %s by %s (hactl mail) for <%s>; %s\r\n",
		ss.remote, ss.s.cfg.Hostname, strings.Join(ss.rcpts, ">, <"), time.Now().UTC().Format(time.RFC1123Z))
	data := append(hdr.Bytes(), body...)
	id, err := ss.s.deliver(data)
	if err != nil {
		ss.s.log.Warn("message not acknowledged", "remote", ss.remote, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message not stored on a second replica, try again later"}
	}
	ss.s.log.Info("message delivered", "id", id, "remote", ss.remote, "rcpts", len(ss.rcpts), "size", len(data))
	return nil
}

// deliver stores data locally under tmp/, replicates it, and only then
// moves it to new/. On failure nothing stays behind locally.
func (s *Server) deliver(data []byte) (string, error) {
	id := s.md.newID()
	if err := s.md.writeTmp(id, data); err != nil {
		return "", err
	}
	if err := s.replicate(id, data); err != nil {
		if derr := s.md.discard(id); derr != nil {
			s.log.Error("remove unacknowledged message from tmp/", "id", id, "err", derr)
		}
		return "", err
	}
	if err := s.md.commit(id); err != nil {
		s.md.discard(id)
		return "", err
	}
	return id, nil
}

type replicaAck struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

// replicate sends data to every peer at once and returns when MinAcks of
// them acknowledged it, or with an error once too many failed or the
// timeout passed. Sends still in flight after that finish in the background
// (bounded by the timeout) so that extra replicas are not cut short.
func (s *Server) replicate(id string, data []byte) error {
	peers, lerr := s.peers.Targets()
	if lerr != nil {
		s.log.Error("read peers", "err", lerr)
	}
	if len(peers) < s.cfg.MinAcks {
		return fmt.Errorf("replicate %s: %d peers known, %d acknowledgements needed", id, len(peers), s.cfg.MinAcks)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ReplicateTimeout)
	results := make(chan error, len(peers))
	var sends sync.WaitGroup
	for _, p := range peers {
		sends.Add(1)
		go func() {
			defer sends.Done()
			err := s.sendReplica(ctx, p, id, want, data)
			if err != nil {
				s.log.Warn("replication failed", "id", id, "peer", p, "err", err)
			}
			results <- err
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sends.Wait()
		cancel()
	}()
	acks, fails := 0, 0
	var errs []error
	for acks < s.cfg.MinAcks {
		err := <-results
		if err == nil {
			acks++
			continue
		}
		errs = append(errs, err)
		if fails++; len(peers)-fails < s.cfg.MinAcks {
			return fmt.Errorf("replicate %s: %d of %d needed acknowledgements: %w", id, acks, s.cfg.MinAcks, errors.Join(errs...))
		}
	}
	return nil
}

func (s *Server) sendReplica(ctx context.Context, peer, id, sum string, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peer+"/replicate", bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("Content-Type", "message/rfc822")
	req.Header.Set("X-Hactl-Message-Id", id)
	req.Header.Set("X-Hactl-Sha256", sum)
	req.Header.Set("X-Hactl-Origin", s.origin)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("peer answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var ack replicaAck
	if err := json.Unmarshal(b, &ack); err != nil {
		return fmt.Errorf("peer acknowledgement: %w", err)
	}
	if ack.ID != id || ack.SHA256 != sum {
		return fmt.Errorf("peer acknowledged %s sha256 %s, want %s sha256 %s", ack.ID, ack.SHA256, id, sum)
	}
	return nil
}

// Handler returns the HTTP endpoint: GET /healthz (open), and with the
// bearer token GET /messages, GET /messages/{id} and POST /replicate.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.Handle("GET /messages", s.auth(http.HandlerFunc(s.listMessages)))
	mux.Handle("GET /messages/{id}", s.auth(http.HandlerFunc(s.getMessage)))
	mux.Handle("POST /replicate", s.auth(http.HandlerFunc(s.receiveReplica)))
	return mux
}

func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !serve.TokenEqual(strings.TrimSpace(tok), s.cfg.Token) {
			s.log.Warn("refused unauthenticated request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="hactl-mail"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) listMessages(w http.ResponseWriter, _ *http.Request) {
	msgs, err := s.md.list()
	if err != nil {
		s.log.Error("list messages", "err", err)
		http.Error(w, "cannot list messages", http.StatusInternalServerError)
		return
	}
	if msgs == nil {
		msgs = []Message{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs})
}

func (s *Server) getMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	data, err := s.md.read(id)
	if err != nil {
		http.Error(w, "no such message", http.StatusNotFound)
		return
	}
	sum := sha256.Sum256(data)
	w.Header().Set("Content-Type", "message/rfc822")
	w.Header().Set("X-Hactl-Sha256", hex.EncodeToString(sum[:]))
	_, _ = w.Write(data)
}

func (s *Server) receiveReplica(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("X-Hactl-Message-Id")
	want := strings.ToLower(r.Header.Get("X-Hactl-Sha256"))
	refuse := func(code int, reason string) {
		s.log.Warn("refused replica", "id", id, "remote", r.RemoteAddr, "reason", reason)
		http.Error(w, reason, code)
	}
	if r.Header.Get("X-Hactl-Origin") == s.origin {
		refuse(http.StatusConflict, "replication to self")
		return
	}
	if !validID(id) {
		refuse(http.StatusBadRequest, "invalid message id")
		return
	}
	// Headers added on delivery make a message a little larger than the
	// SMTP limit; allow for them.
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxSize+64<<10))
	if err != nil {
		refuse(http.StatusRequestEntityTooLarge, "message too large or unreadable")
		return
	}
	sum := sha256.Sum256(data)
	got := hex.EncodeToString(sum[:])
	if got != want {
		refuse(http.StatusBadRequest, "sha256 mismatch")
		return
	}
	if err := s.md.store(id, data); err != nil {
		if errors.Is(err, errExists) {
			refuse(http.StatusConflict, "message id exists with different content")
			return
		}
		s.log.Error("store replica", "id", id, "err", err)
		http.Error(w, "cannot store replica", http.StatusInternalServerError)
		return
	}
	s.log.Info("replica stored", "id", id, "remote", r.RemoteAddr, "size", len(data))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(replicaAck{ID: id, SHA256: got})
}
