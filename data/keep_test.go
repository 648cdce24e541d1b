package data

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSnapshotKeep_KeepsSmallFilesWithinBudget(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("b", smallFileSize)
	writeTree(t, dir, map[string]string{"a": "aaaa", "d/b": "bbbbbbbb", "c": "cccccccccccc", "big": big})
	// Room for two of the three small files (each takes its size + 1).
	keep := newContentStash(5 + 9)
	m, err := snapshotKeep(context.Background(), dir, nil, DefaultHash, keep)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, p := range []string{"a", "c", "d/b", "big"} {
		e, ok := m.Lookup(p)
		if !ok {
			t.Fatalf("%s missing from the snapshot", p)
		}
		b := keep.take(e)
		if b == nil {
			continue
		}
		kept++
		want, _ := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if string(b) != string(want) {
			t.Errorf("kept content of %s = %q, want %q", p, b, want)
		}
		if sum, _ := sumBytes(DefaultHash, b); sum != e.Sum {
			t.Errorf("kept content of %s does not match its digest", p)
		}
	}
	if kept != 2 {
		t.Errorf("kept %d files, want the 2 that fit the budget (never the 1 MiB one)", kept)
	}
	if keep.left != 14 {
		t.Errorf("budget after taking everything = %d, want 14 back", keep.left)
	}
}

func TestContentStash_TakeOnlyTheSameVersion(t *testing.T) {
	s := newContentStash(100)
	now := time.Now()
	e := Entry{Path: "f", Type: TypeFile, Size: 3, Sum: "s1", MTime: now}
	s.put(e, []byte("abc"))
	later := e
	later.MTime = now.Add(time.Second)
	if b := s.take(later); b != nil {
		t.Fatalf("content of another version returned: %q", b)
	}
	if b := s.take(e); b != nil {
		t.Fatalf("content returned twice (or after a mismatch dropped it): %q", b)
	}
	s.put(e, []byte("abc"))
	s.retain([]Entry{{Path: "other"}})
	if b := s.take(e); b != nil || s.left != 100 {
		t.Fatalf("retain kept %q, budget %d of 100", b, s.left)
	}
	s.put(e, make([]byte, 3, 101))
	if b := s.take(e); b != nil {
		t.Fatal("content over the budget was kept")
	}
}

func TestReadHash_FileLongerThanExpected(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, n, st, content, err := readHash(p, DefaultHash, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sumBytes(DefaultHash, []byte("0123456789"))
	if n != 10 || sum != want || st.Size != 10 {
		t.Errorf("readHash = %d bytes, size %d, sum %s; want 10, 10, %s", n, st.Size, sum, want)
	}
	if content != nil {
		t.Errorf("kept %q of a file that grew past its expected size", content)
	}
	if _, _, _, _, err := readHash(filepath.Join(dir, "nope"), DefaultHash, 0, false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want not exist", err)
	}
}

// A push sends small files from the snapshot's buffers and, past the
// budget, reads them again; large files stream. All arrive intact.
func TestPush_KeptAndRereadFilesArrive(t *testing.T) {
	for _, budget := range []int64{pushKeepBytes, 2000} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			old := pushKeepBytes
			pushKeepBytes = budget
			t.Cleanup(func() { pushKeepBytes = old })
			ca := newTestCA(t)
			a := startReplica(t, ca, "a", "127.0.0.1:0")
			b := startReplica(t, ca, "b", "127.0.0.1:0")
			files := map[string]string{"big": strings.Repeat("large ", smallFileSize/6+10), "empty": ""}
			for i := range 200 {
				files[fmt.Sprintf("d%d/f%03d", i%7, i)] = strings.Repeat(fmt.Sprint(i), 1+i%50)
			}
			writeTree(t, a.dir, files)
			r := NewReplicator(ReplicatorOptions{Dir: a.dir, TLS: a.client})
			t.Cleanup(r.Close)
			ps, err := r.Push(context.Background(), b.addr)
			if err != nil {
				t.Fatal(err)
			}
			if ps.Sent+ps.Copied != len(files) {
				t.Errorf("sent %d + copied %d, want %d files", ps.Sent, ps.Copied, len(files))
			}
			if diff := cmp.Diff(files, readTree(t, b.dir)); diff != "" {
				t.Errorf("replica differs (-want +got):\n%s", diff)
			}
		})
	}
}
