package data

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"
)

// Layout of a backup target:
//
//	objects/<h[0:2]>/<h>   file content, named by its digest h (in the
//	                       algorithm of the manifests that refer to it)
//	backups/<ID>.json      a manifest envelope: format 2 {format, id, hash,
//	                       sum, manifest}; format 1 {format, id, sha256,
//	                       manifest}, SHA-256 throughout, still read
const (
	objectsPrefix = "objects/"
	backupsPrefix = "backups/"
	// idLayout formats a backup ID: its creation time in UTC. IDs sort in
	// time order.
	idLayout = "20060102T150405.000Z"
	// manifestFormat is the version of the envelope written: 2 names its
	// hash algorithm; 1 (SHA-256 only) is still read.
	manifestFormat = 2
)

// ErrCorrupt is wrapped by errors about a backup whose manifest or objects
// do not match their checksums or are missing.
var ErrCorrupt = errors.New("backup corrupt")

// envelope is the stored form of a manifest: the manifest's JSON bytes and
// their digest, so a damaged manifest is detected before it is trusted.
// Format 2 has Hash (the algorithm of the envelope's Sum and of every
// entry, equal to the manifest's Hash) and Sum; format 1 has SHA256.
type envelope struct {
	Format   int             `json:"format"`
	ID       string          `json:"id"`
	SHA256   string          `json:"sha256,omitempty"`
	Hash     string          `json:"hash,omitempty"`
	Sum      string          `json:"sum,omitempty"`
	Manifest json.RawMessage `json:"manifest"`
}

// BackupInfo describes one backup at a target.
type BackupInfo struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Target string    `json:"target"`
	// Uploaded counts the objects (and their bytes) this backup had to
	// send; the rest were already at the target. Set by Backup only.
	Uploaded      int   `json:"uploaded,omitempty"`
	UploadedBytes int64 `json:"uploaded_bytes,omitempty"`
	// Err is set by ListBackups for a backup whose manifest is unreadable.
	Err string `json:"error,omitempty"`
}

func objectName(h string) string { return objectsPrefix + h[:2] + "/" + h }

func manifestName(id string) string { return backupsPrefix + id + ".json" }

// BackupID returns the ID of a backup created at t.
func BackupID(t time.Time) string { return t.UTC().Format(idLayout) }

// ParseBackupID returns the creation time encoded in a backup ID.
func ParseBackupID(id string) (time.Time, error) {
	t, err := time.Parse(idLayout, id)
	if err != nil {
		return time.Time{}, fmt.Errorf("backup id %q: %w", id, err)
	}
	return t, nil
}

// Backup snapshots dir and stores it at t: every file whose content the
// target lacks is uploaded as an object (checked against the snapshot's
// hash while it streams; a file that changed since the snapshot is hashed
// again and re-sent), then the manifest is written last, so a backup is
// visible only once all its objects are stored.
func Backup(ctx context.Context, dir string, t Target) (BackupInfo, error) {
	return backupAt(ctx, dir, t, time.Time{})
}

// backupAt is Backup with the backup's time forced to at (when not zero).
func backupAt(ctx context.Context, dir string, t Target, at time.Time) (BackupInfo, error) {
	m, err := Snapshot(ctx, dir)
	if err != nil {
		return BackupInfo{}, err
	}
	if !at.IsZero() {
		m.Created = at.UTC()
	}
	m.Created = m.Created.Truncate(time.Millisecond)
	ids, err := backupIDs(ctx, t)
	if err != nil {
		return BackupInfo{}, err
	}
	// IDs have millisecond resolution: never reuse one.
	for len(ids) > 0 && BackupID(m.Created) <= ids[len(ids)-1] {
		m.Created = m.Created.Add(time.Millisecond)
	}
	info := BackupInfo{ID: BackupID(m.Created), Time: m.Created, Target: t.String()}
	names, err := t.List(ctx, objectsPrefix)
	if err != nil {
		return info, err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[path.Base(n)] = true
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile || have[e.Sum] {
			continue
		}
		n, err := uploadEntry(ctx, dir, t, m.Alg(), e, have)
		if err != nil {
			return info, fmt.Errorf("backup %s to %s: %w", dir, t, err)
		}
		if n >= 0 {
			info.Uploaded++
			info.UploadedBytes += n
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return info, err
	}
	sum, err := sumBytes(m.Alg(), raw)
	if err != nil {
		return info, err
	}
	env, err := json.Marshal(envelope{Format: manifestFormat, ID: info.ID, Hash: m.Alg(), Sum: sum, Manifest: raw})
	if err != nil {
		return info, err
	}
	if err := t.Put(ctx, manifestName(info.ID), bytes.NewReader(env)); err != nil {
		return info, fmt.Errorf("backup %s to %s: manifest: %w", dir, t, err)
	}
	info.Files, info.Bytes = m.Files()
	return info, nil
}

// uploadEntry sends the content of one file entry (hashed with alg),
// re-hashing the file when it changed since the snapshot (the entry is
// updated). It returns the bytes sent, or -1 when the (new) content was
// already present.
func uploadEntry(ctx context.Context, dir string, t Target, alg string, e *Entry, have map[string]bool) (int64, error) {
	for range snapshotRetries {
		p, err := localPath(dir, e.Path)
		if err != nil {
			return 0, err
		}
		f, err := openFile(p)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", e.Path, err)
		}
		h, err := newHash(alg)
		if err != nil {
			f.Close()
			return 0, err
		}
		hr := &hashReader{r: f, h: h, want: e.Sum, size: e.Size}
		err = t.Put(ctx, objectName(e.Sum), hr)
		f.Close()
		if err == nil {
			have[e.Sum] = true
			return e.Size, nil
		}
		if !errors.Is(err, errChanged) {
			return 0, err
		}
		ne, ok, err := statEntry(p, e.Path, alg)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("%s: removed during backup", e.Path)
		}
		*e = ne
		if have[e.Sum] {
			return -1, nil
		}
	}
	return 0, fmt.Errorf("%s kept changing during backup", e.Path)
}

