package data

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoReplica is wrapped by a sync Write that no second replica
// acknowledged: the write is refused rather than kept on one node only.
var ErrNoReplica = errors.New("no replica acknowledged the write")

// resumeThreshold is the file size from which pushes are resumable.
const resumeThreshold = 8 << 20

// pushWorkers is how many files of smallFileSize or more a push sends at
// once, and smallPushWorkers how many smaller ones. Many small files in
// flight let the receiver commit them in large groups (one syncfs per
// group instead of fsyncs per file, see Server); larger files keep fewer
// in flight, each holding up to 4 MiB of buffers on the receiver.
const (
	pushWorkers      = 8
	smallPushWorkers = 64
	smallFileSize    = 1 << 20
)

// pushKeepBytes bounds the content of small files (under smallFileSize)
// that a push keeps in memory from its snapshot, where each is read and
// hashed, to its upload, which sends that same buffer instead of reading
// the file again. Files past the budget are read again when sent.
var pushKeepBytes int64 = 64 << 20

// contentStash holds file contents read by a snapshot, by path, within a
// byte budget. Safe for concurrent use; a nil stash keeps nothing.
type contentStash struct {
	mu   sync.Mutex
	left int64
	m    map[string]keptContent
}

type keptContent struct {
	e Entry
	b []byte
}

func newContentStash(budget int64) *contentStash {
	return &contentStash{left: budget, m: map[string]keptContent{}}
}

// wants reports whether a file of size bytes should be kept.
func (s *contentStash) wants(size int64) bool {
	if s == nil || size >= smallFileSize {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return size+1 <= s.left
}

// put keeps b, the content of e, if the budget allows.
func (s *contentStash) put(e Entry, b []byte) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[e.Path]; ok {
		s.left += int64(cap(old.b))
		delete(s.m, e.Path)
	}
	if int64(cap(b)) > s.left {
		return
	}
	s.left -= int64(cap(b))
	s.m[e.Path] = keptContent{e: e, b: b}
}

// take removes and returns the content kept for e, or nil when none was
// kept for that very version (path, size, mtime and digest).
func (s *contentStash) take(e Entry) []byte {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.m[e.Path]
	if !ok {
		return nil
	}
	delete(s.m, e.Path)
	s.left += int64(cap(k.b))
	if k.e.Size != e.Size || !k.e.MTime.Equal(e.MTime) || k.e.Sum != e.Sum {
		return nil
	}
	return k.b
}

// retain drops the contents of paths not in list.
func (s *contentStash) retain(list []Entry) {
	if s == nil {
		return
	}
	want := make(map[string]bool, len(list))
	for _, e := range list {
		want[e.Path] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, k := range s.m {
		if !want[p] {
			s.left += int64(cap(k.b))
			delete(s.m, p)
		}
	}
}

// ReplicatorOptions configure a Replicator.
type ReplicatorOptions struct {
	// Dir is the local copy of the data.
	Dir string
	// Mode is lang.ReplicationSync or lang.ReplicationAsync.
	Mode string
	// Interval is the period of the push loop (Run); default 30 s.
	Interval time.Duration
	// Peers returns the replication addresses (host:port, optionally
	// "name=host:port") of the other live replicas.
	Peers func() []string
	// TLS is the client configuration (see MutualTLS).
	TLS    *tls.Config
	Logger *slog.Logger
	// Timeout bounds one request to a peer that sends no data (default 30 s).
	Timeout time.Duration
}

// Replicator keeps the replicas of one data directory in step: Write
// stores a file on this node and at least one peer (sync), and Run pushes
// whatever changed to every peer on an interval (both modes; in sync mode
// it catches up a peer that missed writes while it was away).
type Replicator struct {
	o     ReplicatorOptions
	hc    *http.Client
	log   *slog.Logger
	cache *hashCache
	wg    sync.WaitGroup // background deliveries of sync writes
	mu    sync.Mutex
	prev  map[string]bool      // paths present at the previous push round
	tomb  map[string]time.Time // deleted paths -> when the deletion was seen
}

// NewReplicator returns a Replicator; it starts nothing.
func NewReplicator(o ReplicatorOptions) *Replicator {
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Peers == nil {
		o.Peers = func() []string { return nil }
	}
	return &Replicator{o: o, hc: newHTTPClient(o.TLS, o.Timeout), log: o.Logger, tomb: map[string]time.Time{}, cache: newHashCache()}
}

func newHTTPClient(tc *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:       tc,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   pushWorkers,
		ResponseHeaderTimeout: timeout,
		TLSHandshakeTimeout:   timeout,
		IdleConnTimeout:       90 * time.Second,
	}}
}

