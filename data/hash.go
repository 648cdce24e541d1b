package data

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/sys/unix"
)

// Content hash algorithms of a Manifest. Both give 256-bit digests, written
// as 64 hex digits.
const (
	// HashSHA256 is SHA-256: format-1 backups, and manifests without a
	// "hash" field (written before BLAKE2b, or served to an older peer).
	HashSHA256 = "sha256"
	// HashBLAKE2b is BLAKE2b-256 (unkeyed), about three times faster than
	// SHA-256 on CPUs without SHA extensions. New snapshots use it.
	HashBLAKE2b = "blake2b-256"
	// DefaultHash is the algorithm of new snapshots, backups and pushes.
	DefaultHash = HashBLAKE2b
)

// hashAlg normalises an algorithm name: "" is SHA-256 (the only one before
// the field existed).
func hashAlg(alg string) string {
	if alg == "" {
		return HashSHA256
	}
	return alg
}

// newHash returns a fresh hash of alg, or an error for an unknown one.
func newHash(alg string) (hash.Hash, error) {
	switch hashAlg(alg) {
	case HashSHA256:
		return sha256.New(), nil
	case HashBLAKE2b:
		return blake2b.New256(nil)
	}
	return nil, fmt.Errorf("unknown hash algorithm %q", alg)
}

// knownHash reports whether alg is an algorithm this package implements.
func knownHash(alg string) bool {
	_, err := newHash(alg)
	return err == nil
}

// sumBytes returns the hex digest of b under alg.
func sumBytes(alg string, b []byte) (string, error) {
	h, err := newHash(alg)
	if err != nil {
		return "", err
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// UnmarshalJSON reads an entry, accepting the "sha256" key of manifests
// written before the hash algorithm was recorded.
func (e *Entry) UnmarshalJSON(b []byte) error {
	type plain Entry
	var v struct {
		plain
		Legacy string `json:"sha256"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Entry(v.plain)
	if e.Sum == "" {
		e.Sum = v.Legacy
	}
	return nil
}

// legacyManifest is the JSON of a SHA-256 manifest as peers older than
// the "hash" field read it (content digests under "sha256").
func legacyManifest(m Manifest) any {
	type entry struct {
		Entry
		Sum    string `json:"sum,omitempty"`
		SHA256 string `json:"sha256,omitempty"`
	}
	type manifest struct {
		Manifest
		Entries []entry `json:"entries"`
	}
	out := manifest{Manifest: m, Entries: make([]entry, len(m.Entries))}
	for i, e := range m.Entries {
		out.Entries[i] = entry{Entry: e, SHA256: e.Sum}
	}
	out.Manifest.Hash = ""
	return out
}

// Receiving content: the reader is drained by the calling goroutine (for a
// network body that is where TLS decryption runs), each chunk is written to
// the file there, and hashed in a second goroutine, so hashing overlaps
// reading and writing. Every writebackChunk bytes, writeback of what was
// written is started (sync_file_range SYNC_FILE_RANGE_WRITE, a hint that
// returns at once), so the final fsync waits only for the tail instead of
// the whole file.
const (
	copyBufSize    = 1 << 20
	copyBufs       = 4
	writebackChunk = 8 << 20
)

// smallBufSize is the buffer of content that fits in it (most files of
// a mail or git directory), so small files never touch a large buffer.
const smallBufSize = 64 << 10

// bufPool and smallPool hold copyBufSize and smallBufSize buffers (as
// *[]byte).
var (
	bufPool   = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
)

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// copyHash copies r into w (a hash, usually) through a pooled buffer.
func copyHash(w io.Writer, r io.Reader) (int64, error) {
	b := smallPool.Get().(*[]byte)
	defer smallPool.Put(b)
	// Hide a WriterTo (*os.File has one): it would allocate its own
	// buffer instead of using b.
	return io.CopyBuffer(w, struct{ io.Reader }{r}, *b)
}

// receive copies up to limit bytes of r to f (at its current offset, which
// is off) while h hashes them, and returns the bytes copied. It does not
// fsync f. Content that fits one buffer is copied and hashed inline.
func receive(f *os.File, off int64, r io.Reader, limit int64, h hash.Hash) (int64, error) {
	if limit <= copyBufSize {
		pool := &bufPool
		if limit <= smallBufSize {
			pool = &smallPool
		}
		bp := pool.Get().(*[]byte)
		defer pool.Put(bp)
		n, err := io.ReadFull(r, (*bp)[:limit])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		}
		if n > 0 {
			if _, werr := f.Write((*bp)[:n]); werr != nil {
				return 0, werr
			}
			h.Write((*bp)[:n])
		}
		return int64(n), err
	}
	free := make(chan []byte, copyBufs)
	for range copyBufs {
		bp := getBuf()
		defer putBuf(bp)
		free <- *bp
	}
	full := make(chan []byte, copyBufs)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range full {
			h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	var n int64
	var err error
	flushed := off // start of the range not yet handed to writeback
	for n < limit {
		b := <-free
		if rem := limit - n; rem < int64(len(b)) {
			b = b[:rem]
		}
		var m int
		m, err = io.ReadAtLeast(r, b, 1)
		if m > 0 {
			if _, werr := f.Write(b[:m]); werr != nil {
				err = werr
				free <- b
				break
			}
			n += int64(m)
			full <- b[:m]
			if end := off + n; end-flushed >= writebackChunk {
				// A hint: failure (an fs without it) costs only speed.
				unix.SyncFileRange(int(f.Fd()), flushed, end-flushed, unix.SYNC_FILE_RANGE_WRITE)
				flushed = end
			}
		} else {
			free <- b
		}
		if err != nil {
			break
		}
	}
	close(full)
	<-hashed
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return n, err
}
