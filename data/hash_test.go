package data

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// writeFormat1Backup stores a backup of files the way hactl wrote them
// before the hash algorithm was recorded: SHA-256 objects, entries with a
// "sha256" key, envelope format 1 with "sha256".
func writeFormat1Backup(t *testing.T, store string, at time.Time, files map[string]string) string {
	t.Helper()
	type entry struct {
		Path   string    `json:"path"`
		Type   string    `json:"type"`
		Size   int64     `json:"size,omitempty"`
		SHA256 string    `json:"sha256,omitempty"`
		Mode   uint32    `json:"mode"`
		MTime  time.Time `json:"mtime"`
	}
	m := struct {
		Created time.Time `json:"created"`
		Entries []entry   `json:"entries"`
	}{Created: at.UTC()}
	for _, p := range []string{"a", "d/b"} { // the paths the tests use, sorted
		c, ok := files[p]
		if !ok {
			t.Fatalf("writeFormat1Backup: want files a and d/b")
		}
		if p == "d/b" {
			m.Entries = append(m.Entries, entry{Path: "d", Type: TypeDir, Mode: 0o750, MTime: at.UTC()})
		}
		sum := sha256Hex(c)
		m.Entries = append(m.Entries, entry{Path: p, Type: TypeFile, Size: int64(len(c)), SHA256: sum, Mode: 0o640, MTime: at.UTC()})
		obj := filepath.Join(store, "objects", sum[:2], sum)
		if err := os.MkdirAll(filepath.Dir(obj), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(obj, []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	id := BackupID(at)
	s := sha256.Sum256(raw)
	env, err := json.Marshal(map[string]any{"format": 1, "id": id, "sha256": hex.EncodeToString(s[:]), "manifest": json.RawMessage(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(store, "backups"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, "backups", id+".json"), env, 0o640); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRestore_Format1SHA256Backup_VerifiesAndRestores(t *testing.T) {
	ctx := context.Background()
	store := t.TempDir()
	tg, err := NewDirTarget(store)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]string{"a": "written by an older hactl", "d/b": "second file"}
	id1 := writeFormat1Backup(t, store, time.Now().Add(-2*time.Hour), old)

	m, err := LoadManifest(ctx, tg, id1)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := m.Lookup("a"); m.Alg() != HashSHA256 || e.Sum != sha256Hex(old["a"]) {
		t.Fatalf("format-1 manifest read as %s, a=%s; want sha256 %s", m.Alg(), e.Sum, sha256Hex(old["a"]))
	}
	if vr, err := Verify(ctx, tg, id1); err != nil || !vr.OK || vr.Objects != 2 {
		t.Fatalf("verify format-1 backup = %+v, %v; want ok with 2 objects", vr, err)
	}
	dst := filepath.Join(t.TempDir(), "r")
	rep, err := Restore(ctx, tg, RestoreOptions{Dir: dst})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ID != id1 || !cmp.Equal(readTree(t, dst), old) {
		t.Fatalf("restored %s = %v, want %s = %v", rep.ID, readTree(t, dst), id1, old)
	}

	// A new backup to the same target is BLAKE2b (format 2); both verify,
	// retention keeps the objects of both, and a damaged SHA-256 object is
	// still caught.
	src := t.TempDir()
	now := map[string]string{"a": "written now", "d/b": "second file"}
	writeTree(t, src, now)
	nb, err := Backup(ctx, src, tg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := LoadManifest(ctx, tg, nb.ID)
	if err != nil || m2.Alg() != HashBLAKE2b {
		t.Fatalf("new backup manifest alg %q, %v; want %s", m2.Alg(), err, HashBLAKE2b)
	}
	b, _ := os.ReadFile(filepath.Join(store, "backups", nb.ID+".json"))
	if !strings.Contains(string(b), `"format":2`) || !strings.Contains(string(b), `"hash":"blake2b-256"`) {
		t.Errorf("new envelope %s, want format 2 naming blake2b-256", b)
	}
	if _, err := ApplyRetention(ctx, tg, 0, 0, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{id1, nb.ID} {
		if vr, err := Verify(ctx, tg, id); err != nil || !vr.OK {
			t.Errorf("verify %s after retention = %+v, %v; want ok", id, vr, err)
		}
	}
	sum := sha256Hex(old["a"])
	if err := os.WriteFile(filepath.Join(store, "objects", sum[:2], sum), []byte("written by an older hactX"), 0o640); err != nil {
		t.Fatal(err)
	}
	if vr, err := Verify(ctx, tg, id1); err != nil || vr.OK || !cmp.Equal(vr.Corrupt, []string{sum}) {
		t.Errorf("verify damaged format-1 backup = %+v, %v; want corrupt %s", vr, err, sum)
	}
	// (Into a new directory: dst holds that content, which a restore
	// would rightly copy locally.)
	if _, err := Restore(ctx, tg, RestoreOptions{Dir: filepath.Join(t.TempDir(), "r"), ID: id1}); err == nil {
		t.Errorf("restore of a damaged format-1 backup succeeded")
	}
}

func TestLoadManifest_AlgorithmMismatch_Corrupt(t *testing.T) {
	ctx := context.Background()
	store := t.TempDir()
	tg, err := NewDirTarget(store)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "x"})
	bi, err := Backup(ctx, src, tg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(store, "backups", bi.ID+".json")
	b, _ := os.ReadFile(p)
	// Claiming SHA-256 for a BLAKE2b manifest must not pass: the digest of
	// the manifest no longer matches.
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), `"hash":"blake2b-256"`, `"hash":"sha256"`, 1)), 0o640); err != nil {
		t.Fatal(err)
	}
	if vr, err := Verify(ctx, tg, bi.ID); err != nil || vr.OK || vr.Manifest == "" {
		t.Errorf("verify with a rewritten algorithm = %+v, %v; want a manifest error", vr, err)
	}
}

func TestServer_Manifest_LegacyWithoutHashParam(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"f": "content"})
	srv := NewServer(dir, nil)

	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/manifest", nil))
	var raw struct {
		Hash    string           `json:"hash"`
		Entries []map[string]any `json:"entries"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("legacy manifest %q: %v", rec.Body.String(), err)
	}
	if raw.Hash != "" || len(raw.Entries) != 1 || raw.Entries[0]["sha256"] != sha256Hex("content") || raw.Entries[0]["sum"] != nil {
		t.Errorf("manifest without ?hash = %s, want SHA-256 under the sha256 key only", rec.Body.String())
	}

	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/manifest?hash="+HashBLAKE2b, nil))
	var m Manifest
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	want, _ := sumBytes(HashBLAKE2b, []byte("content"))
	if e, _ := m.Lookup("f"); m.Hash != HashBLAKE2b || e.Sum != want {
		t.Errorf("manifest?hash=blake2b-256 = %s %s, want %s", m.Hash, e.Sum, want)
	}

	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/manifest?hash=md5", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("manifest?hash=md5 = %d, want 400", rec.Code)
	}
}

// TestPush_OlderSHA256Peer_Negotiates pushes to a peer that behaves like
// a replica older than the hash algorithm field: it ignores ?hash= on the
// manifest (answering SHA-256 under "sha256") and only understands the
// sha256= store parameter.
func TestPush_OlderSHA256Peer_Negotiates(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "a", "127.0.0.1:0")
	st, _ := ca.tls(t, "old")
	oldDir := t.TempDir()
	srv := NewServer(oldDir, nil)
	old := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Has("hash") && r.URL.Path != "/v1/manifest" {
			http.Error(w, "bad sha256", http.StatusBadRequest)
			return
		}
		q.Del("hash")
		r.URL.RawQuery = q.Encode()
		srv.ServeHTTP(w, r)
	})
	addr := serveTLS(t, old, st)

	files := map[string]string{"x": "one", "y/z": "two", "dup": "one"}
	writeTree(t, a.dir, files)
	r := NewReplicator(ReplicatorOptions{Dir: a.dir, TLS: a.client})
	t.Cleanup(r.Close)
	ps, err := r.Push(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Sent != 2 || ps.Copied != 1 {
		t.Errorf("push stats %+v, want 2 sent and 1 copied", ps)
	}
	if got := readTree(t, oldDir); !cmp.Equal(got, files) {
		t.Errorf("older peer holds %v, want %v", got, files)
	}
	// A second push finds nothing to send: the SHA-256 manifests compare.
	if ps, err := r.Push(context.Background(), addr); err != nil || ps.Sent+ps.Copied != 0 {
		t.Errorf("second push = %+v, %v; want nothing sent", ps, err)
	}
}
