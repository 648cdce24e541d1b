package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Batch stores (POST /v1/batch?hash=ALG). The body is a sequence of
// records, each a JSON header line (batchHeader, ending in '\n')
// followed by exactly size bytes of content. Every record is handled like
// a non-resumable PUT of that file: same path checks, temporary file
// beside the destination, digest and size verified, queued in the same
// group commit (so a 2xx status means durable), 409 when the local copy
// is newer or was deleted later. The reply, sent once every record is
// committed or has failed, is a JSON array with one batchStatus per
// record, in order. A body that cannot be read to its end (truncated,
// bad framing, a record over the limits) fails the whole request with
// nothing committed. A peer without the endpoint answers 404; the sender
// then falls back to one PUT per file.
const (
	// batchMaxFile: files smaller than this are sent in batches.
	batchMaxFile = 256 << 10
	// batchMaxBytes and batchMaxFiles bound the content and the number
	// of records of one batch the sender builds.
	batchMaxBytes = 1 << 20
	batchMaxFiles = 64
	// batchMaxRecords bounds the records a server accepts in one request,
	// batchMaxHeader the length of one header line.
	batchMaxRecords = 1024
	batchMaxHeader  = 4096
	// batchesInFlight is how many batches a push keeps in flight.
	batchesInFlight = 8
)

// batchHeader is the header of one record of a batch.
type batchHeader struct {
	Path  string `json:"path"`
	Sum   string `json:"sum"`
	Size  int64  `json:"size"`
	Mode  uint32 `json:"mode"`  // permission bits
	MTime int64  `json:"mtime"` // Unix nanoseconds
	Force bool   `json:"force,omitempty"`
}

