package mail

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maildir stores messages in the Maildir layout: a message is written and
// fsynced under tmp/, then renamed into new/ and the directory fsynced. A
// reader (an IMAP server, a person) may move it to cur/ with an info suffix.
type maildir struct {
	dir  string
	host string
	seq  atomic.Uint64
}

var errExists = errors.New("message exists with different content")

func openMaildir(dir, host string) (*maildir, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("maildir %s: %w", dir, err)
		}
	}
	return &maildir{dir: dir, host: sanitizeHost(host)}, nil
}

func sanitizeHost(h string) string {
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.':
			b.WriteRune('-')
		}
	}
	if b.Len() == 0 {
		return "localhost"
	}
	return b.String()
}

// idPattern matches the names newID makes; nothing else is ever opened.
// It is compiled on first use: the counted repetitions make a large program
// that cost every hactl command 0.6 ms of start-up at init.
var idPattern = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[0-9]{1,20}\.M[0-9]+P[0-9]+Q[0-9]+R[0-9a-f]{16}\.[A-Za-z0-9_-]{1,100}$`)
})

func validID(id string) bool { return idPattern().MatchString(id) }

// newID returns a unique Maildir name: time, microseconds, pid, a sequence
// number and 64 random bits, then the host name.
func (m *maildir) newID() string {
	now := time.Now()
	var r [8]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), hex.EncodeToString(r[:]), m.host)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeTmp writes data to tmp/id and fsyncs the file and tmp/.
func (m *maildir) writeTmp(id string, data []byte) error {
	p := filepath.Join(m.dir, "tmp", id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("maildir: %w", err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = syncDir(filepath.Join(m.dir, "tmp"))
	}
	if werr != nil {
		os.Remove(p)
		return fmt.Errorf("maildir: write %s: %w", p, werr)
	}
	return nil
}

// commit moves tmp/id to new/id and fsyncs new/: from then on the message
// is delivered.
func (m *maildir) commit(id string) error {
	if err := os.Rename(filepath.Join(m.dir, "tmp", id), filepath.Join(m.dir, "new", id)); err != nil {
		return fmt.Errorf("maildir: deliver %s: %w", id, err)
	}
	if err := syncDir(filepath.Join(m.dir, "new")); err != nil {
		return fmt.Errorf("maildir: sync new/: %w", err)
	}
	return nil
}

// discard removes an undelivered tmp/id.
func (m *maildir) discard(id string) error {
	err := os.Remove(filepath.Join(m.dir, "tmp", id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// store delivers a replica: idempotent when the same content is already
// there, errExists when different content is.
func (m *maildir) store(id string, data []byte) error {
	if old, err := m.read(id); err == nil {
		if sha256.Sum256(old) == sha256.Sum256(data) {
			return nil
		}
		return errExists
	}
	if err := m.writeTmp(id, data); err != nil {
		return err
	}
	return m.commit(id)
}

// path finds id in new/ or cur/ (where it may carry a ":2,FLAGS" suffix).
func (m *maildir) path(id string) (string, error) {
	if !validID(id) {
		return "", fs.ErrNotExist
	}
	p := filepath.Join(m.dir, "new", id)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(m.dir, "cur", id+":*"))
	if len(matches) > 0 {
		return matches[0], nil
	}
	p = filepath.Join(m.dir, "cur", id)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fs.ErrNotExist
}

func (m *maildir) read(id string) ([]byte, error) {
	p, err := m.path(id)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Message is one stored message in a listing.
type Message struct {
	ID       string    `json:"id"`
	Folder   string    `json:"folder"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

func (m *maildir) list() ([]Message, error) {
	var out []Message
	for _, folder := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(m.dir, folder))
		if err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
		for _, e := range ents {
			id, _, _ := strings.Cut(e.Name(), ":")
			if !validID(id) || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			out = append(out, Message{ID: id, Folder: folder, Size: info.Size(), Modified: info.ModTime().UTC()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// sweepTmp removes tmp/ files older than maxAge: messages that were never
// acknowledged (the process died between writing and answering).
func (m *maildir) sweepTmp(maxAge time.Duration) (int, error) {
	ents, err := os.ReadDir(filepath.Join(m.dir, "tmp"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < maxAge {
			continue
		}
		if os.Remove(filepath.Join(m.dir, "tmp", e.Name())) == nil {
			n++
		}
	}
	return n, nil
}
