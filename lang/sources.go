package lang

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxFileSize bounds what file(), templatefile() and role sources read, so a
// stray reference to a huge file cannot exhaust memory.
const maxFileSize = 16 << 20

// sources gives confined read access to the files of a configuration: the
// in-memory map handed to LoadFiles first, then (when disk is set) the disk.
// Every path must stay inside root or the roles/ directory next to root.
type sources struct {
	root string            // cleaned configuration directory, "." when in memory
	disk bool              // read files missing from mem from disk
	mem  map[string][]byte // keys are cleaned paths
	// real are the absolute, symlink-free directories a file on disk may
	// resolve to: the allowed roots and the git work tree holding the
	// configuration (so a committed roles -> ../../roles link works).
	real []string
}

func newSources(dir string, files map[string][]byte) *sources {
	s := &sources{root: filepath.Clean(dir), disk: dir != "", mem: make(map[string][]byte, len(files))}
	if dir == "" {
		s.root = "."
	}
	for name, b := range files {
		s.mem[filepath.Clean(name)] = b
	}
	if s.disk {
		for _, r := range s.roots() {
			if rr, err := realPath(r); err == nil {
				s.real = append(s.real, rr)
			}
		}
		if top := gitTop(s.root); top != "" {
			s.real = append(s.real, top)
		}
	}
	return s
}

func realPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(a)
}

// gitTop returns the real path of the git work tree holding dir, or "".
func gitTop(dir string) string {
	d, err := realPath(dir)
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// roots are the directories files may be read from.
func (s *sources) roots() []string {
	return []string{s.root, filepath.Join(s.root, "..", "roles")}
}

// errOutside is wrapped by resolve when a path leaves the allowed roots.
var errOutside = errors.New("path is outside the configuration directory")

// resolve turns p, relative to the directory base, into a cleaned path and
// checks that it stays inside the allowed roots.
func (s *sources) resolve(base, p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %q contains a NUL byte", p)
	}
	if filepath.IsAbs(p) {
		return "", fmt.Errorf("%q: %w (absolute paths are not allowed)", p, errOutside)
	}
	full := filepath.Join(base, p)
	if !s.allowed(full) {
		return "", fmt.Errorf("%q: %w %s", p, errOutside, s.root)
	}
	return full, nil
}

func (s *sources) allowed(full string) bool {
	for _, r := range s.roots() {
		if within(r, full) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or below it. Both are cleaned and of
// the same kind (both relative or both absolute).
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return false
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// read returns the bytes of a path that resolve accepted.
func (s *sources) read(full string) ([]byte, error) {
	if b, ok := s.mem[full]; ok {
		return b, nil
	}
	if !s.disk {
		return nil, fmt.Errorf("read %s: %w", full, fs.ErrNotExist)
	}
	// Symbolic links must not lead outside the roots (or the git work tree).
	real, err := realPath(full)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", full, err)
	}
	ok := false
	for _, r := range s.real {
		ok = ok || within(r, real)
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w (through a symbolic link to %s)", full, errOutside, real)
	}
	f, err := os.Open(full)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", full, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", full, err)
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("read %s: file is larger than %d bytes", full, maxFileSize)
	}
	return b, nil
}
