//go:build !linux

package converge

// startWriteback is a no-op where sync_file_range(2) does not exist: the
// fsync of each file does all the work.
func startWriteback(fd int) {}
