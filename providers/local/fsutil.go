package local

import (
	"encoding/json"
	"github.com/hactl/hactl/internal/fsutil"
	"os"
)

// writeAtomic replaces path with data atomically and durably.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return fsutil.WriteFile(path, data, perm)
}

// writeJSON writes v as indented JSON atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'), 0o644)
}

// syncDir fsyncs a directory so a rename in it is durable; best effort.
func syncDir(dir string) { fsutil.SyncDir(dir) }
