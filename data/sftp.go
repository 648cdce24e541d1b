package data

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTPTarget stores objects under a directory of an SFTP server, reached
// over SSH with a pinned host key and public-key authentication. Writes go
// to a temporary name, are fsynced (fsync@openssh.com, when the server
// offers it) and renamed into place with posix-rename@openssh.com.
type SFTPTarget struct {
	name   string // sftp://user@host:port/path, for messages
	root   string
	conn   *ssh.Client
	client *sftp.Client
}

// dialSFTP opens an sftp:// target URL.
func dialSFTP(ctx context.Context, u *url.URL, o TargetOptions) (*SFTPTarget, error) {
	user := u.User.Username()
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "22")
	}
	name := "sftp://" + user + "@" + host + u.Path
	if user == "" || u.Path == "" {
		return nil, fmt.Errorf("backup target %s: want sftp://user@host:port/path", name)
	}
	if strings.TrimSpace(o.HostKey) == "" {
		return nil, fmt.Errorf("backup target %s: no host key pinned (host_key is required for sftp targets)", name)
	}
	pinned, _, _, _, err := ssh.ParseAuthorizedKey([]byte(o.HostKey))
	if err != nil {
		return nil, fmt.Errorf("backup target %s: host key: %w", name, err)
	}
	keyFile := o.KeyFile
	if keyFile == "" {
		keyFile = os.Getenv("HACTL_BACKUP_KEY")
	}
	if keyFile == "" {
		home, _ := os.UserHomeDir()
		keyFile = filepath.Join(home, ".ssh", "id_ed25519")
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("backup target %s: private key: %w", name, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("backup target %s: private key %s: %w", name, keyFile, err)
	}
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if key.Type() == pinned.Type() && bytes.Equal(key.Marshal(), pinned.Marshal()) {
				return nil
			}
			return fmt.Errorf("host key %s %s does not match the pinned key %s %s (refusing to connect)",
				key.Type(), ssh.FingerprintSHA256(key), pinned.Type(), ssh.FingerprintSHA256(pinned))
		},
		HostKeyAlgorithms: []string{pinned.Type()},
		Timeout:           30 * time.Second,
	}
	if pinned.Type() == ssh.KeyAlgoRSA {
		cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	d := net.Dialer{Timeout: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("backup target %s: %w", name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, host, cfg)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("backup target %s: ssh: %w", name, err)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(c, chans, reqs)
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("backup target %s: sftp subsystem: %w", name, err)
	}
	t := &SFTPTarget{name: name, root: path.Clean(u.Path), conn: conn, client: client}
	if err := client.MkdirAll(t.root); err != nil {
		t.Close()
		return nil, fmt.Errorf("backup target %s: mkdir: %w", name, err)
	}
	return t, nil
}

func (t *SFTPTarget) String() string { return t.name }

// Close ends the SFTP session and the SSH connection.
func (t *SFTPTarget) Close() error {
	err := t.client.Close()
	if cerr := t.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// Put writes name atomically.
func (t *SFTPTarget) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := path.Join(t.root, name)
	if err := t.client.MkdirAll(path.Dir(p)); err != nil {
		return fmt.Errorf("%s: put %s: %w", t, name, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(p), internalPrefix+"tmp-"+hex.EncodeToString(rnd[:]))
	f, err := t.client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("%s: put %s: %w", t, name, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			t.client.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("%s: put %s: %w", t, name, err)
	}
	if err := f.Sync(); err != nil {
		var se *sftp.StatusError
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return fmt.Errorf("%s: put %s: fsync: %w", t, name, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: put %s: %w", t, name, err)
	}
	if err := t.client.PosixRename(tmp, p); err != nil {
		return fmt.Errorf("%s: put %s: rename: %w", t, name, err)
	}
	ok = true
	return nil
}

// Get opens name for reading.
func (t *SFTPTarget) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := t.client.Open(path.Join(t.root, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: get %s: %w", t, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", t, name, err)
	}
	return f, nil
}

// List returns the names of every object under prefix.
func (t *SFTPTarget) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	w := t.client.Walk(path.Join(t.root, prefix))
	for w.Step() {
		if err := w.Err(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("%s: list %s: %w", t, prefix, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st := w.Stat()
		if st.IsDir() || strings.HasPrefix(path.Base(w.Path()), internalPrefix) {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(w.Path(), t.root), "/")
		out = append(out, rel)
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes name.
func (t *SFTPTarget) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := t.client.Remove(path.Join(t.root, name))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: delete %s: %w", t, name, err)
	}
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
