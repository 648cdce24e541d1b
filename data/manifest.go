package data

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Entry types in a Manifest.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// internalPrefix marks files this package keeps inside a data directory
// (temporary files of replication). Snapshots never include them.
const internalPrefix = ".hactl-"

// snapshotRetries is how many times Snapshot re-reads a file that changed
// while it was being hashed before giving up.
const snapshotRetries = 5

// Entry is one path of a snapshotted tree.
type Entry struct {
	// Path is slash-separated and relative to the snapshot root.
	Path string `json:"path"`
	Type string `json:"type"`
	// Size and Sum (hex digest in the manifest's Hash algorithm) are set
	// for files. Manifests written before Hash existed carry Sum under
	// "sha256" (read by UnmarshalJSON).
	Size int64  `json:"size,omitempty"`
	Sum  string `json:"sum,omitempty"`
	// Mode holds the permission bits.
	Mode  fs.FileMode `json:"mode"`
	MTime time.Time   `json:"mtime"`
	// Link is the target of a symlink.
	Link string `json:"link,omitempty"`
}

// Manifest describes a directory tree at one moment: every directory, file
// and symlink, sorted by path, with the content hash of every file.
type Manifest struct {
	Created time.Time `json:"created"`
	// Hash is the algorithm of every Entry.Sum (HashBLAKE2b, HashSHA256);
	// empty means SHA-256 (manifests written before the field existed).
	Hash    string  `json:"hash,omitempty"`
	Entries []Entry `json:"entries"`
}

// Alg returns the manifest's hash algorithm, SHA-256 when unset.
func (m Manifest) Alg() string { return hashAlg(m.Hash) }

// Files returns the number of regular files and their total size.
func (m Manifest) Files() (n int, bytes int64) {
	for _, e := range m.Entries {
		if e.Type == TypeFile {
			n++
			bytes += e.Size
		}
	}
	return n, bytes
}

// Objects returns the distinct content hashes the manifest refers to, with
// their sizes.
func (m Manifest) Objects() map[string]int64 {
	out := map[string]int64{}
	for _, e := range m.Entries {
		if e.Type == TypeFile {
			out[e.Sum] = e.Size
		}
	}
	return out
}

// Lookup returns the entry for path, if any.
func (m Manifest) Lookup(path string) (Entry, bool) {
	i := sort.Search(len(m.Entries), func(i int) bool { return m.Entries[i].Path >= path })
	if i < len(m.Entries) && m.Entries[i].Path == path {
		return m.Entries[i], true
	}
	return Entry{}, false
}

// Snapshot walks dir and returns its manifest, hashed with DefaultHash.
//
// Consistency: every file is hashed and then stat-ed again; a file whose
// size or modification time changed while it was read is read again (up to
// a few times), so each entry's hash matches the size and mtime recorded
// with it. The manifest is consistent per file, not across files: a service
// that needs a cross-file point in time must quiesce itself (or use its own
// dump) before the snapshot. Backup re-checks every hash while uploading.
// Files whose names start with ".hactl-" are skipped, and so are sockets,
// devices and pipes.
func Snapshot(ctx context.Context, dir string) (Manifest, error) {
	return snapshot(ctx, dir, nil, DefaultHash)
}

