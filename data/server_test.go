package data

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// storeReq builds a PUT of content to rel with mtime, as a Replicator
// sends it.
func storeReq(t *testing.T, rel string, content []byte, mtime time.Time) *http.Request {
	t.Helper()
	sum, err := sumBytes(DefaultHash, content)
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{}
	sumParams(q, DefaultHash, sum)
	q.Set("size", strconv.Itoa(len(content)))
	q.Set("mode", "640")
	q.Set("mtime", strconv.FormatInt(mtime.UnixNano(), 10))
	return httptest.NewRequest(http.MethodPut, "/v1/file/"+rel+"?"+q.Encode(), bytes.NewReader(content))
}

// TestServer_GroupCommit holds the commit while stores arrive, so that
// they are committed as one batch (syncfs, renames, syncfs), and checks
// that nothing appears under a final name before its commit, that every
// store is answered after it with the right content, mode and mtime, that
// a store older than the local copy is refused inside the batch, and that
// no temporary file is left.
func TestServer_GroupCommit(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(dir, nil)
	mtime := time.Unix(1_700_000_000, 0)
	const n = 12
	rels := make([]string, n)
	contents := make([][]byte, n)
	for i := range n {
		rels[i] = fmt.Sprintf("%c/f%02d", 'a'+i%3, i)
		contents[i] = bytes.Repeat([]byte{byte('A' + i)}, 1000+i)
	}
	// Written locally, newer, while its store waits in the batch.
	rels[n-1] = "b/newer"
	keep := filepath.Join(dir, "b", "newer")

	codes := make(chan [2]int, n)
	store := func(i int) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, storeReq(t, rels[i], contents[i], mtime))
		codes <- [2]int{i, rec.Code}
	}
	waitQueue := func(committing bool, queued int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.cmu.Lock()
			c, q := s.committing, len(s.pending)
			s.cmu.Unlock()
			if c == committing && q == queued {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("committing %v with %d queued, want %v with %d", c, q, committing, queued)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Holding the rename lock blocks the first store's commit; the others
	// queue behind it and are committed together afterwards.
	s.mu.Lock()
	locked := true
	defer func() {
		if locked {
			s.mu.Unlock()
			for range n {
				<-codes
			}
		}
	}()
	go store(0)
	waitQueue(true, 0)
	for i := 1; i < n; i++ {
		go store(i)
	}
	waitQueue(true, n-1)
	for i := range n {
		if _, err := os.Lstat(filepath.Join(dir, rels[i])); !os.IsNotExist(err) {
			t.Fatalf("%s visible before its commit (err %v)", rels[i], err)
		}
	}
	if err := os.WriteFile(keep, []byte("local"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(keep, mtime.Add(time.Hour), mtime.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	locked = false
	s.mu.Unlock()

	for range n {
		c := <-codes
		want := http.StatusNoContent
		if rels[c[0]] == "b/newer" {
			want = http.StatusConflict
		}
		if c[1] != want {
			t.Errorf("store of %s: status %d, want %d", rels[c[0]], c[1], want)
		}
	}
	for i := range n - 1 {
		p := filepath.Join(dir, rels[i])
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, contents[i]) {
			t.Errorf("%s: content %q (err %v), want %d bytes of %q", rels[i], got, err, len(contents[i]), contents[i][:1])
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o640 || !st.ModTime().Equal(mtime) {
			t.Errorf("%s: mode %v mtime %v, want 0640 %v", rels[i], st.Mode().Perm(), st.ModTime(), mtime)
		}
	}
	if got, _ := os.ReadFile(keep); string(got) != "local" {
		t.Errorf("newer local copy replaced: %q", got)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), internalPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

// TestServer_LoneStore_CorruptRefused checks the single-store commit path
// and that a body that does not match its digest is refused and leaves
// nothing behind.
func TestServer_LoneStore_CorruptRefused(t *testing.T) {
	dir := t.TempDir()
	s := NewServer(dir, nil)
	mtime := time.Unix(1_700_000_000, 0)

	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, storeReq(t, "x/one", []byte("hello"), mtime))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("store: %d %s", rec.Code, rec.Body)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "x", "one")); err != nil || string(got) != "hello" {
		t.Fatalf("x/one = %q, %v", got, err)
	}

	req := storeReq(t, "x/two", []byte("hello"), mtime)
	req.Body = io.NopCloser(strings.NewReader("jello"))
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("corrupt store: %d %s, want 422", rec.Code, rec.Body)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "one" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("x holds %v, want only one", names)
	}
}

func TestCreateTemp_NewPrivateFiles(t *testing.T) {
	dir := t.TempDir()
	f1, err := createTemp(dir, internalPrefix+"recv-")
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := createTemp(dir, internalPrefix+"recv-")
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if f1.Name() == f2.Name() || filepath.Dir(f1.Name()) != dir || !strings.HasPrefix(filepath.Base(f1.Name()), internalPrefix+"recv-") {
		t.Fatalf("temporary files %s and %s", f1.Name(), f2.Name())
	}
	if _, err := f1.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f1.Name())
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != 1 {
		t.Fatalf("stat %s: %v, %v", f1.Name(), st, err)
	}
	if _, err := createTemp(filepath.Join(dir, "missing"), "x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing directory: err = %v, want not exist", err)
	}
}
