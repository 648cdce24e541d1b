package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestHashCache_ReusesUnchanged_RehashesRewritten(t *testing.T) {
	old := racyWindow
	racyWindow = 0
	t.Cleanup(func() { racyWindow = old })
	ctx := context.Background()
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"f": "aaaa"})
	c := newHashCache()
	m1, err := snapshot(ctx, dir, c, DefaultHash)
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := m1.Lookup("f")
	// Plant a marker: a hit must return the cached value untouched.
	c.mu.Lock()
	h := c.m["f"]
	h.sum = "cached"
	c.m["f"] = h
	c.mu.Unlock()
	m2, _ := snapshot(ctx, dir, c, DefaultHash)
	if e, _ := m2.Lookup("f"); e.Sum != "cached" {
		t.Fatalf("unchanged file was re-hashed (%s), want the cached hash", e.Sum)
	}
	// Another algorithm is never answered from the cache.
	m2s, _ := snapshot(ctx, dir, c, HashSHA256)
	if e, _ := m2s.Lookup("f"); e.Sum != sha256Hex("aaaa") || m2s.Hash != HashSHA256 {
		t.Fatalf("sha256 snapshot = %s %s, want sha256 %s", m2s.Hash, e.Sum, sha256Hex("aaaa"))
	}
	// Same size, same mtime, new content: ctime moves, so it is re-hashed.
	p := filepath.Join(dir, "f")
	st, _ := os.Stat(p)
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, []byte("bbbb"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, st.ModTime(), st.ModTime())
	m3, _ := snapshot(ctx, dir, c, DefaultHash)
	e3, _ := m3.Lookup("f")
	if e3.Sum == "cached" || e3.Sum == e1.Sum {
		t.Fatalf("rewritten file kept a stale hash %s", e3.Sum)
	}
	os.Remove(p)
	snapshot(ctx, dir, c, DefaultHash)
	if len(c.m) != 0 {
		t.Errorf("cache kept %d entries for deleted files", len(c.m))
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