// Close waits for background deliveries to end and closes idle
// connections.
func (r *Replicator) Close() {
	r.wg.Wait()
	r.hc.CloseIdleConnections()
}

// peerAddr splits "name=host:port" into its parts; a bare address is its
// own name.
func peerAddr(p string) (name, addr string) {
	if n, a, ok := strings.Cut(p, "="); ok {
		return n, a
	}
	return p, p
}

// Write stores content at relpath durably: staged and fsynced locally,
// sent to every peer, and committed (renamed into place, directory
// fsynced) only once at least one peer has stored and fsynced it. When no
// peer acknowledges, the staged file is dropped and the error wraps
// ErrNoReplica: an acknowledged write is always on two replicas, and a
// refused one is on none. Deliveries to the other peers finish in the
// background (Close waits for them).
func (r *Replicator) Write(ctx context.Context, relpath string, content []byte) error {
	dst, err := localPath(r.o.Dir, filepath.ToSlash(relpath))
	if err != nil || strings.HasPrefix(filepath.Base(dst), internalPrefix) {
		return fmt.Errorf("write %q: invalid path", relpath)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), internalPrefix+"write-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			os.Remove(tmp)
		}
	}()
	_, err = f.Write(content)
	if err == nil {
		err = f.Chmod(0o640)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	now := time.Now()
	if err := os.Chtimes(tmp, now, now); err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	sum, err := sumBytes(DefaultHash, content)
	if err != nil {
		return fmt.Errorf("write %s: %w", relpath, err)
	}
	e := Entry{Path: filepath.ToSlash(relpath), Type: TypeFile, Size: int64(len(content)), Sum: sum, Mode: 0o640, MTime: st.ModTime()}

	peers := r.o.Peers()
	if len(peers) == 0 {
		return fmt.Errorf("write %s: no peers: %w", relpath, ErrNoReplica)
	}
	acks := make(chan error, len(peers))
	for _, p := range peers {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			_, addr := peerAddr(p)
			// Deliveries outlive a caller that returns after the first ack.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Timeout)
			defer cancel()
			err := r.store(dctx, addr, DefaultHash, e, bytes.NewReader(content), 0, true)
			if err != nil {
				err = fmt.Errorf("replica %s: %w", p, err)
			}
			acks <- err
		}()
	}
	var errs []error
	for range peers {
		var err error
		select {
		case err = <-acks:
		case <-ctx.Done():
			return fmt.Errorf("write %s: %w", relpath, ctx.Err())
		}
		if err == nil {
			if err := os.Rename(tmp, dst); err != nil {
				return fmt.Errorf("write %s: commit: %w", relpath, err)
			}
			committed = true
			if err := syncDir(filepath.Dir(dst)); err != nil {
				return fmt.Errorf("write %s: commit: %w", relpath, err)
			}
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("write %s: %w: %w", relpath, ErrNoReplica, errors.Join(errs...))
}

// sumParams sets the digest parameters of a store: hash=&sum=, or
// sha256= alone for SHA-256 (which peers older than the hash parameter
// understand).
func sumParams(q url.Values, alg, sum string) {
	if hashAlg(alg) == HashSHA256 {
		q.Set("sha256", sum)
		return
	}
	q.Set("hash", alg)
	q.Set("sum", sum)
}

// store sends one file, whose Sum is under alg, to a peer. force skips
// the peer's last-writer-wins check (sync writes). A 409 from the peer
// (its copy is newer) is errPeerNewer.
func (r *Replicator) store(ctx context.Context, addr, alg string, e Entry, body io.Reader, offset int64, force bool) error {
	q := url.Values{}
	sumParams(q, alg, e.Sum)
	q.Set("size", strconv.FormatInt(e.Size, 10))
	q.Set("mode", strconv.FormatUint(uint64(e.Mode.Perm()), 8))
	q.Set("mtime", strconv.FormatInt(e.MTime.UnixNano(), 10))
	if offset > 0 || e.Size >= resumeThreshold {
		q.Set("resume", "1")
		q.Set("offset", strconv.FormatInt(offset, 10))
	}
	if force {
		q.Set("force", "1")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, fileURL(addr, "/v1/file/", e.Path)+"?"+q.Encode(), body)
	if err != nil {
		return err
	}
	req.ContentLength = e.Size - offset
	return r.do(req)
}

var errPeerNewer = errors.New("peer has a newer copy")

func (r *Replicator) do(req *http.Request) error {
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return storeError(req.Method+" "+req.URL.Path, resp.StatusCode, strings.TrimSpace(string(msg)))
}

// storeError is the error of a store the peer refused with status: one
// that wraps errPeerNewer for 409 (the peer's copy is newer, skipped),
// else one naming what was asked. Shared by single stores and batches.
func storeError(what string, status int, msg string) error {
	if status == http.StatusConflict {
		return fmt.Errorf("%w: %s", errPeerNewer, msg)
	}
	return fmt.Errorf("%s: %d %s: %s", what, status, http.StatusText(status), msg)
}

func fileURL(addr, prefix, rel string) string {
	u := url.URL{Scheme: "https", Host: addr, Path: prefix + rel}
	return u.String()
}

// fetchManifest returns a peer's manifest, asking for hash algorithm alg.
// A peer older than the algorithm parameter ignores it and answers with
// SHA-256 (Manifest.Alg says which it is).
func fetchManifest(ctx context.Context, hc *http.Client, addr, alg string) (Manifest, error) {
	var m Manifest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/manifest?hash="+url.QueryEscape(alg), nil)
	if err != nil {
		return m, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return m, fmt.Errorf("manifest: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return m, fmt.Errorf("manifest: %w", err)
	}
	return m, nil
}

// PushStats counts what one push sent.
type PushStats struct {
	Sent      int   `json:"sent"`
	SentBytes int64 `json:"sent_bytes"`
	Copied    int   `json:"copied"`  // stored by the peer from a local copy
	Deleted   int   `json:"deleted"` // deletions propagated
	Skipped   int   `json:"skipped"` // the peer's copy was newer
}

// Push sends a peer every file it lacks or holds an older version of,
// and the deletions seen since earlier pushes (last writer wins per path,
// by modification time; see docs/data.md).
func (r *Replicator) Push(ctx context.Context, peer string) (PushStats, error) {
	var ps PushStats
	_, addr := peerAddr(peer)
	keep := newContentStash(pushKeepBytes)
	local, err := snapshotKeep(ctx, r.o.Dir, r.cache, DefaultHash, keep)
	if err != nil {
		return ps, err
	}
	r.noteDeletions(local)
	remote, err := fetchManifest(ctx, r.hc, addr, DefaultHash)
	if err != nil {
		return ps, fmt.Errorf("push to %s: %w", peer, err)
	}
	alg := remote.Alg()
	// A peer older than the algorithm field is older than batches too.
	canBatch := alg == local.Alg()
	if alg != local.Alg() {
		// An older peer hashes with SHA-256 only: compare and send in its
		// algorithm.
		if !knownHash(alg) {
			return ps, fmt.Errorf("push to %s: peer hashes with unknown algorithm %q", peer, alg)
		}
		keep = newContentStash(pushKeepBytes)
		if local, err = snapshotKeep(ctx, r.o.Dir, r.cache, alg, keep); err != nil {
			return ps, err
		}
	}
	remoteByHash := map[string]string{}
	for _, e := range remote.Entries {
		if e.Type == TypeFile {
			remoteByHash[e.Sum] = e.Path
		}
	}
	// Plan: one upload per content; other paths with that content are
	// copied by the peer afterwards.
	var uploads, copies []Entry
	planned := map[string]bool{}
	for _, e := range local.Entries {
		if e.Type != TypeFile {
			continue
		}
		if re, ok := remote.Lookup(e.Path); ok && re.Type == TypeFile && (re.Sum == e.Sum || newer(re, e)) {
			if re.Sum != e.Sum {
				ps.Skipped++
			}
			continue
		}
		if _, ok := remoteByHash[e.Sum]; ok || planned[e.Sum] {
			copies = append(copies, e)
			continue
		}
		planned[e.Sum] = true
		uploads = append(uploads, e)
	}
	keep.retain(uploads)
	var mu sync.Mutex
	var errs []error
	run1 := func(list []Entry, workers int, f func(Entry) (int64, error), count *int) {
		work := make(chan Entry)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for e := range work {
					n, err := f(e)
					mu.Lock()
					switch {
					case errors.Is(err, errPeerNewer):
						ps.Skipped++
					case err != nil:
						errs = append(errs, fmt.Errorf("%s: %w", e.Path, err))
					default:
						*count++
						ps.SentBytes += n
					}
					mu.Unlock()
				}
			}()
		}
		for _, e := range list {
			if ctx.Err() != nil {
				break
			}
			work <- e
		}
		close(work)
		wg.Wait()
	}
	run := func(list []Entry, f func(Entry) (int64, error), count *int) {
		var small, large []Entry
		for _, e := range list {
			if e.Size < smallFileSize {
				small = append(small, e)
			} else {
				large = append(large, e)
			}
		}
		run1(small, smallPushWorkers, f, count)
		run1(large, pushWorkers, f, count)
	}
	// Small files go in batches (POST /v1/batch), a few batches in
	// flight; a peer without the endpoint gets them one PUT each.
	var batchable, single []Entry
	for _, e := range uploads {
		if canBatch && e.Size < batchMaxFile {
			batchable = append(batchable, e)
		} else {
			single = append(single, e)
		}
	}
	single = append(single, r.pushBatches(ctx, addr, alg, batchable, keep, &mu, &ps, &errs)...)
	run(single, func(e Entry) (int64, error) { return r.upload(ctx, addr, alg, e, keep.take(e)) }, &ps.Sent)
	run(copies, func(e Entry) (int64, error) {
		from, ok := remoteByHash[e.Sum]
		if !ok {
			from = pathOfHash(uploads, e.Sum)
		}
		return 0, r.copyOnPeer(ctx, addr, alg, e, from)
	}, &ps.Copied)
	for p, when := range r.tombstones() {
		re, ok := remote.Lookup(p)
		if !ok || re.MTime.After(when) {
			continue
		}
		q := url.Values{"mtime": {strconv.FormatInt(when.UnixNano(), 10)}}
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, fileURL(addr, "/v1/file/", p)+"?"+q.Encode(), nil)
		if err != nil {
			return ps, err
		}
		switch err := r.do(req); {
		case errors.Is(err, errPeerNewer):
			ps.Skipped++
		case err != nil:
			errs = append(errs, fmt.Errorf("delete %s: %w", p, err))
		default:
			ps.Deleted++
		}
	}
	if err := ctx.Err(); err != nil {
		return ps, err
	}
	if len(errs) > 0 {
		return ps, fmt.Errorf("push to %s: %d failed: %w", peer, len(errs), errors.Join(errs...))
	}
	return ps, nil
}

