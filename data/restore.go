package data

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// RestoreOptions select what Restore restores and where.
type RestoreOptions struct {
	// ID is the backup to restore; empty means the newest one that
	// restores cleanly (corrupt ones are skipped with an event).
	ID string
	// Dir is the directory to replace.
	Dir    string
	Logger *slog.Logger
	// Now is used to compute the age of the restored backup (default
	// time.Now).
	Now func() time.Time
}

// Skipped is a backup Restore passed over, and why.
type Skipped struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// RestoreReport says what Restore did.
type RestoreReport struct {
	Target string    `json:"target"`
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	// Age is how old the restored data is: the RPO actually suffered.
	Age     time.Duration `json:"age_ns"`
	Files   int           `json:"files"`
	Bytes   int64         `json:"bytes"`
	Skipped []Skipped     `json:"skipped,omitempty"`
}

// Restore restores a backup from t into o.Dir. The tree is written into a
// temporary directory beside o.Dir, every file checked against its hash
// and fsynced, then swapped in atomically (renameat2 RENAME_EXCHANGE when
// o.Dir exists), so o.Dir holds either the old tree or the whole restored
// one. Without an ID, backups are tried newest first; a corrupt or
// incomplete one is skipped with a warning and recorded in Skipped.
func Restore(ctx context.Context, t Target, o RestoreOptions) (RestoreReport, error) {
	rep := RestoreReport{Target: t.String()}
	if o.Dir == "" {
		return rep, fmt.Errorf("restore from %s: no destination directory", t)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	ids := []string{o.ID}
	if o.ID == "" {
		all, err := backupIDs(ctx, t)
		if err != nil {
			return rep, err
		}
		if len(all) == 0 {
			return rep, fmt.Errorf("restore from %s: no backups", t)
		}
		ids = ids[:0]
		for i := len(all) - 1; i >= 0; i-- {
			ids = append(ids, all[i])
		}
	}
	for _, id := range ids {
		m, err := LoadManifest(ctx, t, id)
		if err == nil {
			fetch := func(ctx context.Context, e Entry) (io.ReadCloser, error) {
				return t.Get(ctx, objectName(e.Sum))
			}
			err = materialize(ctx, m, o.Dir, fetch)
		}
		if err != nil {
			if o.ID == "" && (errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound)) {
				log.Warn("backup skipped: corrupt or incomplete", "target", t.String(), "backup", id, "err", err)
				rep.Skipped = append(rep.Skipped, Skipped{ID: id, Reason: err.Error()})
				continue
			}
			return rep, fmt.Errorf("restore %s from %s into %s: %w", id, t, o.Dir, err)
		}
		tm, _ := ParseBackupID(id)
		rep.ID, rep.Time, rep.Age = id, tm, now().Sub(tm)
		rep.Files, rep.Bytes = m.Files()
		log.Info("restored backup", "target", t.String(), "backup", id, "age", rep.Age.Round(time.Second), "dir", o.Dir)
		return rep, nil
	}
	return rep, fmt.Errorf("restore from %s: every backup is corrupt or incomplete (%d tried): %w", t, len(rep.Skipped), ErrCorrupt)
}

// fetchFunc returns the content of a file entry.
type fetchFunc func(ctx context.Context, e Entry) (io.ReadCloser, error)

// materialize builds the tree m describes in a temporary directory beside
// dir, with content from fetch checked against each entry's hash, and
// swaps it in for dir. Content already present in dir under the same hash
// is copied locally instead of fetched. Hashes are in m's algorithm.
func materialize(ctx context.Context, m Manifest, dir string, fetch fetchFunc) error {
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return err
	}
	mode := fs.FileMode(0o750)
	if st, err := os.Stat(dir); err == nil {
		mode = st.Mode().Perm()
	}
	alg := m.Alg()
	if !knownHash(alg) {
		return fmt.Errorf("manifest hashed with unknown algorithm %q: %w", alg, ErrCorrupt)
	}
	local := map[string]string{} // hash -> path of a verified copy
	if old, err := snapshot(ctx, dir, nil, alg); err == nil {
		for _, e := range old.Entries {
			if e.Type == TypeFile {
				local[e.Sum] = filepath.Join(dir, filepath.FromSlash(e.Path))
			}
		}
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+internalPrefix+"restore-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	var dirs []Entry
	for _, e := range m.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, err := localPath(tmp, e.Path)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		switch e.Type {
		case TypeDir:
			if err := os.MkdirAll(p, 0o750); err != nil {
				return err
			}
			dirs = append(dirs, e)
		case TypeSymlink:
			if err := os.Symlink(e.Link, p); err != nil {
				return err
			}
		case TypeFile:
			if err := placeFile(ctx, p, alg, e, local, fetch); err != nil {
				return err
			}
			local[e.Sum] = p
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		p := filepath.Join(tmp, filepath.FromSlash(dirs[i].Path))
		if err := os.Chmod(p, dirs[i].Mode); err != nil {
			return err
		}
		if err := syncDir(p); err != nil {
			return err
		}
		os.Chtimes(p, dirs[i].MTime, dirs[i].MTime)
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	return swapIn(tmp, dir)
}

// placeFile writes one file entry at p: copied from a local file with the
// same hash when there is one, else fetched; always verified and fsynced.
func placeFile(ctx context.Context, p, alg string, e Entry, local map[string]string, fetch fetchFunc) error {
	if src, ok := local[e.Sum]; ok {
		if f, err := os.Open(src); err == nil {
			err = writeVerified(p, f, alg, e)
			f.Close()
			if err == nil {
				return nil
			}
		}
	}
	rc, err := fetch(ctx, e)
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	defer rc.Close()
	return writeVerified(p, ctxReader{ctx, rc}, alg, e)
}

// writeVerified writes r to p, fsyncs it, and checks size and digest
// (under alg).
func writeVerified(p string, r io.Reader, alg string, e Entry) error {
	h, err := newHash(alg)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// One byte more than expected, to notice content that is too long.
	n, err := receive(f, 0, r, e.Size+1, h)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != e.Size || got != e.Sum {
		return fmt.Errorf("%s: content is %d bytes %s %s, want %d bytes %s: %w", e.Path, n, alg, got, e.Size, e.Sum, ErrCorrupt)
	}
	if err := os.Chmod(p, e.Mode); err != nil {
		return err
	}
	return os.Chtimes(p, e.MTime, e.MTime)
}

// swapIn replaces dir by tmp atomically: an exchange when dir exists (the
// old tree ends up at tmp, which the caller removes), else a rename.
func swapIn(tmp, dir string) error {
	if _, err := os.Lstat(dir); err == nil {
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE)
		if err != nil {
			// Filesystems without RENAME_EXCHANGE: two renames, a short
			// window where dir is absent.
			old := tmp + ".old"
			if err := os.Rename(dir, old); err != nil {
				return fmt.Errorf("swap %s: %w", dir, err)
			}
			if err := os.Rename(tmp, dir); err != nil {
				os.Rename(old, dir)
				return fmt.Errorf("swap %s: %w", dir, err)
			}
			os.RemoveAll(old)
		}
	} else if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("swap %s: %w", dir, err)
	}
	return syncDir(filepath.Dir(dir))
}
