package converge

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Writes holds the file writes one resource staged in one run: temporary
// files, complete and closed to writers, next to the paths they will
// replace. The engine gives every resource of a run its own Writes
// (Env.Writes) and commits them together (see commitWrites) before any
// resource that depends on one of them runs and before the run ends. Only
// the resource's CheckApply adds to it; the engine reads it after CheckApply
// returned, so it needs no lock.
type Writes struct {
	staged []stagedFile
}

type stagedFile struct {
	tmp, path string
	fd        int // open for the data sync; -1 once synced (over maxOpen) or closed
}

// maxOpenStaged bounds the temporary files a run keeps open until its
// commit; a write beyond it syncs and closes its file at once, like a write
// outside the engine.
const maxOpenStaged = 256

// Len reports how many writes are staged.
func (w *Writes) Len() int {
	if w == nil {
		return 0
	}
	return len(w.staged)
}

// WriteFile writes data to path with permission bits mode so that a reader,
// and the file system after a crash at any moment, sees either the old file
// (or none) or the whole new one, never a truncated one. prep, when not nil,
// is called with the temporary file's path before its mode is set and it
// is made visible (to set its owner: the new file appears with its
// attributes at once); the mode is set after it, whatever prep did.
//
// Inside a run (e.Writes set by the engine) the temporary file is only
// written and the rename is staged: the engine syncs the data of all
// staged files of a batch together, then renames them, then syncs their
// directories (see commitWrites), instead of one fsync per file. Outside a
// run it writes, fsyncs and renames at once.
func (e Env) WriteFile(path string, data []byte, mode fs.FileMode, prep func(tmp string) error) error {
	tmp, fd, err := createTemp(path)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			if fd >= 0 {
				syscall.Close(fd)
			}
			os.Remove(tmp)
		}
	}()
	if err := writeAll(fd, tmp, data); err != nil {
		return err
	}
	if prep != nil {
		if err := prep(tmp); err != nil {
			return err
		}
	}
	// After prep: a change of owner clears set-id bits. Exact bits: the
	// umask applied at creation.
	if err := syscall.Fchmod(fd, sysMode(mode)); err != nil {
		return &fs.PathError{Op: "chmod", Path: tmp, Err: err}
	}
	if e.Writes == nil || e.Writes.openCount() >= maxOpenStaged {
		if err := fsync(fd, tmp); err != nil {
			return err
		}
		if err := syscall.Close(fd); err != nil {
			fd = -1
			return &fs.PathError{Op: "close", Path: tmp, Err: err}
		}
		fd = -1
	}
	if e.Writes == nil {
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
		ok = true
		return nil
	}
	e.Writes.staged = append(e.Writes.staged, stagedFile{tmp: tmp, path: path, fd: fd})
	ok = true
	return nil
}

// sysMode converts permission and set-id/sticky bits to chmod(2)'s.
func sysMode(m fs.FileMode) uint32 {
	o := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		o |= syscall.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		o |= syscall.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		o |= syscall.S_ISVTX
	}
	return o
}

// writeReplace replaces path with data through a temporary file and a
// rename, without syncing: readers never see part of it, but a crash may
// lose it (for reports, which the next run rewrites).
func writeReplace(path string, data []byte, mode fs.FileMode) error {
	tmp, fd, err := createTemp(path)
	if err != nil {
		return err
	}
	err = writeAll(fd, tmp, data)
	if err == nil {
		if e := syscall.Fchmod(fd, sysMode(mode)); e != nil {
			err = &fs.PathError{Op: "chmod", Path: tmp, Err: e}
		}
	}
	if e := syscall.Close(fd); e != nil && err == nil {
		err = &fs.PathError{Op: "close", Path: tmp, Err: e}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func writeAll(fd int, name string, data []byte) error {
	for len(data) > 0 {
		n, err := syscall.Write(fd, data)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "write", Path: name, Err: err}
		}
		data = data[n:]
	}
	return nil
}

func (w *Writes) openCount() int {
	n := 0
	for _, s := range w.staged {
		if s.fd >= 0 {
			n++
		}
	}
	return n
}

// discard removes the staged temporary files (the resource failed after
// staging, so its change is dropped).
func (w *Writes) discard() {
	for _, s := range w.staged {
		if s.fd >= 0 {
			syscall.Close(s.fd)
		}
		os.Remove(s.tmp)
	}
	w.staged = nil
}

