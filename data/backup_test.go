package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openTestTargets(t *testing.T) map[string]func() Target {
	t.Helper()
	srv := startSSHServer(t, "127.0.0.1:0")
	return map[string]func() Target{
		"dir": func() Target {
			tg, err := OpenTarget(context.Background(), "dir://"+t.TempDir(), TargetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tg.Close() })
			return tg
		},
		"sftp": func() Target {
			u := "sftp://backup@" + srv.Addr + t.TempDir() + "/store"
			tg, err := OpenTarget(context.Background(), u, TargetOptions{HostKey: srv.HostKey, KeyFile: srv.KeyFile})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tg.Close() })
			return tg
		},
	}
}

func TestBackup_Restore_RoundTrip(t *testing.T) {
	ctx := context.Background()
	for name, open := range openTestTargets(t) {
		t.Run(name, func(t *testing.T) {
			tg := open()
			src := t.TempDir()
			files := map[string]string{"a.txt": "alpha", "sub/b.txt": "beta", "sub/deep/c": "gamma", "dup": "alpha"}
			writeTree(t, src, files)
			if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Join(src, "sub/b.txt"), 0o600); err != nil {
				t.Fatal(err)
			}
			info, err := Backup(ctx, src, tg)
			if err != nil {
				t.Fatal(err)
			}
			if info.Files != 4 || info.Uploaded != 3 {
				t.Errorf("backup files=%d uploaded=%d, want 4 files and 3 objects (dup shares one)", info.Files, info.Uploaded)
			}
			dst := filepath.Join(t.TempDir(), "restored")
			writeTree(t, dst, map[string]string{"stale": "old"})
			rep, err := Restore(ctx, tg, RestoreOptions{Dir: dst})
			if err != nil {
				t.Fatal(err)
			}
			if rep.ID != info.ID || rep.Files != 4 {
				t.Errorf("restore report = %+v, want id %s with 4 files", rep, info.ID)
			}
			if diff := cmp.Diff(files, readTree(t, dst)); diff != "" {
				t.Errorf("restored tree (-want +got):\n%s", diff)
			}
			if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "a.txt" {
				t.Errorf("symlink = %q, %v", l, err)
			}
			if st, err := os.Stat(filepath.Join(dst, "sub/b.txt")); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("mode of sub/b.txt = %v, %v; want 0600", st.Mode(), err)
			}
			ents, _ := os.ReadDir(filepath.Dir(dst))
			if len(ents) != 1 {
				t.Errorf("restore left temporaries beside the target dir: %v", ents)
			}
		})
	}
}

