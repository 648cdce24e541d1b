package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Probe is one check of a service from outside the victim set.
//
// Check performs one request and returns nil on success; an error wrapping
// ErrDeferred means the service put the request off (SMTP 4xx) rather than
// failed it. Check must honour ctx (the sampler gives each check a
// deadline), hold no state between calls that a failure could corrupt, and
// be safe to call from one goroutine at a time.
type Probe interface {
	// Name is "<kind>=<target>", e.g. "http=http://127.1.2.200/".
	Name() string
	Check(ctx context.Context) error
}

// Marker writes a piece of acknowledged data before a fault and reads it
// back after recovery, so lost acknowledged data is counted.
//
// Write returns nil only once the service acknowledged the write. Read
// reports whether the marker with that id is there; an error means it could
// not tell (the read is retried until the round's deadline).
type Marker interface {
	Name() string
	Write(ctx context.Context, id string) error
	Read(ctx context.Context, id string) (bool, error)
}

// ParseProbe builds a probe from "kind=target": http=URL, tcp=HOST:PORT,
// smtp=HOST:PORT[,RCPT], git=URL (clone), git-push=URL[,TOKEN_FILE] (clone
// and push), cmd=COMMAND (run by sh -c; exit 0 = success). A host may be
// written {role}: the probe then fails over between the role's nodes (see
// Roles).
func ParseProbe(s string) (Probe, error) {
	kind, target, ok := strings.Cut(s, "=")
	if !ok || target == "" {
		return nil, fmt.Errorf("probe %q: want kind=target (http, tcp, smtp, git, git-push, cmd)", s)
	}
	if kind != "cmd" {
		if _, err := roleOf(target); err != nil {
			return nil, fmt.Errorf("probe %q: %w", s, err)
		}
	}
	switch kind {
	case "http", "https":
		return &HTTPProbe{URL: target}, nil
	case "tcp":
		return &TCPProbe{Addr: target}, nil
	case "smtp":
		addr, to, _ := strings.Cut(target, ",")
		if addr == "" {
			return nil, fmt.Errorf("probe %q: smtp wants HOST:PORT[,RCPT]", s)
		}
		return &SMTPProbe{Addr: addr, To: to}, nil
	case "git":
		return &GitProbe{URL: target}, nil
	case "git-push":
		u, tokFile, _ := strings.Cut(target, ",")
		p := &GitProbe{URL: u, Push: true}
		if tokFile != "" {
			tok, err := readToken(tokFile)
			if err != nil {
				return nil, fmt.Errorf("probe %q: %w", s, err)
			}
			p.Token = tok
		}
		return p, nil
	case "cmd":
		return &CommandProbe{Command: target}, nil
	}
	return nil, fmt.Errorf("probe %q: unknown kind %q (want http, tcp, smtp, git, git-push, cmd)", s, kind)
}

// ParseMarker builds a marker from "kind=target":
// smtp=ADDR,LIST_URL[,TOKEN_FILE[,RCPT]] (send a message, then find its
// subject through the mail HTTP API, see SMTPMarker) or git=URL[,TOKEN_FILE]
// (push a commit to its own branch, then read the branch back). Hosts may be
// written {role}, as for probes.
func ParseMarker(s string) (Marker, error) {
	kind, target, ok := strings.Cut(s, "=")
	if !ok || target == "" {
		return nil, fmt.Errorf("marker %q: want kind=target (smtp=ADDR,LIST_URL or git=URL)", s)
	}
	parts := strings.Split(target, ",")
	for _, p := range parts {
		if _, err := roleOf(p); err != nil {
			return nil, fmt.Errorf("marker %q: %w", s, err)
		}
	}
	switch kind {
	case "smtp":
		if len(parts) < 2 || len(parts) > 4 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("marker %q: smtp wants ADDR,LIST_URL[,TOKEN_FILE[,RCPT]]", s)
		}
		m := &SMTPMarker{Addr: parts[0], ListURL: parts[1]}
		if len(parts) >= 3 && parts[2] != "" {
			tok, err := readToken(parts[2])
			if err != nil {
				return nil, fmt.Errorf("marker %q: %w", s, err)
			}
			m.Token = tok
		}
		if len(parts) == 4 {
			m.To = parts[3]
		}
		return m, nil
	case "git":
		if len(parts) > 2 || parts[0] == "" {
			return nil, fmt.Errorf("marker %q: git wants URL[,TOKEN_FILE]", s)
		}
		m := &GitMarker{URL: parts[0]}
		if len(parts) == 2 && parts[1] != "" {
			tok, err := readToken(parts[1])
			if err != nil {
				return nil, fmt.Errorf("marker %q: %w", s, err)
			}
			m.Token = tok
		}
		return m, nil
	}
	return nil, fmt.Errorf("marker %q: unknown kind %q (want smtp or git)", s, kind)
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", file)
	}
	return tok, nil
}