// pushBatches sends list in batches, batchesInFlight at a time, and
// counts the outcomes in ps and errs (under mu) as single uploads would.
// It returns the files left to send one by one: all of them once the
// peer answers that it has no batch endpoint (their kept content is put
// back into keep).
func (r *Replicator) pushBatches(ctx context.Context, addr, alg string, list []Entry, keep *contentStash, mu *sync.Mutex, ps *PushStats, errs *[]error) []Entry {
	work := make(chan []Entry)
	var (
		wg       sync.WaitGroup
		noBatch  atomic.Bool
		fallback []Entry
	)
	for range batchesInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				if noBatch.Load() {
					mu.Lock()
					fallback = append(fallback, b...)
					mu.Unlock()
					continue
				}
				bes := make([]batchEntry, len(b))
				for i, e := range b {
					bes[i] = batchEntry{e: e, kept: keep.take(e)}
				}
				res, err := r.storeBatch(ctx, addr, alg, bes)
				mu.Lock()
				switch {
				case errors.Is(err, errNoBatch):
					noBatch.Store(true)
					for _, be := range bes {
						if be.kept != nil {
							keep.put(be.e, be.kept)
						}
					}
					fallback = append(fallback, b...)
				case err != nil:
					for _, e := range b {
						*errs = append(*errs, fmt.Errorf("%s: %w", e.Path, err))
					}
				default:
					for i, e := range b {
						switch err := res[i]; {
						case errors.Is(err, errPeerNewer):
							ps.Skipped++
						case err != nil:
							*errs = append(*errs, fmt.Errorf("%s: %w", e.Path, err))
						default:
							ps.Sent++
							ps.SentBytes += e.Size
						}
					}
				}
				mu.Unlock()
			}
		}()
	}
	var cur []Entry
	var curBytes int64
	for _, e := range list {
		if ctx.Err() != nil {
			break
		}
		if len(cur) > 0 && (len(cur) == batchMaxFiles || curBytes+e.Size > batchMaxBytes) {
			work <- cur
			cur, curBytes = nil, 0
		}
		cur = append(cur, e)
		curBytes += e.Size
	}
	if len(cur) > 0 && ctx.Err() == nil {
		work <- cur
	}
	close(work)
	wg.Wait()
	return fallback
}