func TestBackup_Incremental(t *testing.T) {
	ctx := context.Background()
	for name, open := range openTestTargets(t) {
		t.Run(name, func(t *testing.T) {
			tg := open()
			src := t.TempDir()
			writeTree(t, src, map[string]string{"1": "one", "2": "two", "3": "three"})
			first, err := Backup(ctx, src, tg)
			if err != nil {
				t.Fatal(err)
			}
			writeTree(t, src, map[string]string{"2": "two, changed", "4": "four"})
			second, err := Backup(ctx, src, tg)
			if err != nil {
				t.Fatal(err)
			}
			if first.Uploaded != 3 || second.Uploaded != 2 {
				t.Errorf("uploaded %d then %d objects, want 3 then 2", first.Uploaded, second.Uploaded)
			}
			if want := int64(len("two, changed") + len("four")); second.UploadedBytes != want {
				t.Errorf("second backup uploaded %d bytes, want %d", second.UploadedBytes, want)
			}
			// The first backup still restores its own content.
			dst := filepath.Join(t.TempDir(), "r")
			if _, err := Restore(ctx, tg, RestoreOptions{ID: first.ID, Dir: dst}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(map[string]string{"1": "one", "2": "two", "3": "three"}, readTree(t, dst)); diff != "" {
				t.Errorf("first backup (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVerify_CorruptObject_RestoreSkips(t *testing.T) {
	ctx := context.Background()
	store := t.TempDir()
	tg, err := NewDirTarget(store)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writeTree(t, src, map[string]string{"f": "version one"})
	old, err := backupAt(ctx, src, tg, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, src, map[string]string{"f": "version two"})
	newest, err := backupAt(ctx, src, tg, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadManifest(ctx, tg, newest.ID)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := m.Lookup("f")
	obj := filepath.Join(store, filepath.FromSlash(objectName(e.Sum)))
	if err := os.WriteFile(obj, []byte("version 2!!"), 0o640); err != nil {
		t.Fatal(err)
	}

	vr, err := Verify(ctx, tg, newest.ID)
	if err != nil {
		t.Fatal(err)
	}
	if vr.OK || !cmp.Equal(vr.Corrupt, []string{e.Sum}) {
		t.Errorf("verify newest = %+v, want corrupt object %s", vr, e.Sum)
	}
	if vr, err := Verify(ctx, tg, old.ID); err != nil || !vr.OK {
		t.Errorf("verify old = %+v, %v; want ok", vr, err)
	}

	dst := filepath.Join(t.TempDir(), "r")
	rep, err := Restore(ctx, tg, RestoreOptions{Dir: dst})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ID != old.ID || len(rep.Skipped) != 1 || rep.Skipped[0].ID != newest.ID {
		t.Errorf("restore = %+v, want %s after skipping %s", rep, old.ID, newest.ID)
	}
	if rep.Age < 2*time.Hour || rep.Age > 3*time.Hour {
		t.Errorf("restore age = %v, want about 2h", rep.Age)
	}
	if got := readTree(t, dst); got["f"] != "version one" {
		t.Errorf("restored f = %q, want version one", got["f"])
	}

	// Restoring the corrupt backup by ID fails and leaves dst untouched.
	_, err = Restore(ctx, tg, RestoreOptions{ID: newest.ID, Dir: dst})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("restore of corrupt backup: err = %v, want ErrCorrupt", err)
	}
	if got := readTree(t, dst); got["f"] != "version one" {
		t.Errorf("failed restore changed dst: f = %q", got["f"])
	}

	// A damaged manifest is detected too.
	mf := filepath.Join(store, filepath.FromSlash(manifestName(old.ID)))
	b, _ := os.ReadFile(mf)
	os.WriteFile(mf, []byte(strings.Replace(string(b), "version", "versiom", 1)+" "), 0o640)
	b2, _ := os.ReadFile(mf)
	b2[len(b2)/2] ^= 1
	os.WriteFile(mf, b2, 0o640)
	if vr, err := Verify(ctx, tg, old.ID); err != nil || vr.OK || vr.Manifest == "" {
		t.Errorf("verify of damaged manifest = %+v, %v; want manifest error", vr, err)
	}
}

func TestApplyRetention_KeepLastAndDaily(t *testing.T) {
	ctx := context.Background()
	tg, err := NewDirTarget(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var ids []string
	// Two backups a day for five days; each changes a file.
	for d := 4; d >= 0; d-- {
		for _, h := range []int{3, 9} {
			at := now.Add(-time.Duration(d) * 24 * time.Hour).Truncate(24 * time.Hour).Add(time.Duration(h) * time.Hour)
			writeTree(t, src, map[string]string{"f": at.String()})
			bi, err := backupAt(ctx, src, tg, at)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, bi.ID)
		}
	}
	rep, err := ApplyRetention(ctx, tg, 2, 3, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Last 2: today 03:00 and 09:00. Daily for 3 days: today 09:00,
	// yesterday 09:00, the day before 09:00.
	want := []string{ids[5], ids[7], ids[8], ids[9]}
	if diff := cmp.Diff(want, rep.Kept); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if rep.PrunedObjects != 6 {
		t.Errorf("pruned %d objects, want 6", rep.PrunedObjects)
	}
	objs, _ := tg.List(ctx, objectsPrefix)
	if len(objs) != 4 {
		t.Errorf("%d objects left, want 4", len(objs))
	}
	for _, id := range want {
		if vr, err := Verify(ctx, tg, id); err != nil || !vr.OK {
			t.Errorf("kept backup %s does not verify: %+v, %v", id, vr, err)
		}
	}
}

func TestOpenTarget_WrongHostKey(t *testing.T) {
	srv := startSSHServer(t, "127.0.0.1:0")
	other := startSSHServer(t, "127.0.0.1:0")
	u := "sftp://backup@" + srv.Addr + t.TempDir()
	_, err := OpenTarget(context.Background(), u, TargetOptions{HostKey: other.HostKey, KeyFile: srv.KeyFile})
	if err == nil || !strings.Contains(err.Error(), "does not match the pinned key") {
		t.Fatalf("open with wrong host key: err = %v, want a host key mismatch", err)
	}
	if _, err := OpenTarget(context.Background(), u, TargetOptions{KeyFile: srv.KeyFile}); err == nil {
		t.Fatal("open without a pinned host key succeeded")
	}
}