var errChanged = errors.New("file changed since it was hashed")

// hashReader hashes what it reads and, at the end, fails instead of
// returning io.EOF when the content does not match want (so a Put of it
// aborts and nothing is stored under a wrong name).
type hashReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want string
	size int64
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF && (r.n != r.size || hex.EncodeToString(r.h.Sum(nil)) != r.want) {
		return n, errChanged
	}
	return n, err
}

// LoadManifest reads and checks the manifest of backup id.
func LoadManifest(ctx context.Context, t Target, id string) (Manifest, error) {
	var m Manifest
	rc, err := t.Get(ctx, manifestName(id))
	if err != nil {
		return m, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return m, fmt.Errorf("%s: backup %s: %w", t, id, err)
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return m, fmt.Errorf("%s: backup %s: manifest: %w: %v", t, id, ErrCorrupt, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.Manifest); err != nil {
		return m, fmt.Errorf("%s: backup %s: manifest: %w: %v", t, id, ErrCorrupt, err)
	}
	var alg, want string
	switch env.Format {
	case 1:
		alg, want = HashSHA256, env.SHA256
	case 2:
		alg, want = env.Hash, env.Sum
	default:
		return m, fmt.Errorf("%s: backup %s: unknown manifest format %d: %w", t, id, env.Format, ErrCorrupt)
	}
	sum, err := sumBytes(alg, compact.Bytes())
	if err != nil {
		return m, fmt.Errorf("%s: backup %s: manifest: %w: %v", t, id, ErrCorrupt, err)
	}
	if env.ID != id || sum != want {
		return m, fmt.Errorf("%s: backup %s: manifest checksum or id mismatch: %w", t, id, ErrCorrupt)
	}
	if err := json.Unmarshal(env.Manifest, &m); err != nil {
		return m, fmt.Errorf("%s: backup %s: manifest: %w: %v", t, id, ErrCorrupt, err)
	}
	if m.Alg() != alg {
		return m, fmt.Errorf("%s: backup %s: manifest hashed with %s, envelope says %s: %w", t, id, m.Alg(), alg, ErrCorrupt)
	}
	for _, e := range m.Entries {
		if e.Type == TypeFile && !validHash(e.Sum) {
			return m, fmt.Errorf("%s: backup %s: %s: bad hash: %w", t, id, e.Path, ErrCorrupt)
		}
	}
	return m, nil
}

// ListBackups returns the backups at t, oldest first. A backup whose
// manifest cannot be read is listed with Err set.
func ListBackups(ctx context.Context, t Target) ([]BackupInfo, error) {
	ids, err := backupIDs(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([]BackupInfo, 0, len(ids))
	for _, id := range ids {
		tm, _ := ParseBackupID(id)
		bi := BackupInfo{ID: id, Time: tm, Target: t.String()}
		m, err := LoadManifest(ctx, t, id)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			bi.Err = err.Error()
		}
		bi.Files, bi.Bytes = m.Files()
		out = append(out, bi)
	}
	return out, nil
}

// backupIDs lists backup IDs at t, oldest first.
func backupIDs(ctx context.Context, t Target) ([]string, error) {
	names, err := t.List(ctx, backupsPrefix)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		id, ok := strings.CutSuffix(strings.TrimPrefix(n, backupsPrefix), ".json")
		if !ok || strings.Contains(id, "/") {
			continue
		}
		if _, err := ParseBackupID(id); err != nil {
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	ID      string   `json:"id"`
	Target  string   `json:"target"`
	OK      bool     `json:"ok"`
	Objects int      `json:"objects"`
	Bytes   int64    `json:"bytes"`
	Corrupt []string `json:"corrupt,omitempty"`
	Missing []string `json:"missing,omitempty"`
	// Manifest is set when the manifest itself is damaged or missing.
	Manifest string `json:"manifest_error,omitempty"`
}

// Verify re-hashes every object backup id refers to against its manifest
// (in the manifest's hash algorithm).
// Damage is reported in the VerifyReport (OK false); the error is for
// failures to reach the target.
func Verify(ctx context.Context, t Target, id string) (VerifyReport, error) {
	r := VerifyReport{ID: id, Target: t.String()}
	m, err := LoadManifest(ctx, t, id)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) {
		r.Manifest = err.Error()
		return r, nil
	}
	if err != nil {
		return r, err
	}
	objs := m.Objects()
	hashes := make([]string, 0, len(objs))
	for h := range objs {
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	for _, h := range hashes {
		size := objs[h]
		r.Objects++
		r.Bytes += size
		ok, err := checkObject(ctx, t, m.Alg(), h, size)
		switch {
		case errors.Is(err, ErrNotFound):
			r.Missing = append(r.Missing, h)
		case err != nil:
			return r, err
		case !ok:
			r.Corrupt = append(r.Corrupt, h)
		}
	}
	r.OK = len(r.Corrupt) == 0 && len(r.Missing) == 0
	return r, nil
}

// checkObject reports whether object h has that size and digest under alg.
func checkObject(ctx context.Context, t Target, alg, h string, size int64) (bool, error) {
	hh, err := newHash(alg)
	if err != nil {
		return false, err
	}
	rc, err := t.Get(ctx, objectName(h))
	if err != nil {
		return false, err
	}
	defer rc.Close()
	n, err := copyHash(hh, ctxReader{ctx, rc})
	if err != nil {
		return false, fmt.Errorf("%s: read %s: %w", t, objectName(h), err)
	}
	return n == size && hex.EncodeToString(hh.Sum(nil)) == h, nil
}

// RetentionReport says what ApplyRetention kept and removed.
type RetentionReport struct {
	Kept          []string `json:"kept"`
	Deleted       []string `json:"deleted,omitempty"`
	PrunedObjects int      `json:"pruned_objects"`
}

// ApplyRetention keeps the newest keepLast backups plus the newest backup
// of each of the last keepDaily UTC days (counting today), deletes the
// other manifests, then deletes objects no remaining manifest refers to.
// keepLast and keepDaily both 0 keeps everything (objects are still
// pruned). Objects are not pruned when any remaining manifest cannot be
// read, since its references are unknown. Callers must not run a Backup
// to the same target concurrently (its fresh objects are not yet
// referenced).
func ApplyRetention(ctx context.Context, t Target, keepLast, keepDaily int, now time.Time, log *slog.Logger) (RetentionReport, error) {
	var rep RetentionReport
	if log == nil {
		log = slog.Default()
	}
	ids, err := backupIDs(ctx, t)
	if err != nil {
		return rep, err
	}
	keep := map[string]bool{}
	if keepLast == 0 && keepDaily == 0 {
		for _, id := range ids {
			keep[id] = true
		}
	}
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-keepLast; i-- {
		keep[ids[i]] = true
	}
	if keepDaily > 0 {
		today := now.UTC().Truncate(24 * time.Hour)
		oldest := today.AddDate(0, 0, -(keepDaily - 1))
		seen := map[time.Time]bool{}
		for i := len(ids) - 1; i >= 0; i-- {
			tm, _ := ParseBackupID(ids[i])
			day := tm.Truncate(24 * time.Hour)
			if day.Before(oldest) || day.After(today) || seen[day] {
				continue
			}
			seen[day] = true
			keep[ids[i]] = true
		}
	}
	for _, id := range ids {
		if keep[id] {
			rep.Kept = append(rep.Kept, id)
			continue
		}
		if err := t.Delete(ctx, manifestName(id)); err != nil {
			return rep, err
		}
		rep.Deleted = append(rep.Deleted, id)
		log.Info("backup pruned", "target", t.String(), "backup", id)
	}
	referenced := map[string]bool{}
	for _, id := range rep.Kept {
		m, err := LoadManifest(ctx, t, id)
		if err != nil {
			log.Warn("not pruning objects: a kept manifest is unreadable", "target", t.String(), "backup", id, "err", err)
			return rep, nil
		}
		for h := range m.Objects() {
			referenced[h] = true
		}
	}
	names, err := t.List(ctx, objectsPrefix)
	if err != nil {
		return rep, err
	}
	for _, n := range names {
		if referenced[path.Base(n)] {
			continue
		}
		if err := t.Delete(ctx, n); err != nil {
			return rep, err
		}
		rep.PrunedObjects++
	}
	return rep, nil
}
