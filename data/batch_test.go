package data

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// batchRecord is one record of a test batch.
type batchRecord struct {
	path    string
	content []byte
	sum     string // the content's digest unless set
	mtime   time.Time
}

// batchBody encodes records as a Replicator sends them.
func batchBody(t *testing.T, recs []batchRecord) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		sum := r.sum
		if sum == "" {
			var err error
			if sum, err = sumBytes(DefaultHash, r.content); err != nil {
				t.Fatal(err)
			}
		}
		hdr, _ := json.Marshal(batchHeader{Path: r.path, Sum: sum, Size: int64(len(r.content)), Mode: 0o640, MTime: r.mtime.UnixNano()})
		b.Write(hdr)
		b.WriteByte('\n')
		b.Write(r.content)
	}
	return b.Bytes()
}

// postBatch serves a batch request on s and returns the status code and
// the per-record statuses.
func postBatch(t *testing.T, s *Server, body []byte) (int, []batchStatus) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/batch?hash="+DefaultHash, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		return rec.Code, nil
	}
	var st []batchStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("bad reply %q: %v", rec.Body.String(), err)
	}
	return rec.Code, st
}

func codes(st []batchStatus) []int {
	out := make([]int, len(st))
	for i, s := range st {
		out[i] = s.Status
	}
	return out
}

