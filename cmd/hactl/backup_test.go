package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hactl/hactl/data"
)

func runBackupCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb}
	root := newRootCmd(g)
	root.SetArgs(normalizeArgs(root, args))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestBackupCmd_RunListVerifyRestore(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "post.md"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := "dir://" + t.TempDir()
	out, err := runBackupCLI(t, "backup", "run", "-json", "-dir", src, "-target", target, "-keep-last", "3")
	if err != nil {
		t.Fatalf("backup run: %v\n%s", err, out)
	}
	var run struct{ Backup data.BackupInfo }
	if err := json.Unmarshal([]byte(out), &run); err != nil || run.Backup.Files != 1 {
		t.Fatalf("backup run -json = %s (%v)", out, err)
	}
	out, err = runBackupCLI(t, "backup", "list", "-json", "-target", target)
	var list []data.BackupInfo
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != run.Backup.ID {
		t.Fatalf("backup list = %s, %v", out, err)
	}
	if out, err := runBackupCLI(t, "backup", "verify", "-target", target, run.Backup.ID); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	out, err = runBackupCLI(t, "restore", "-json", "-target", target, "-dir", dst)
	var rep data.RestoreReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.ID != run.Backup.ID {
		t.Fatalf("restore = %s, %v", out, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "post.md")); string(b) != "hello" {
		t.Fatalf("restored post.md = %q", b)
	}
	// A damaged object makes verify fail.
	objs, _ := filepath.Glob(filepath.Join(target[len("dir://"):], "objects", "*", "*"))
	if len(objs) != 1 {
		t.Fatalf("objects = %v", objs)
	}
	os.WriteFile(objs[0], []byte("hellp"), 0o640)
	if _, err := runBackupCLI(t, "backup", "verify", "-target", target); err == nil {
		t.Fatal("verify of a damaged backup succeeded")
	}
}
