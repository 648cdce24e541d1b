package data

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"time"
)

// ErrNoSource is wrapped by Bootstrap when it refuses to start a data
// directory from empty.
var ErrNoSource = errors.New("no replica or backup to restore from")

// BootstrapSpec is one data directory to prepare on a (re)built node.
type BootstrapSpec struct {
	// Name names the data in messages ("mail/maildir").
	Name string
	Dir  string
	// NewCluster allows starting from an empty directory when no replica
	// answers and no backup exists: only for a cluster's first boot.
	NewCluster bool
	// TLS is the replication client configuration (see MutualTLS).
	TLS    *tls.Config
	Logger *slog.Logger
	// Now is the clock used for ages (default time.Now).
	Now func() time.Time
}

// Bootstrap sources.
const (
	SourceReplica = "replica"
	SourceBackup  = "backup"
	SourceLocal   = "local"
	SourceEmpty   = "empty"
)

// BootstrapReport says where a data directory came from and how old it is.
type BootstrapReport struct {
	Name string `json:"name"`
	// Kind is one of SourceReplica, SourceBackup, SourceLocal, SourceEmpty.
	Kind string `json:"kind"`
	// Source is human-readable: "replica mail-2",
	// "backup 20261122T030000.000Z at sftp://...", ...
	Source string `json:"source"`
	Peer   string `json:"peer,omitempty"`
	Backup string `json:"backup,omitempty"`
	Target string `json:"target,omitempty"`
	// Age is how old the data is: 0 from a live replica, the backup's age
	// from a backup (the RPO actually suffered).
	Age   time.Duration `json:"age_ns"`
	Files int           `json:"files"`
	Bytes int64         `json:"bytes"`
	// Failed lists the sources tried before the one used, with errors.
	Failed []string `json:"failed,omitempty"`
}

// Bootstrap prepares spec.Dir before the role's services start, in this
// order:
//
//  1. a healthy replica (peers in order, "name=host:port" or host:port):
//     full pull, every file verified, swapped in atomically;
//  2. when no replica answers and spec.Dir already holds data (the node
//     restarted rather than being rebuilt), that data is kept: an older
//     backup must not overwrite newer local writes;
//  3. the newest backup that restores cleanly across all targets (corrupt
//     ones are skipped);
//  4. empty, only when spec.NewCluster; otherwise the error wraps
//     ErrNoSource and the services must not start.
func Bootstrap(ctx context.Context, spec BootstrapSpec, peers []string, targets []Target) (BootstrapReport, error) {
	rep := BootstrapReport{Name: spec.Name}
	log := spec.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if spec.Now != nil {
		now = spec.Now
	}
	for _, p := range peers {
		name, _ := peerAddr(p)
		m, err := Pull(ctx, spec.TLS, p, spec.Dir)
		if err != nil {
			log.Warn("bootstrap: replica unusable", "data", spec.Name, "peer", name, "err", err)
			rep.Failed = append(rep.Failed, fmt.Sprintf("replica %s: %v", name, err))
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			continue
		}
		rep.Kind, rep.Source, rep.Peer = SourceReplica, "replica "+name, name
		rep.Files, rep.Bytes = m.Files()
		log.Info("bootstrap: data pulled from replica", "data", spec.Name, "peer", name, "files", rep.Files)
		return rep, nil
	}
	if m, err := Snapshot(ctx, spec.Dir); err == nil && len(m.Entries) > 0 {
		rep.Kind, rep.Source = SourceLocal, "local data kept"
		rep.Files, rep.Bytes = m.Files()
		log.Warn("bootstrap: no replica answered; keeping local data", "data", spec.Name, "files", rep.Files)
		return rep, nil
	}
	type candidate struct {
		t  Target
		id string
	}
	var cands []candidate
	reachable := 0
	for _, t := range targets {
		ids, err := backupIDs(ctx, t)
		if err != nil {
			rep.Failed = append(rep.Failed, fmt.Sprintf("target %s: %v", t, err))
			continue
		}
		reachable++
		for _, id := range ids {
			cands = append(cands, candidate{t, id})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].id > cands[j].id })
	for _, c := range cands {
		rr, err := Restore(ctx, c.t, RestoreOptions{ID: c.id, Dir: spec.Dir, Logger: log, Now: now})
		if err != nil {
			log.Warn("bootstrap: backup unusable", "data", spec.Name, "target", c.t.String(), "backup", c.id, "err", err)
			rep.Failed = append(rep.Failed, fmt.Sprintf("backup %s at %s: %v", c.id, c.t, err))
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			continue
		}
		rep.Kind, rep.Backup, rep.Target = SourceBackup, c.id, c.t.String()
		rep.Source = fmt.Sprintf("backup %s at %s", c.id, c.t)
		rep.Age, rep.Files, rep.Bytes = rr.Age, rr.Files, rr.Bytes
		log.Info("bootstrap: data restored from backup", "data", spec.Name, "backup", c.id, "age", rr.Age.Round(time.Second))
		return rep, nil
	}
	if spec.NewCluster && len(cands) == 0 && reachable == len(targets) {
		if err := os.MkdirAll(spec.Dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return rep, fmt.Errorf("bootstrap %s: %w", spec.Name, err)
		}
		rep.Kind, rep.Source = SourceEmpty, "empty (new cluster)"
		return rep, nil
	}
	return rep, fmt.Errorf("bootstrap %s: refusing to start from empty: %w (tried %d replicas, %d backups)", spec.Name, ErrNoSource, len(peers), len(cands))
}