// snapshot is Snapshot with hash algorithm alg, reusing the hashes in c
// (when not nil) of files whose size, mtime, inode and ctime are unchanged
// since they were hashed.
func snapshot(ctx context.Context, dir string, c *hashCache, alg string) (Manifest, error) {
	alg = hashAlg(alg)
	m := Manifest{Created: time.Now().UTC(), Hash: alg}
	if !knownHash(alg) {
		return m, fmt.Errorf("snapshot %s: unknown hash algorithm %q", dir, alg)
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return m, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return m, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	if !st.IsDir() {
		return m, fmt.Errorf("snapshot %s: not a directory", dir)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), internalPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e, ok, err := c.entry(p, filepath.ToSlash(rel), alg)
		if err != nil || !ok {
			return err
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	c.retain(m)
	if err != nil {
		return m, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	return m, nil
}

// statEntry builds the entry of one path, files hashed with alg; ok is
// false for types a snapshot skips (and for a file that vanished
// meanwhile).
func statEntry(p, rel, alg string) (Entry, bool, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	e := Entry{Path: rel, Mode: fi.Mode().Perm(), MTime: fi.ModTime().UTC()}
	switch {
	case fi.Mode().IsDir():
		e.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		if e.Link, err = os.Readlink(p); err != nil {
			return e, false, err
		}
	case fi.Mode().IsRegular():
		e.Type = TypeFile
		return hashStable(p, e, alg)
	default:
		return e, false, nil
	}
	return e, true, nil
}

// hashStable hashes the file at p and retries while it changes under us.
func hashStable(p string, e Entry, alg string) (Entry, bool, error) {
	for range snapshotRetries {
		before, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return e, false, nil
		}
		if err != nil {
			return e, false, err
		}
		sum, n, err := hashFile(p, alg)
		if errors.Is(err, fs.ErrNotExist) {
			return e, false, nil
		}
		if err != nil {
			return e, false, err
		}
		after, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if n == before.Size() && after.Size() == before.Size() && after.ModTime().Equal(before.ModTime()) && os.SameFile(before, after) {
			e.Size, e.Sum = n, sum
			e.Mode, e.MTime = after.Mode().Perm(), after.ModTime().UTC()
			return e, true, nil
		}
	}
	return e, false, fmt.Errorf("%s kept changing while it was read (%d attempts)", p, snapshotRetries)
}

// hashFile returns the hex digest under alg and the length of the file
// at p.
func hashFile(p, alg string) (string, int64, error) {
	h, err := newHash(alg)
	if err != nil {
		return "", 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	n, err := copyHash(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// localPath converts a manifest path to a path under root, refusing paths
// that would escape it.
func localPath(root, rel string) (string, error) {
	p := filepath.FromSlash(rel)
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("path %q escapes the data directory", rel)
	}
	return filepath.Join(root, p), nil
}

// validHash reports whether s looks like a hex 256-bit digest (both
// algorithms).
func validHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func openFile(p string) (*os.File, error) { return os.Open(p) }

// hashCache remembers file hashes between snapshots of one directory, so a
// replica that snapshots every interval re-reads only what changed (the
// check git's index uses: size, mtime, inode and ctime unchanged; ctime
// cannot be set from user space). Entries younger than racyWindow are not
// trusted, since a write in the same clock tick would not change them.
// Safe for concurrent use.
type hashCache struct {
	mu sync.Mutex
	m  map[string]cachedHash
}

type cachedHash struct {
	alg          string
	size         int64
	mtime, ctime int64
	ino          uint64
	sum          string
}

var racyWindow = 2 * time.Second

func newHashCache() *hashCache { return &hashCache{m: map[string]cachedHash{}} }

func statKey(fi fs.FileInfo) (cachedHash, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return cachedHash{}, false
	}
	return cachedHash{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ctime: st.Ctim.Sec*1e9 + st.Ctim.Nsec, ino: st.Ino}, true
}

// entry is statEntry with the cache consulted and filled. The cache holds
// one algorithm's hash per path; asking for another re-hashes.
func (c *hashCache) entry(p, rel, alg string) (Entry, bool, error) {
	if c == nil {
		return statEntry(p, rel, alg)
	}
	if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() {
		if k, ok := statKey(fi); ok {
			c.mu.Lock()
			h, hit := c.m[rel]
			c.mu.Unlock()
			k.sum, k.alg = h.sum, alg
			if hit && h == k && time.Since(time.Unix(0, k.ctime)) > racyWindow {
				return Entry{Path: rel, Type: TypeFile, Size: k.size, Sum: h.sum, Mode: fi.Mode().Perm(), MTime: fi.ModTime().UTC()}, true, nil
			}
		}
	}
	e, ok, err := statEntry(p, rel, alg)
	if err != nil || !ok || e.Type != TypeFile {
		return e, ok, err
	}
	if fi, err := os.Lstat(p); err == nil {
		if k, ok := statKey(fi); ok && k.size == e.Size && k.mtime == e.MTime.UnixNano() {
			k.sum, k.alg = e.Sum, alg
			c.mu.Lock()
			c.m[rel] = k
			c.mu.Unlock()
		}
	}
	return e, ok, nil
}

// retain drops cached paths that are no longer in m.
func (c *hashCache) retain(m Manifest) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.m {
		if _, ok := m.Lookup(p); !ok {
			delete(c.m, p)
		}
	}
}
