package converge

import "golang.org/x/sys/unix"

// startWriteback asks the kernel to start writing fd's dirty pages now,
// without waiting: the later fsync of each file of a batch then mostly
// waits for writes already under way, and the file system commits the
// batch's block allocations together rather than one journal transaction
// per file. An error only means the fsync will do the work.
func startWriteback(fd int) {
	_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