// newer reports whether a is a newer version than b: a later mtime, or
// on equal mtimes the larger hash (an arbitrary but shared tie-break).
func newer(a, b Entry) bool {
	if !a.MTime.Equal(b.MTime) {
		return a.MTime.After(b.MTime)
	}
	return a.Sum > b.Sum
}

func pathOfHash(list []Entry, h string) string {
	for _, e := range list {
		if e.Sum == h {
			return e.Path
		}
	}
	return ""
}

// upload sends a file, resuming a large one the peer has partly received.
// kept, when not nil, is the file's content as the snapshot read it.
func (r *Replicator) upload(ctx context.Context, addr, alg string, e Entry, kept []byte) (int64, error) {
	if kept != nil {
		return e.Size, r.store(ctx, addr, alg, e, bytes.NewReader(kept), 0, false)
	}
	p, err := localPath(r.o.Dir, e.Path)
	if err != nil {
		return 0, err
	}
	f, err := openFile(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var offset int64
	if e.Size >= resumeThreshold {
		offset = r.partialSize(ctx, addr, e.Sum)
		if offset > e.Size {
			offset = 0
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return 0, err
		}
	}
	// The peer checks the hash: a file that changed since the snapshot is
	// refused (422) and sent again on the next round.
	err = r.store(ctx, addr, alg, e, io.LimitReader(f, e.Size-offset), offset, false)
	return e.Size - offset, err
}

func (r *Replicator) partialSize(ctx context.Context, addr, sum string) int64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/v1/partial/"+sum, nil)
	if err != nil {
		return 0
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (r *Replicator) copyOnPeer(ctx context.Context, addr, alg string, e Entry, from string) error {
	q := url.Values{}
	q.Set("from", from)
	sumParams(q, alg, e.Sum)
	q.Set("size", strconv.FormatInt(e.Size, 10))
	q.Set("mode", strconv.FormatUint(uint64(e.Mode.Perm()), 8))
	q.Set("mtime", strconv.FormatInt(e.MTime.UnixNano(), 10))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fileURL(addr, "/v1/copy/", e.Path)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return r.do(req)
}

// tombstoneTTL is how long a deletion is remembered and propagated.
const tombstoneTTL = 24 * time.Hour

// noteDeletions records paths that disappeared since the previous round.
func (r *Replicator) noteDeletions(local Manifest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	cur := map[string]bool{}
	for _, e := range local.Entries {
		if e.Type == TypeFile {
			cur[e.Path] = true
			delete(r.tomb, e.Path)
		}
	}
	if r.prev != nil {
		for p := range r.prev {
			if !cur[p] {
				if _, ok := r.tomb[p]; !ok {
					r.tomb[p] = now
				}
			}
		}
	}
	for p, t := range r.tomb {
		if now.Sub(t) > tombstoneTTL {
			delete(r.tomb, p)
		}
	}
	r.prev = cur
}

// Deleted reports whether rel was deleted from the local copy, and when:
// a recorded deletion, or a file present at the previous push round and
// gone now (deleted since; now is used as its time). Set it as the
// Server's Deleted hook of the same directory.
func (r *Replicator) Deleted(rel string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.tomb[rel]; ok {
		return t, true
	}
	if !r.prev[rel] {
		return time.Time{}, false
	}
	p, err := localPath(r.o.Dir, rel)
	if err != nil {
		return time.Time{}, false
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		return time.Time{}, false
	}
	now := time.Now()
	r.tomb[rel] = now
	return now, true
}

func (r *Replicator) tombstones() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]time.Time, len(r.tomb))
	for p, t := range r.tomb {
		out[p] = t
	}
	return out
}

