package agent

import (
	"fmt"
	"github.com/hactl/hactl/internal/fsutil"
	"os"
	"path/filepath"
	"strings"
)

// writeFileAtomic writes data to path atomically and durably, creating the
// directory when it is missing.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFile(path, data, mode)
}

// underRoot joins an absolute machine path (e.g. /etc/hactl/agent.json) under
// root, refusing paths that would leave it. root "/" returns p cleaned.
func underRoot(root, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	clean := filepath.Clean(p)
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q leaves the node root", p)
		}
	}
	return filepath.Join(root, clean), nil
}
