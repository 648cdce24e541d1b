package local

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// InstallBinary copies the running executable to
// <stateDir>/bin/hactl-<first 16 hex digits of its sha256> unless that file
// already exists, and returns its path. The copy is atomic (temp file, fsync,
// rename), so concurrent callers and crashes never leave a partial binary.
//
// Nodes run this copy rather than os.Executable(): under "go run" the
// executable is deleted when the CLI exits, and nodes must outlive the CLI.
// It is the local equivalent of the snapshot that holds the hactl binary.
func InstallBinary(stateDir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	src, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	defer src.Close()
	h := sha256.New()
	size, err := io.Copy(h, src)
	if err != nil {
		return "", fmt.Errorf("local: install binary: read %s: %w", exe, err)
	}
	bin := filepath.Join(stateDir, "bin")
	dst := filepath.Join(bin, "hactl-"+hex.EncodeToString(h.Sum(nil))[:16])
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == size && fi.Mode().Perm()&0o100 != 0 {
		return dst, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	tmp, err := os.CreateTemp(bin, ".hactl-*")
	if err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", fmt.Errorf("local: install binary: copy to %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("local: install binary: %w", err)
	}
	ok = true
	syncDir(bin)
	return dst, nil
}