// Run pushes to every peer every Interval until ctx ends. A peer that
// cannot be reached is logged and tried again next round.
func (r *Replicator) Run(ctx context.Context) {
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		r.PushAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// PushAll runs one push round to every current peer and returns the
// errors by peer.
func (r *Replicator) PushAll(ctx context.Context) map[string]error {
	out := map[string]error{}
	for _, p := range r.o.Peers() {
		ps, err := r.Push(ctx, p)
		if err != nil {
			out[p] = err
			if ctx.Err() == nil {
				r.log.Warn("replication push failed", "dir", r.o.Dir, "peer", p, "err", err)
			}
			continue
		}
		if ps.Sent+ps.Copied+ps.Deleted > 0 {
			r.log.Info("replicated", "dir", r.o.Dir, "peer", p, "sent", ps.Sent, "bytes", ps.SentBytes, "copied", ps.Copied, "deleted", ps.Deleted)
		}
	}
	return out
}

// Pull makes dir an exact, verified copy of a peer's data: the peer's
// manifest is fetched, every file is fetched (or copied from dir when
// dir already holds the same content) and checked against its hash in a
// temporary directory, which then replaces dir atomically. A file that
// changes on the peer during the pull fails its check; the pull is
// retried a few times.
func Pull(ctx context.Context, tc *tls.Config, peer, dir string) (Manifest, error) {
	_, addr := peerAddr(peer)
	hc := newHTTPClient(tc, 30*time.Second)
	defer hc.CloseIdleConnections()
	var last error
	for range 3 {
		m, err := fetchManifest(ctx, hc, addr, DefaultHash)
		if err != nil {
			return m, fmt.Errorf("pull from %s: %w", peer, err)
		}
		fetch := func(ctx context.Context, e Entry) (io.ReadCloser, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileURL(addr, "/v1/file/", e.Path), nil)
			if err != nil {
				return nil, err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				return nil, fmt.Errorf("get %s: %s: %w", e.Path, resp.Status, ErrCorrupt)
			}
			return resp.Body, nil
		}
		err = materialize(ctx, m, dir, fetch)
		if err == nil {
			return m, nil
		}
		last = err
		if !errors.Is(err, ErrCorrupt) {
			break
		}
	}
	return Manifest{}, fmt.Errorf("pull from %s into %s: %w", peer, dir, last)
}
