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

	"golang.org/x/sys/unix"
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
	return snapshotKeep(ctx, dir, c, alg, nil)
}

// snapshotKeep is snapshot keeping the content of the small files it
// reads in keep (when not nil), so that a push sends them without reading
// them again.
func snapshotKeep(ctx context.Context, dir string, c *hashCache, alg string, keep *contentStash) (Manifest, error) {
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
		e, ok, err := c.entry(p, filepath.ToSlash(rel), alg, keep)
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
	e, _, ok, err := statEntryKeep(p, rel, alg, nil, nil)
	return e, ok, err
}

// statEntryKeep is statEntry from fi, the Lstat of p when the caller has
// it (nil: stat here). It also returns the stat key of a hashed file as
// it was right after reading (for the hash cache; zero when unknown), and
// keeps the content of a small file in keep when it has room.
func statEntryKeep(p, rel, alg string, fi fs.FileInfo, keep *contentStash) (Entry, cachedHash, bool, error) {
	if fi == nil {
		var err error
		fi, err = os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return Entry{}, cachedHash{}, false, nil
		}
		if err != nil {
			return Entry{}, cachedHash{}, false, err
		}
	}
	e := Entry{Path: rel, Mode: fi.Mode().Perm(), MTime: fi.ModTime().UTC()}
	switch {
	case fi.Mode().IsDir():
		e.Type = TypeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		var err error
		if e.Link, err = os.Readlink(p); err != nil {
			return e, cachedHash{}, false, err
		}
	case fi.Mode().IsRegular():
		e.Type = TypeFile
		return hashStable(p, e, alg, fi, keep)
	default:
		return e, cachedHash{}, false, nil
	}
	return e, cachedHash{}, true, nil
}

// hashStable hashes the file at p and retries while it changes under us.
// before is the Lstat of p made just before (nil: stat here). The file is
// read once: the Lstat before opening it and an fstat of the open file
// after reading it must agree on inode, size and mtime.
func hashStable(p string, e Entry, alg string, before fs.FileInfo, keep *contentStash) (Entry, cachedHash, bool, error) {
	for range snapshotRetries {
		if before == nil {
			var err error
			before, err = os.Lstat(p)
			if errors.Is(err, fs.ErrNotExist) {
				return e, cachedHash{}, false, nil
			}
			if err != nil {
				return e, cachedHash{}, false, err
			}
		}
		want := keep.wants(before.Size())
		sum, n, after, content, err := readHash(p, alg, before.Size(), want)
		if errors.Is(err, fs.ErrNotExist) {
			return e, cachedHash{}, false, nil
		}
		if err != nil {
			return e, cachedHash{}, false, err
		}
		b, ok := before.Sys().(*syscall.Stat_t)
		if ok && n == before.Size() && after.Size == before.Size() && after.Mtim == unix.Timespec(b.Mtim) && after.Ino == b.Ino && after.Dev == b.Dev {
			e.Size, e.Sum = n, sum
			e.Mode, e.MTime = fs.FileMode(after.Mode).Perm(), time.Unix(after.Mtim.Unix()).UTC()
			k := cachedHash{alg: alg, size: after.Size, mtime: after.Mtim.Nano(), ctime: after.Ctim.Nano(), ino: after.Ino, sum: sum}
			if content != nil {
				keep.put(e, content)
			}
			return e, k, true, nil
		}
		before = nil
	}
	return e, cachedHash{}, false, fmt.Errorf("%s kept changing while it was read (%d attempts)", p, snapshotRetries)
}

// hashFile returns the hex digest under alg and the length of the file
// at p.
func hashFile(p, alg string) (string, int64, error) {
	sum, n, _, _, err := readHash(p, alg, 0, false)
	return sum, n, err
}

// openRaw opens p read-only with open(2) itself: a descriptor os.Open
// returns is first offered to Go's poller, which costs four fcntl calls
// and a failing epoll_ctl per regular file (the poller does not take
// them). It returns a blocking descriptor; the caller closes it.
func openRaw(p string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

// openFileRaw is openRaw as an *os.File (os.NewFile costs one fcntl and
// does not register the descriptor with the poller).
func openFileRaw(p string, flags int, mode uint32) (*os.File, error) {
	fd, err := openRaw(p, flags, mode)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), p), nil
}

// readHash reads the file at p and returns its digest under alg, its
// length, an fstat of it taken after reading, and, when keep is set and
// the file is still size bytes long, its content.
func readHash(p, alg string, size int64, keep bool) (string, int64, unix.Stat_t, []byte, error) {
	var st unix.Stat_t
	h, err := newHash(alg)
	if err != nil {
		return "", 0, st, nil, err
	}
	fd, err := openRaw(p, unix.O_RDONLY, 0)
	if err != nil {
		return "", 0, st, nil, err
	}
	defer unix.Close(fd)
	var content, buf []byte
	if keep {
		// One byte more, to see a file that grew.
		content = make([]byte, size+1)
		buf = content
	} else {
		bp := smallPool.Get().(*[]byte)
		defer smallPool.Put(bp)
		buf = *bp
	}
	var n int64
	for {
		off := 0
		if keep {
			off = int(n)
			if off == len(buf) {
				// Grew past the buffer: the size check fails anyway.
				keep, content = false, nil
				off = 0
			}
		}
		m, err := unix.Read(fd, buf[off:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", 0, st, nil, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		if m == 0 {
			break
		}
		h.Write(buf[off : off+m])
		n += int64(m)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		return "", 0, st, nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	if content != nil {
		content = content[:n]
	}
	return hex.EncodeToString(h.Sum(nil)), n, st, content, nil
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

func openFile(p string) (*os.File, error) { return openFileRaw(p, unix.O_RDONLY, 0) }

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

// entry is statEntry with the cache consulted and filled, keeping the
// content of small files it reads in keep (when not nil and with room).
// The cache holds one algorithm's hash per path; asking for another
// re-hashes.
func (c *hashCache) entry(p, rel, alg string, keep *contentStash) (Entry, bool, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	if c != nil && fi.Mode().IsRegular() {
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
	e, k, ok, err := statEntryKeep(p, rel, alg, fi, keep)
	if c == nil || err != nil || !ok || e.Type != TypeFile || k.alg == "" {
		return e, ok, err
	}
	c.mu.Lock()
	c.m[rel] = k
	c.mu.Unlock()
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
