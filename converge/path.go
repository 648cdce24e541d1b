package converge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// ErrEscape is returned (wrapped) when a path would leave the node root.
var ErrEscape = errors.New("path escapes the node root")

// Path maps a declared absolute path to the host path the resource must
// use. On real machines (root "/") it is the cleaned path. On local nodes it
// is the path under Root (a path that already starts with Root, as
// "${node.dir}/etc/x" does, is taken relative to it): "../" that climbs above the root is refused, and
// symlinks in the parent directories are resolved inside the root with
// securejoin semantics; a symlink that would lead outside the root is
// refused. The last element is not resolved, so a resource manages a
// symlink itself rather than what it points to.
func (e Env) Path(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute", p)
	}
	if !e.Local() {
		return filepath.Clean(p), nil
	}
	if climbs(p) {
		return "", fmt.Errorf("%q: %w", p, ErrEscape)
	}
	root, err := e.root()
	if err != nil {
		return "", err
	}
	clean := filepath.Clean(p)
	// A path written as "${node.dir}/etc/x" already names the host path:
	// take it relative to the root, so both spellings mean the same file.
	for _, r := range []string{filepath.Clean(e.Root), root} {
		if clean == r {
			clean = "/"
			break
		}
		if strings.HasPrefix(clean, r+"/") {
			clean = strings.TrimPrefix(clean, r)
			break
		}
	}
	if clean == "/" {
		return root, nil
	}
	dir, base := filepath.Split(clean)
	rdir, err := e.Memo.Do("confine:"+root+"\x00"+dir, func() (any, error) {
		// Refuse rather than silently clamp a symlink that points outside.
		links, err := checkSymlinks(root, dir)
		if err != nil {
			return "", err
		}
		if !links {
			// No symlink on the way: SecureJoin would walk the same
			// elements again to return the lexical join.
			return filepath.Join(root, dir), nil
		}
		rdir, err := securejoin.SecureJoin(root, dir)
		if err != nil {
			// E.g. a parent is a regular file: the lexical path is
			// confined (checkSymlinks passed), and using it lets the
			// resource report the real problem when it runs.
			rdir = filepath.Join(root, dir)
		}
		return rdir, nil
	})
	if err != nil {
		return "", fmt.Errorf("%q: %w", p, err)
	}
	return filepath.Join(rdir.(string), base), nil
}

// root returns the absolute, symlink-free node root.
func (e Env) root() (string, error) {
	v, err := e.Memo.Do("root:"+e.Root, func() (any, error) { return e.resolveRoot() })
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (e Env) resolveRoot() (string, error) {
	abs, err := filepath.Abs(e.Root)
	if err != nil {
		return "", fmt.Errorf("node root %q: %w", e.Root, err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

// climbs reports whether the path's ".." elements go above "/".
func climbs(p string) bool {
	depth := 0
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// checkSymlinks walks dir (relative to root) one element at a time and
// fails when a symlink, followed the way the kernel would, leads outside
// root. links reports whether it met a symlink at all.
func checkSymlinks(root, dir string) (links bool, err error) {
	cur := root
	for _, el := range strings.Split(dir, "/") {
		if el == "" || el == "." {
			continue
		}
		next := filepath.Join(cur, el)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return links, nil // nothing further can be a symlink
		}
		if err != nil {
			return links, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			links = true
			real, err := filepath.EvalSymlinks(next)
			if errors.Is(err, fs.ErrNotExist) {
				return links, nil // dangling: securejoin confines it
			}
			if err != nil {
				return links, err
			}
			if real != root && !strings.HasPrefix(real, root+"/") {
				rel, _ := filepath.Rel(root, next)
				return links, fmt.Errorf("symlink /%s points to %s: %w", rel, real, ErrEscape)
			}
			next = real
		}
		cur = next
	}
	return links, nil
}

// Unconfine turns a host path back into the declared path, for messages
// and reports.
func (e Env) Unconfine(hostPath string) string {
	if !e.Local() {
		return hostPath
	}
	root, err := e.root()
	if err != nil {
		return hostPath
	}
	if rel, err := filepath.Rel(root, hostPath); err == nil && !strings.HasPrefix(rel, "..") {
		return "/" + strings.TrimPrefix(rel, ".")
	}
	return hostPath
}
