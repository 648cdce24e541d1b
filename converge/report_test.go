package converge

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReport_AppendJSON: the hand-written encoder gives json.Marshal's
// bytes, for reports with strings that need escaping (quotes, control
// characters, HTML characters, non-ASCII, invalid UTF-8, U+2028), empty
// optional fields, and no resources at all.
func TestReport_AppendJSON(t *testing.T) {
	odd := []string{"", "plain", `q"uote`, `back\slash`, "tab\there", "nl\n", "\x00\x01\x1f\x7f", "<a href='x'>&amp;</a>",
		"héllo wörld", "\u2028\u2029", "bad \xff\xfe utf8", "emoji 😀", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n"}
	rng := rand.New(rand.NewPCG(1, 2))
	randStr := func() string {
		if rng.IntN(3) == 0 {
			return odd[rng.IntN(len(odd))]
		}
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	reports := []*Report{
		{},
		{Resources: []ResourceReport{}},
		{Started: time.Date(2026, 12, 6, 21, 0, 0, 123456789, time.UTC), DurationMS: 17, DryRun: true,
			Resources: []ResourceReport{{Addr: "file.a", Kind: "file", Status: StatusUnchanged, Range: "x.hcl:1,1-17"}},
			Summary:   Summary{Unchanged: 1}},
	}
	for range 200 {
		r := &Report{Started: time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("z", rng.IntN(50000)-25000)),
			DurationMS: rng.Int64N(1 << 40), DryRun: rng.IntN(2) == 0,
			Summary: Summary{rng.IntN(1000), rng.IntN(1000), -rng.IntN(3), rng.IntN(1000)}}
		for range rng.IntN(5) {
			r.Resources = append(r.Resources, ResourceReport{Addr: randStr(), Kind: randStr(), Status: Status(randStr()),
				DurationMS: rng.Int64N(1<<20) - 10, Change: randStr(), Diff: randStr(), Error: randStr(), Range: randStr()})
		}
		reports = append(reports, r)
	}
	for i, r := range reports {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.appendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("report %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A time json.Marshal refuses is refused with its error.
	if _, err := (&Report{Started: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).appendJSON(nil); err == nil {
		t.Fatal("year 10000: no error")
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWriteReplace_Concurrent: writers racing on one report (the
// agent's run and a manual one) and a reader: the reader only ever sees
// one writer's whole content. (A faster write that rewrote the previous
// report's file, kept aside, failed this: a reader still holding that file
// open saw it change under it.)
func TestWriteReplace_Concurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "report.json")
	content := func(w, n int) string {
		line := strings.Repeat(string(rune('a'+w)), 1+(n*37)%200)
		return strings.Repeat(line+"\n", 1+(n*13)%300) + "end\n"
	}
	whole := func(s string) bool {
		if s == "" {
			return true // not written yet
		}
		lines := strings.Split(strings.TrimSuffix(s, "end\n"), "\n")
		if !strings.HasSuffix(s, "end\n") || len(lines) < 2 || lines[len(lines)-1] != "" {
			return false
		}
		for _, l := range lines[:len(lines)-1] {
			if l != lines[0] {
				return false
			}
		}
		return true
	}
	done := make(chan struct{})
	errs := make(chan string, 1)
	go func() {
		defer close(errs)
		for {
			select {
			case <-done:
				return
			default:
			}
			b, err := os.ReadFile(p)
			if err == nil && !whole(string(b)) {
				errs <- string(b)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 100 {
				if err := writeReplace(p, []byte(content(w, n)), 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	if bad, ok := <-errs; ok {
		t.Fatalf("reader saw a torn report (%d bytes): %.80q", len(bad), bad)
	}
	if got := readFile(t, p); !whole(got) {
		t.Fatalf("final report torn: %.80q", got)
	}
}
