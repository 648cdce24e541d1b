package data

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBootstrap_PrefersReplica_ThenBackup(t *testing.T) {
	ctx := context.Background()
	ca := newTestCA(t)
	peer := startReplica(t, ca, "mail-2", "127.0.0.1:0")
	writeTree(t, peer.dir, map[string]string{"cur/1": "live", "cur/2": "newest"})
	tg, err := NewDirTarget(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	old := t.TempDir()
	writeTree(t, old, map[string]string{"cur/1": "live"})
	bi, err := backupAt(ctx, old, tg, time.Now().Add(-90*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, client := ca.tls(t, "mail-1")

	dir := filepath.Join(t.TempDir(), "maildir")
	peers := []string{"mail-3=127.0.0.1:1", "mail-2=" + peer.addr} // mail-3 is gone
	rep, err := Bootstrap(ctx, BootstrapSpec{Name: "mail/maildir", Dir: dir, TLS: client}, peers, []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kind != SourceReplica || rep.Source != "replica mail-2" || rep.Age != 0 || len(rep.Failed) != 1 {
		t.Errorf("report = %+v, want replica mail-2 after mail-3 failed", rep)
	}
	if diff := cmp.Diff(map[string]string{"cur/1": "live", "cur/2": "newest"}, readTree(t, dir)); diff != "" {
		t.Errorf("bootstrapped tree (-want +got):\n%s", diff)
	}

	// Every replica gone, disk empty: the newest backup, with its age.
	peer.stop()
	dir2 := filepath.Join(t.TempDir(), "maildir")
	rep, err = Bootstrap(ctx, BootstrapSpec{Name: "mail/maildir", Dir: dir2, TLS: client}, peers, []Target{tg})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kind != SourceBackup || rep.Backup != bi.ID || rep.Age < 90*time.Minute || rep.Age > 2*time.Hour {
		t.Errorf("report = %+v, want backup %s about 90 minutes old", rep, bi.ID)
	}
	if diff := cmp.Diff(map[string]string{"cur/1": "live"}, readTree(t, dir2)); diff != "" {
		t.Errorf("restored tree (-want +got):\n%s", diff)
	}
}

func TestBootstrap_RefusesEmpty(t *testing.T) {
	ctx := context.Background()
	tg, err := NewDirTarget(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "d")
	_, err = Bootstrap(ctx, BootstrapSpec{Name: "repo/git", Dir: dir}, []string{"127.0.0.1:1"}, []Target{tg})
	if !errors.Is(err, ErrNoSource) {
		t.Fatalf("err = %v, want ErrNoSource", err)
	}
	rep, err := Bootstrap(ctx, BootstrapSpec{Name: "repo/git", Dir: dir, NewCluster: true}, nil, []Target{tg})
	if err != nil || rep.Kind != SourceEmpty {
		t.Fatalf("new cluster: report %+v, err %v; want empty", rep, err)
	}
}
