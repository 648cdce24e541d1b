package data

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ErrNotFound is returned (wrapped) by Target.Get for a missing object.
var ErrNotFound = errors.New("object not found")

// Target is where backups are stored: a flat namespace of named objects.
// Names are slash-separated relative paths ("objects/ab/ab12...",
// "backups/ID.json").
//
// Contract: Put is atomic (a reader sees the whole object or none of it)
// and durable when it returns; Get of a missing name returns an error
// wrapping ErrNotFound; List returns every name under prefix, sorted;
// Delete of a missing name is not an error. Implementations are safe for
// use by one goroutine at a time; String never contains secrets.
type Target interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, name string) error
	Close() error
	String() string
}

// TargetOptions are what opening a target may need besides its URL.
type TargetOptions struct {
	// HostKey pins the SFTP server's host key (an authorized_keys line).
	// Required for sftp targets.
	HostKey string
	// KeyFile is the private key used to log in to an SFTP target
	// (default $HACTL_BACKUP_KEY, else ~/.ssh/id_ed25519).
	KeyFile string
	Logger  *slog.Logger
}

// OpenTarget opens a target URL: dir:///path or sftp://user@host:port/path.
func OpenTarget(ctx context.Context, rawURL string, o TargetOptions) (Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("backup target %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "dir":
		if u.Host != "" {
			return nil, fmt.Errorf("backup target %q: dir targets take an absolute path (dir:///path)", rawURL)
		}
		return NewDirTarget(u.Path)
	case "sftp":
		return dialSFTP(ctx, u, o)
	default:
		return nil, fmt.Errorf("backup target %q: unsupported scheme %q (want dir or sftp)", rawURL, u.Scheme)
	}
}

// checkName refuses object names that are not plain relative paths.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || !filepath.IsLocal(filepath.FromSlash(name)) {
		return fmt.Errorf("invalid object name %q", name)
	}
	return nil
}

// DirTarget stores objects as files under a local directory. Writes go to a
// temporary file that is fsynced, renamed into place, and followed by an
// fsync of the directory.
type DirTarget struct{ root string }

// NewDirTarget opens (creating if needed) a directory target.
func NewDirTarget(root string) (*DirTarget, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("dir target %q: path must be absolute", root)
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("dir target %s: %w", root, err)
	}
	return &DirTarget{root: root}, nil
}

func (d *DirTarget) String() string { return "dir://" + d.root }

// Close does nothing.
func (d *DirTarget) Close() error { return nil }

// Put writes name atomically and durably.
func (d *DirTarget) Put(ctx context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	p := filepath.Join(d.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("%s: put %s: %w", d, name, err)
	}
	if err := writeAtomic(p, r, 0o640); err != nil {
		return fmt.Errorf("%s: put %s: %w", d, name, err)
	}
	return nil
}

// Get opens name for reading.
func (d *DirTarget) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.root, filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: get %s: %w", d, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", d, name, err)
	}
	return f, nil
}

// List returns the names of every object under prefix.
func (d *DirTarget) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	base := filepath.Join(d.root, filepath.FromSlash(prefix))
	err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if de.IsDir() || strings.HasPrefix(de.Name(), internalPrefix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", d, prefix, err)
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes name.
func (d *DirTarget) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(d.root, filepath.FromSlash(name)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: delete %s: %w", d, name, err)
	}
	return nil
}

// writeAtomic writes r to p through a temporary file in the same directory:
// write, fsync, rename, fsync the directory.
func writeAtomic(p string, r io.Reader, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), internalPrefix+"tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(p))
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