// batchStatus is the outcome of one record: an HTTP status code as a PUT
// of that file would have answered, and its error message.
type batchStatus struct {
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// validateStore checks a store's parameters, from a PUT's query
// (parseStore) or a batch record's header: a path inside the data
// directory and outside hactl's own files, a known hash algorithm, a
// digest, a size.
func validateStore(sp storeParams) error {
	bad := func(what string) error { return httpError{http.StatusBadRequest, "bad " + what} }
	if _, err := localPath("/", sp.rel); err != nil || strings.HasPrefix(sp.rel, internalPrefix) || strings.Contains("/"+sp.rel, "/"+internalPrefix) {
		return bad("path")
	}
	if !knownHash(sp.alg) {
		return bad("hash algorithm")
	}
	if !validHash(sp.sum) {
		return bad("content digest")
	}
	if sp.size < 0 {
		return bad("size")
	}
	return nil
}

// batch stores the records of a POST /v1/batch.
func (s *Server) batch(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	alg := hashAlg(q.Get("hash"))
	if q.Get("hash") == "" || !knownHash(alg) {
		return httpError{http.StatusBadRequest, "bad hash algorithm"}
	}
	br := bufio.NewReaderSize(r.Body, 64<<10)
	var (
		status []batchStatus
		reqs   []*commitReq
		idx    []int // record index of each of reqs
	)
	defer func() {
		for _, c := range reqs {
			c.f.Close()
			if !c.renamed {
				os.Remove(c.tmp)
			}
		}
	}()
	for {
		line, err := readHeaderLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return httpError{http.StatusBadRequest, fmt.Sprintf("record %d: %v", len(status), err)}
		}
		if len(status) == batchMaxRecords {
			return httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d records", batchMaxRecords)}
		}
		var bh batchHeader
		if err := json.Unmarshal(line, &bh); err != nil {
			return httpError{http.StatusBadRequest, fmt.Sprintf("record %d: bad header: %v", len(status), err)}
		}
		if bh.Size < 0 || bh.Size >= batchMaxFile {
			return httpError{http.StatusBadRequest, fmt.Sprintf("record %d: bad size %d (at most %d)", len(status), bh.Size, batchMaxFile-1)}
		}
		sp := storeParams{rel: bh.Path, alg: alg, sum: bh.Sum, size: bh.Size, mode: fs.FileMode(bh.Mode).Perm(), mtime: time.Unix(0, bh.MTime), force: bh.Force}
		c, err := s.receiveRecord(sp, br)
		if err != nil {
			var he httpError
			if !errors.As(err, &he) {
				// The content could not be read: the framing is lost.
				return httpError{http.StatusBadRequest, fmt.Sprintf("record %d (%s): %v", len(status), bh.Path, err)}
			}
			status = append(status, batchStatus{Status: he.code, Error: he.msg})
			continue
		}
		reqs = append(reqs, c)
		idx = append(idx, len(status))
		status = append(status, batchStatus{Status: http.StatusNoContent})
	}
	// Committed together, in the group commit shared with other stores.
	s.commitAll(reqs)
	for i, c := range reqs {
		if err := <-c.done; err != nil {
			code := http.StatusInternalServerError
			var he httpError
			if errors.As(err, &he) {
				code = he.code
			} else {
				s.log.Warn("batch store failed", "path", c.sp.rel, "err", err)
			}
			status[idx[i]] = batchStatus{Status: code, Error: err.Error()}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(status)
}

// readHeaderLine reads one header line; io.EOF at a clean end of body.
func readHeaderLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull || len(line) > batchMaxHeader {
		return nil, errors.New("header line too long")
	}
	if err == io.EOF && len(line) == 0 {
		return nil, io.EOF
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("header: %w", err)
	}
	return line, nil
}

// receiveRecord reads one record's content from br into a temporary file
// beside its destination and verifies it. An httpError refuses this
// record only, its content having been read past; any other error means
// the body could not be read.
func (s *Server) receiveRecord(sp storeParams, br *bufio.Reader) (*commitReq, error) {
	skip := func(err error) (*commitReq, error) {
		if _, cerr := io.CopyN(io.Discard, br, sp.size); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	if err := validateStore(sp); err != nil {
		return skip(err)
	}
	dst, _ := localPath(s.dir, sp.rel)
	if err := s.checkNewer(dst, sp.mtime, sp.alg, sp.sum, sp.force); err != nil {
		return skip(err)
	}
	f, err := createTemp(filepath.Dir(dst), internalPrefix+"recv-")
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return skip(err)
		}
		f, err = createTemp(filepath.Dir(dst), internalPrefix+"recv-")
	}
	if err != nil {
		return skip(httpError{http.StatusInternalServerError, err.Error()})
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h, _ := newHash(sp.alg)
	n, err := receive(f, 0, io.LimitReader(br, sp.size), sp.size, h)
	if err != nil {
		return nil, err
	}
	if n != sp.size {
		return nil, io.ErrUnexpectedEOF
	}
	if hex.EncodeToString(h.Sum(nil)) != sp.sum {
		return nil, httpError{http.StatusUnprocessableEntity, fmt.Sprintf("%s: received %d bytes that do not match %s %s size %d", sp.rel, n, sp.alg, sp.sum, sp.size)}
	}
	if err := f.Chmod(sp.mode); err != nil {
		return nil, httpError{http.StatusInternalServerError, err.Error()}
	}
	if err := os.Chtimes(f.Name(), sp.mtime, sp.mtime); err != nil {
		return nil, httpError{http.StatusInternalServerError, err.Error()}
	}
	ok = true
	return &commitReq{f: f, tmp: f.Name(), dst: dst, sp: sp, done: make(chan error, 1)}, nil
}

// batchEntry is one file of a batch a push sends.
type batchEntry struct {
	e    Entry
	kept []byte
}

// errNoBatch is returned by storeBatch when the peer has no batch
// endpoint (an older peer).
var errNoBatch = errors.New("peer has no batch endpoint")

// storeBatch sends files, whose Sums are under alg, to a peer in one
// batch and returns one error per file (nil when stored, errPeerNewer
// when the peer's copy is newer), or errNoBatch.
func (r *Replicator) storeBatch(ctx context.Context, addr, alg string, list []batchEntry) ([]error, error) {
	var body bytes.Buffer
	for _, be := range list {
		e := be.e
		hdr, err := json.Marshal(batchHeader{Path: e.Path, Sum: e.Sum, Size: e.Size, Mode: uint32(e.Mode.Perm()), MTime: e.MTime.UnixNano()})
		if err != nil {
			return nil, err
		}
		body.Write(hdr)
		body.WriteByte('\n')
		content := be.kept
		if content == nil {
			if content, err = readSmall(r.o.Dir, e); err != nil {
				return nil, fmt.Errorf("%s: %w", e.Path, err)
			}
		}
		body.Write(content)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/batch?hash="+url.QueryEscape(alg), &body)
	if err != nil {
		return nil, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, errNoBatch
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("POST /v1/batch: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	var st []batchStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("POST /v1/batch: bad reply: %w", err)
	}
	if len(st) != len(list) {
		return nil, fmt.Errorf("POST /v1/batch: %d statuses for %d files", len(st), len(list))
	}
	out := make([]error, len(list))
	for i, s := range st {
		if s.Status/100 != 2 {
			out[i] = storeError("store in batch", s.Status, s.Error)
		}
	}
	return out, nil
}

// readSmall reads the content of a small file e of dir. A file that
// changed since e was taken is sent as it is now: the peer checks it
// against e.Sum and refuses it (422), and the next round sends it again.
func readSmall(dir string, e Entry) ([]byte, error) {
	p, err := localPath(dir, e.Path)
	if err != nil {
		return nil, err
	}
	f, err := openFile(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Exactly e.Size bytes, to keep the batch's framing: a file that
	// shrank is padded with zeros (and fails its digest on the peer).
	b := make([]byte, e.Size)
	if _, err := io.ReadFull(f, b); err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return b, nil
}