// createTemp creates a new, empty, private temporary file in path's
// directory (making the directory if needed) and returns its name and an
// open write descriptor. It uses plain system calls: os.CreateTemp would
// also register the descriptor with the poller (a failing epoll_ctl per
// file) and set flags with fcntl.
func createTemp(path string) (string, int, error) {
	dir, base := filepath.Split(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", -1, err
	}
	for range 100 {
		tmp := filepath.Join(dir, "."+base+".hactl-"+strconv.FormatUint(rand.Uint64()>>32, 36))
		for {
			fd, err := syscall.Open(tmp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EEXIST {
				break
			}
			if err != nil {
				return "", -1, &fs.PathError{Op: "create", Path: tmp, Err: err}
			}
			return tmp, fd, nil
		}
	}
	return "", -1, fmt.Errorf("create a temporary file for %s: too many collisions", path)
}

func fsync(fd int, name string) error {
	for {
		err := syscall.Fsync(fd)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "fsync", Path: name, Err: err}
		}
		return nil
	}
}

// commitWrites makes the staged writes of a batch of resources visible and
// durable. It returns one error per Writes (nil when all its files
// committed) and leaves every Writes empty.
//
// Order, and why a crash at any point leaves every path with its old or its
// whole new content:
//
//  1. Sync the data of every temporary file (startWriteback on all of them
//     first, so the disk gets one batch of writes and the file system can
//     commit them in one journal transaction; then fsync each, up to
//     syncFanout at once, which now mostly waits for writes already under
//     way and lets the device flushes merge). Until this step returns,
//     no path has been touched: a crash leaves the old files plus stray
//     temporary files.
//  2. Rename each temporary file over its path, in the order each resource
//     staged them (a backup of the old content before the new content). A
//     rename is atomic: a path names the old inode or the new one, and the
//     new one's data is already on disk (step 1), so it can never appear
//     truncated. A crash here leaves some paths old and some new.
//  3. Sync each directory that received a rename, once (up to syncFanout
//     at once), so the renames themselves are durable before the run
//     reports the resources changed.
//
// A file whose sync fails is not renamed (its resource fails, its path
// keeps the old content); a failed rename fails only its resource and
// stops that resource's later renames (a file is never replaced without
// the backup staged before it); a failed directory sync fails the
// resources that renamed into it.
func commitWrites(ws []*Writes) []error {
	errs := make([]error, len(ws))
	for _, w := range ws {
		for _, s := range w.staged {
			if s.fd >= 0 {
				startWriteback(s.fd)
			}
		}
	}
	syncAll(ws, errs)
	dirs := map[string][]int{} // directory -> the Writes that renamed into it
	for i, w := range ws {
		for _, s := range w.staged {
			if errs[i] != nil {
				os.Remove(s.tmp)
				continue
			}
			if err := os.Rename(s.tmp, s.path); err != nil {
				errs[i] = err
				os.Remove(s.tmp)
				continue
			}
			d := filepath.Dir(s.path)
			dirs[d] = append(dirs[d], i)
		}
		w.staged = nil
	}
	// The directories too, in parallel: after the first one's journal
	// commit the rest mostly wait for device flushes, which merge.
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	dirErrs := make([]error, len(names))
	parallel(len(names), func(k int) { dirErrs[k] = syncDir(names[k]) })
	for k, err := range dirErrs {
		if err == nil {
			continue
		}
		for _, i := range dirs[names[k]] {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// syncFanout bounds the fsyncs of a commit that run at once.
const syncFanout = 16

// syncAll fsyncs and closes every open staged file, up to syncFanout at a
// time, and records the first error of each Writes in errs. In parallel
// because each fsync ends with a flush of the device's write cache, and the
// block layer merges flushes that are pending together: one after the
// other, 200 files cost 200 flushes.
func syncAll(ws []*Writes, errs []error) {
	type job struct{ i, j int }
	var jobs []job
	for i, w := range ws {
		for j, s := range w.staged {
			if s.fd >= 0 {
				jobs = append(jobs, job{i, j})
			}
		}
	}
	fileErrs := make([]error, len(jobs))
	parallel(len(jobs), func(k int) {
		s := &ws[jobs[k].i].staged[jobs[k].j]
		err := fsync(s.fd, s.tmp)
		if cerr := syscall.Close(s.fd); cerr != nil && err == nil {
			err = &fs.PathError{Op: "close", Path: s.tmp, Err: cerr}
		}
		s.fd = -1
		fileErrs[k] = err
	})
	for k, err := range fileErrs {
		if i := jobs[k].i; err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
}

// parallel calls f(0) ... f(n-1), up to syncFanout at once, and returns
// when all returned.
func parallel(n int, f func(k int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(syncFanout, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				f(k)
			}
		}()
	}
	for k := range n {
		next <- k
	}
	close(next)
	wg.Wait()
}

func syncDir(dir string) error {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer syscall.Close(fd)
	err = fsync(fd, dir)
	if errors.Is(err, syscall.EINVAL) { // file systems that cannot sync directories
		return nil
	}
	return err
}