func TestBatch_WrongChecksum_FailsOnlyThatRecord(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(dir, nil)
	mtime := time.Unix(1_700_000_000, 0)
	bad, _ := sumBytes(DefaultHash, []byte("something else"))
	code, st := postBatch(t, s, batchBody(t, []batchRecord{
		{path: "a/1", content: []byte("one"), mtime: mtime},
		{path: "a/2", content: []byte("two"), sum: bad, mtime: mtime},
		{path: "b/3", content: []byte("three"), mtime: mtime},
	}))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if diff := cmp.Diff([]int{204, 422, 204}, codes(st)); diff != "" {
		t.Errorf("record statuses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a/1": "one", "b/3": "three"}, readTree(t, dir)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

func TestBatch_OlderThanLocal_Conflict(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(dir, nil)
	writeTree(t, dir, map[string]string{"keep": "local, newer"})
	old := time.Unix(1_600_000_000, 0)
	code, st := postBatch(t, s, batchBody(t, []batchRecord{
		{path: "new1", content: []byte("n1"), mtime: old},
		{path: "keep", content: []byte("remote, older"), mtime: old},
		{path: "d/new2", content: []byte("n2"), mtime: old},
	}))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if diff := cmp.Diff([]int{204, 409, 204}, codes(st)); diff != "" {
		t.Errorf("record statuses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"keep": "local, newer", "new1": "n1", "d/new2": "n2"}, readTree(t, dir)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
	st1, err := os.Stat(filepath.Join(dir, "new1"))
	if err != nil {
		t.Fatal(err)
	}
	if !st1.ModTime().Equal(old) || st1.Mode().Perm() != 0o640 {
		t.Errorf("new1: mtime %v mode %v, want %v 0640", st1.ModTime(), st1.Mode().Perm(), old)
	}
}

func TestBatch_PathEscape_Refused(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	s := NewServer(dir, nil)
	mtime := time.Unix(1_700_000_000, 0)
	code, st := postBatch(t, s, batchBody(t, []batchRecord{
		{path: "../escaped", content: []byte("x"), mtime: mtime},
		{path: "/abs", content: []byte("y"), mtime: mtime},
		{path: internalPrefix + "partial/x", content: []byte("z"), mtime: mtime},
		{path: "ok", content: []byte("fine"), mtime: mtime},
	}))
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if diff := cmp.Diff([]int{400, 400, 400, 204}, codes(st)); diff != "" {
		t.Errorf("record statuses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"data/ok": "fine"}, readTree(t, root)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

func TestBatch_TruncatedBody_NothingVisible(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(dir, nil)
	mtime := time.Unix(1_700_000_000, 0)
	body := batchBody(t, []batchRecord{
		{path: "a/1", content: []byte("one"), mtime: mtime},
		{path: "a/2", content: bytes.Repeat([]byte("2"), 5000), mtime: mtime},
	})
	for _, cut := range []int{len(body) - 1, len(body) - 4000, len(body) - 5001, 10} {
		code, _ := postBatch(t, s, body[:cut])
		if code != http.StatusBadRequest {
			t.Errorf("cut at %d: status %d, want 400", cut, code)
		}
		if got := readTree(t, dir); len(got) != 0 {
			t.Errorf("cut at %d: files left: %v", cut, got)
		}
	}
	// Not JSON, or a record over the size limit: refused as a whole.
	for _, b := range []string{"not json\n", `{"path":"x","sum":"00","size":999999999}` + "\n"} {
		if code, _ := postBatch(t, s, []byte(b)); code != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", b, code)
		}
	}
	if got := readTree(t, dir); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
}

// startCountingReplica serves a replica through wrap, counting requests
// by method and first path element.
func startCountingReplica(t *testing.T, ca *testCA, name string, noBatch bool) (*replica, func() map[string]int) {
	t.Helper()
	st, ct := ca.tls(t, name)
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := map[string]int{}
	srv := NewServer(dir, nil)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + strings.Join(strings.SplitN(r.URL.Path, "/", 4)[:3], "/")
		mu.Lock()
		n[key]++
		mu.Unlock()
		if noBatch && r.URL.Path == "/v1/batch" {
			http.Error(w, "no such endpoint", http.StatusNotFound) // as an older peer
			return
		}
		srv.ServeHTTP(w, r)
	})
	return &replica{dir: dir, addr: serveTLS(t, h, st), client: ct}, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range n {
			out[k] = v
		}
		return out
	}
}

// smallTree writes n small files (and one past the batch limit) with
// distinct contents, modes and mtimes into dir.
func smallTree(t *testing.T, dir string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		rel := fmt.Sprintf("d%d/f%03d", i%7, i)
		want[rel] = strings.Repeat(fmt.Sprintf("%03d", i), 100+i*37)
	}
	want["large"] = strings.Repeat("L", batchMaxFile+1)
	writeTree(t, dir, want)
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("d%d/f%03d", i%7, i))
		if err := os.Chmod(p, []os.FileMode{0o600, 0o640, 0o755}[i%3]); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1_700_000_000+int64(i), int64(i)*1000)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

func checkSame(t *testing.T, a, b string, want map[string]string) {
	t.Helper()
	if diff := cmp.Diff(want, readTree(t, b)); diff != "" {
		t.Fatalf("peer tree (-want +got):\n%s", diff)
	}
	for rel := range want {
		sa, err := os.Stat(filepath.Join(a, rel))
		if err != nil {
			t.Fatal(err)
		}
		sb, err := os.Stat(filepath.Join(b, rel))
		if err != nil {
			t.Fatal(err)
		}
		if sa.Mode() != sb.Mode() || !sa.ModTime().Equal(sb.ModTime()) {
			t.Errorf("%s: peer has %v %v, want %v %v", rel, sb.Mode(), sb.ModTime(), sa.Mode(), sa.ModTime())
		}
	}
}

// pushSmallTree pushes n small files and one large one from a new replica
// to a counting one (refusing batches like an older peer when noBatch),
// checks that every file arrived intact, and returns the replicas, the
// replicator and the requests the peer saw.
func pushSmallTree(t *testing.T, n int, noBatch bool) (a, b *replica, r *Replicator, requests map[string]int) {
	t.Helper()
	ca := newTestCA(t)
	a = startReplica(t, ca, "a", "127.0.0.1:0")
	b, counts := startCountingReplica(t, ca, "b", noBatch)
	want := smallTree(t, a.dir, n)
	r = NewReplicator(ReplicatorOptions{Dir: a.dir, TLS: a.client})
	t.Cleanup(r.Close)
	ps, err := r.Push(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Sent != n+1 {
		t.Errorf("sent %d, want %d", ps.Sent, n+1)
	}
	checkSame(t, a.dir, b.dir, want)
	return a, b, r, counts()
}

func TestPush_Batches_RoundTrip(t *testing.T) {
	a, b, r, c := pushSmallTree(t, 150, false)
	// 150 files of 0.3-17 KiB: at least 3 batches of at most 64 files.
	if c["POST /v1/batch"] < 3 || c["PUT /v1/file"] != 1 {
		t.Errorf("requests %v: want batches for the small files and one PUT for the large one", c)
	}
	// A second push finds nothing to send; a newer file on b is kept.
	time.Sleep(10 * time.Millisecond)
	writeTree(t, b.dir, map[string]string{"d0/f000": "newer on b"})
	os.WriteFile(filepath.Join(a.dir, "d0/f000"), []byte("older on a"), 0o640)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(a.dir, "d0/f000"), past, past)
	ps, err := r.Push(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Sent != 0 || ps.Skipped != 1 {
		t.Errorf("second push: %+v, want nothing sent and 1 skipped", ps)
	}
}

func TestPush_Batches_ConflictInBatchCounted(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "a", "127.0.0.1:0")
	b := startReplica(t, ca, "b", "127.0.0.1:0")
	writeTree(t, a.dir, map[string]string{"x": "from a", "y": "from a too"})
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(a.dir, "x"), old, old)
	// Deleted on b after a's version of x: the store is refused with 409
	// inside the batch and counted as skipped, y goes through.
	del := time.Now()
	f := func(rel string) (time.Time, bool) { return del, rel == "x" }
	b.deleted.Store(&f)
	r := NewReplicator(ReplicatorOptions{Dir: a.dir, TLS: a.client})
	t.Cleanup(r.Close)
	ps, err := r.Push(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Sent != 1 || ps.Skipped != 1 {
		t.Errorf("push: %+v, want 1 sent and 1 skipped", ps)
	}
	if diff := cmp.Diff(map[string]string{"y": "from a too"}, readTree(t, b.dir)); diff != "" {
		t.Errorf("peer tree (-want +got):\n%s", diff)
	}
}

func TestPush_Batches_FallBackToPut(t *testing.T) {
	const n = 100
	_, _, _, c := pushSmallTree(t, n, true)
	if c["POST /v1/batch"] < 1 || c["PUT /v1/file"] != n+1 {
		t.Errorf("requests %v: want a refused batch then one PUT per file", c)
	}
}