// HTTPProbe GETs URL; a 2xx or 3xx status is success.
type HTTPProbe struct {
	URL    string
	Client *http.Client // nil = no keep-alive client, so each check dials anew

	roles *Roles
}

func (p *HTTPProbe) Name() string      { return "http=" + p.URL }
func (p *HTTPProbe) SetRoles(r *Roles) { p.roles = r }

func (p *HTTPProbe) Check(ctx context.Context) error {
	c := p.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return failover(p.roles, p.URL, func(u string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
		return nil
	})
}

// TCPProbe connects to Addr.
type TCPProbe struct {
	Addr  string
	roles *Roles
}

func (p *TCPProbe) Name() string      { return "tcp=" + p.Addr }
func (p *TCPProbe) SetRoles(r *Roles) { p.roles = r }

func (p *TCPProbe) Check(ctx context.Context) error {
	return failover(p.roles, p.Addr, func(a string) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// SMTPProbe delivers one message: dial, EHLO, MAIL, RCPT, DATA, QUIT. Every
// step must be answered with a 2xx/3xx reply (the 250s are counted). With a
// {role} address it moves to the role's next node when one refuses or
// fails, like a mail client moving to the next MX; a 4xx reply ("try again
// later") is a deferral (ErrDeferred), not a failure, when no node accepted.
type SMTPProbe struct {
	Addr     string
	From, To string // defaults chaos@hactl.invalid, postmaster@<host>
	// Subject overrides the subject ("" = "hactl chaos probe <random>").
	Subject string

	roles *Roles
}

func (p *SMTPProbe) Name() string      { return "smtp=" + p.Addr }
func (p *SMTPProbe) SetRoles(r *Roles) { p.roles = r }

func (p *SMTPProbe) Check(ctx context.Context) error {
	_, err := p.send(ctx, p.Subject)
	return err
}

// send delivers one message and returns how many 250 replies the node
// that took it gave.
func (p *SMTPProbe) send(ctx context.Context, subject string) (int, error) {
	if subject == "" {
		subject = "hactl chaos probe " + randomID()
	}
	n := 0
	err := failover(p.roles, p.Addr, func(addr string) error {
		var err error
		n, err = p.sendTo(ctx, addr, subject)
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
			return fmt.Errorf("%w: %w", ErrDeferred, err)
		}
		return err
	})
	return n, err
}

func (p *SMTPProbe) sendTo(ctx context.Context, addr, subject string) (int, error) {
	from := cmpOr(p.From, "chaos@hactl.invalid")
	to := p.To
	if to == "" {
		host, _, _ := net.SplitHostPort(addr)
		to = "postmaster@" + cmpOr(host, "localhost")
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	n := 0
	if err := c.Hello("chaos.hactl.invalid"); err != nil {
		return n, fmt.Errorf("smtp %s: EHLO: %w", addr, err)
	}
	n++
	if err := c.Mail(from, nil); err != nil {
		return n, fmt.Errorf("smtp %s: MAIL: %w", addr, err)
	}
	n++
	if err := c.Rcpt(to, nil); err != nil {
		return n, fmt.Errorf("smtp %s: RCPT: %w", addr, err)
	}
	n++
	w, err := c.Data()
	if err != nil {
		return n, fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n\r\nhactl chaos\r\n",
		from, to, subject, time.Now().UTC().Format(time.RFC1123Z))
	if _, err := io.WriteString(w, msg); err != nil {
		return n, fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return n, fmt.Errorf("smtp %s: end of DATA: %w", addr, err)
	}
	n++
	if err := c.Quit(); err != nil {
		return n, fmt.Errorf("smtp %s: QUIT: %w", addr, err)
	}
	return n, nil
}

// GitProbe clones URL with the git binary (depth 1) and, with Push, pushes
// a commit to refs/heads/hactl-chaos/probe (forced, so probes never
// conflict with each other), authenticating with Token as the basic-auth
// password when set. A {role} URL fails over between the role's nodes.
type GitProbe struct {
	URL   string
	Push  bool
	Token string

	roles *Roles
}

func (p *GitProbe) Name() string {
	if p.Push {
		return "git-push=" + p.URL
	}
	return "git=" + p.URL
}

func (p *GitProbe) SetRoles(r *Roles) { p.roles = r }

func (p *GitProbe) Check(ctx context.Context) error {
	return failover(p.roles, p.URL, func(u string) error {
		dir, err := os.MkdirTemp("", "hactl-chaos-git-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if _, err := git(ctx, "", "", "clone", "--quiet", "--depth", "1", u, filepath.Join(dir, "c")); err != nil {
			return err
		}
		if !p.Push {
			return nil
		}
		return pushFile(ctx, filepath.Join(dir, "p"), u, p.Token, "hactl-chaos/probe", "probe", time.Now().UTC().Format(time.RFC3339Nano))
	})
}

// pushFile commits one file in a fresh repository and force-pushes it to branch.
func pushFile(ctx context.Context, dir, url, token, branch, name, content string) error {
	if _, err := git(ctx, "", "", "init", "--quiet", dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"add", name},
		{"-c", "user.name=hactl chaos", "-c", "user.email=chaos@hactl.invalid", "-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "hactl chaos " + name},
		{"push", "--quiet", "--force", url, "HEAD:refs/heads/" + branch},
	} {
		tok := ""
		if args[0] == "push" {
			tok = token
		}
		if _, err := git(ctx, dir, tok, args...); err != nil {
			return err
		}
	}
	return nil
}

// git runs the git binary. A token is sent as the basic-auth password of
// every HTTP request, through the environment (GIT_CONFIG_*), so it is on
// no command line, in no URL and in no error message.
func git(ctx context.Context, dir, token string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	if token != "" {
		cred := base64.StdEncoding.EncodeToString([]byte("hactl-chaos:" + token))
		cmd.Env = append(cmd.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader",
			"GIT_CONFIG_VALUE_0=Authorization: Basic "+cred)
	}
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// CommandProbe runs Command with sh -c; exit status 0 is success.
type CommandProbe struct{ Command string }

func (p *CommandProbe) Name() string { return "cmd=" + p.Command }

func (p *CommandProbe) Check(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", p.Command)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// SMTPMarker sends a message whose subject carries the marker id (with
// SMTPProbe, so a {role} address fails over), and counts it written only
// on a 250; a deferral (4xx) or failure is retried until ctx is done, as a
// mail client retries a queued message. It reads the marker back over the
// mail role's HTTP API: GET ListURL, and when the id is not in that body
// and the body is {"messages":[{"id":...}]} (hactl serve mail), GET
// ListURL/<message id> for each message, newest first, until one carries
// the marker. With a {role} ListURL the marker is found when any node of
// the role has it. Token, when set, is sent as a bearer token.
type SMTPMarker struct {
	Addr    string
	ListURL string
	Token   string
	To      string // recipient ("" = postmaster@<host>)

	roles *Roles
}

func (m *SMTPMarker) Name() string      { return "smtp=" + m.Addr }
func (m *SMTPMarker) SetRoles(r *Roles) { m.roles = r }

func (m *SMTPMarker) Write(ctx context.Context, id string) error {
	p := &SMTPProbe{Addr: m.Addr, To: m.To, roles: m.roles}
	for {
		_, err := p.send(ctx, "hactl-chaos-marker "+id)
		if err == nil {
			return nil
		}
		if !sleepCtx(ctx, time.Second) {
			return err
		}
	}
}

func (m *SMTPMarker) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if m.Token != "" {
		req.Header.Set("Authorization", "Bearer "+m.Token)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

func (m *SMTPMarker) Read(ctx context.Context, id string) (bool, error) {
	return readAny(m.roles, m.ListURL, func(u string) (bool, error) { return m.readFrom(ctx, u, id) })
}

func (m *SMTPMarker) readFrom(ctx context.Context, listURL, id string) (bool, error) {
	b, err := m.get(ctx, listURL)
	if err != nil {
		return false, err
	}
	if bytes.Contains(b, []byte(id)) {
		return true, nil
	}
	var list struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if json.Unmarshal(b, &list) != nil {
		return false, nil
	}
	// Maildir names start with the delivery time: newest first finds a
	// marker written just before the fault without reading the probes'
	// older messages.
	slices.Reverse(list.Messages)
	for _, msg := range list.Messages {
		body, err := m.get(ctx, strings.TrimSuffix(listURL, "/")+"/"+url.PathEscape(msg.ID))
		if err != nil {
			return false, err
		}
		if bytes.Contains(body, []byte(id)) {
			return true, nil
		}
	}
	return false, nil
}

// readAny reads from every concrete target of template: true when any has
// it; an error only when none has it and at least one could not tell.
func readAny(rs *Roles, template string, read func(target string) (bool, error)) (bool, error) {
	ts, err := expand(rs, template)
	if err != nil {
		return false, err
	}
	var errs []error
	for _, t := range ts {
		ok, err := read(t)
		if ok {
			return true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return false, errors.Join(errs...)
}

// GitMarker pushes a commit holding the marker id to the branch
// hactl-chaos/marker-<id> (Token as the basic-auth password when set), and
// reads it back by cloning that branch. A missing branch after recovery is
// lost data. With a {role} URL the push fails over between the role's
// nodes, is retried until ctx is done, and the marker is found when any
// node of the role has it.
type GitMarker struct {
	URL   string
	Token string

	roles *Roles
}

func (m *GitMarker) Name() string      { return "git=" + m.URL }
func (m *GitMarker) SetRoles(r *Roles) { m.roles = r }

func (m *GitMarker) Write(ctx context.Context, id string) error {
	for {
		err := failover(m.roles, m.URL, func(u string) error {
			dir, err := os.MkdirTemp("", "hactl-chaos-marker-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			return pushFile(ctx, filepath.Join(dir, "r"), u, m.Token, "hactl-chaos/marker-"+id, "marker", id)
		})
		if err == nil {
			return nil
		}
		if !sleepCtx(ctx, time.Second) {
			return err
		}
	}
}

func (m *GitMarker) Read(ctx context.Context, id string) (bool, error) {
	return readAny(m.roles, m.URL, func(u string) (bool, error) { return m.readFrom(ctx, u, id) })
}

func (m *GitMarker) readFrom(ctx context.Context, u, id string) (bool, error) {
	out, err := git(ctx, "", m.Token, "ls-remote", u, "refs/heads/hactl-chaos/marker-"+id)
	if err != nil {
		return false, err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return false, nil
	}
	dir, err := os.MkdirTemp("", "hactl-chaos-marker-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	if _, err := git(ctx, "", m.Token, "clone", "--quiet", "--depth", "1", "--branch", "hactl-chaos/marker-"+id, u, filepath.Join(dir, "c")); err != nil {
		return false, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "c", "marker"))
	if err != nil {
		return false, nil
	}
	return strings.TrimSpace(string(b)) == id, nil
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sample is one probe result.
type Sample struct {
	At time.Time `json:"at"`
	OK bool      `json:"ok"`
	// Deferred: the check failed with ErrDeferred (the service said "try
	// again later"); it is not OK and not counted as a failed request.
	Deferred  bool    `json:"deferred,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

// Sampler runs every probe at Interval from Start until Stop, each in its
// own goroutine, and keeps the samples. Samples returns copies.
type Sampler struct {
	Probes   []Probe
	Interval time.Duration // 0 = 1 s
	Timeout  time.Duration // per check; 0 = max(Interval, 5 s)

	mu      sync.Mutex
	samples map[string][]Sample
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Start begins sampling. Call Stop to end it.
func (s *Sampler) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.samples = map[string][]Sample{}
	iv := s.Interval
	if iv <= 0 {
		iv = time.Second
	}
	to := cmpDur(s.Timeout, max(iv, 5*time.Second))
	for _, p := range s.Probes {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(iv)
			defer t.Stop()
			for {
				start := time.Now()
				cctx, cancel := context.WithTimeout(ctx, to)
				err := p.Check(cctx)
				cancel()
				if ctx.Err() != nil {
					return // a check cut short by Stop is not a failure
				}
				smp := Sample{At: start, OK: err == nil, Deferred: errors.Is(err, ErrDeferred), LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
				if err != nil {
					smp.Error = err.Error()
				}
				s.mu.Lock()
				s.samples[p.Name()] = append(s.samples[p.Name()], smp)
				s.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}

// Stop ends sampling and waits for the probes to return.
func (s *Sampler) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Samples returns a copy of the samples of the named probe.
func (s *Sampler) Samples(name string) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples[name]...)
}

// Between counts the samples of every probe taken in [from, to): all of
// them, the failed ones and the deferred ones (deferred are not failed).
func (s *Sampler) Between(from, to time.Time) (total, failed, deferred int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.samples {
		for _, smp := range ss {
			if !smp.At.Before(from) && smp.At.Before(to) {
				total++
				switch {
				case smp.Deferred:
					deferred++
				case !smp.OK:
					failed++
				}
			}
		}
	}
	return total, failed, deferred
}

func cmpDur(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}
