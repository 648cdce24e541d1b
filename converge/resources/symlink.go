package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func symlinkKind() converge.Kind {
	return converge.Kind{
		Name: "symlink",
		Spec: hcldec.ObjectSpec{
			"path":   reqStr("path"),
			"target": optStr("target"),
			"ensure": strDefault("ensure", "present"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			decl := o.str("path")
			p, err := env.Path(decl)
			if err != nil {
				return nil, fmt.Errorf("path: %w", err)
			}
			ensure := o.str("ensure")
			if err := oneOf("ensure", ensure, "present", "absent"); err != nil {
				return nil, err
			}
			target := o.str("target")
			if ensure == "present" && target == "" {
				return nil, errors.New("target is required when ensure is present")
			}
			// On local nodes an absolute target is moved under the root, and
			// a relative one must not climb out of it.
			if target != "" && env.Local() {
				abs := target
				if !filepath.IsAbs(abs) {
					abs = filepath.Dir(decl) + "/" + target // unclean: Path sees the ".."
				}
				hostAbs, err := env.Path(abs)
				if err != nil {
					return nil, fmt.Errorf("target: %w", err)
				}
				if filepath.IsAbs(target) {
					target = hostAbs
				}
			}
			return &Symlink{decl: decl, path: p, target: target, absent: ensure == "absent"}, nil
		},
	}
}

// Symlink is a symbolic link. It is replaced atomically (a new link
// renamed over the old one).
type Symlink struct {
	decl, path, target string
	absent             bool
	change             string
}

var (
	_ converge.Pather  = (*Symlink)(nil)
	_ converge.Changer = (*Symlink)(nil)
)

// ManagedPath implements converge.Pather.
func (s *Symlink) ManagedPath() (string, bool) { return s.path, false }

// Change implements converge.Changer.
func (s *Symlink) Change() string { return s.change }

// CheckApply implements converge.Resource.
func (s *Symlink) CheckApply(ctx context.Context, apply bool) (bool, error) {
	fi, err := os.Lstat(s.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if exists && fi.IsDir() {
		return false, fmt.Errorf("%s is a directory", s.decl)
	}
	if s.absent {
		if !exists {
			return true, nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return false, fmt.Errorf("%s is not a symlink (%s); refusing to remove it", s.decl, fi.Mode().Type())
		}
		s.change = "remove"
		if !apply {
			return false, nil
		}
		return false, os.Remove(s.path)
	}
	if exists && fi.Mode()&fs.ModeSymlink != 0 {
		cur, err := os.Readlink(s.path)
		if err != nil {
			return false, err
		}
		if cur == s.target {
			return true, nil
		}
		s.change = fmt.Sprintf("target %s -> %s", cur, s.target)
	} else if exists {
		s.change = fmt.Sprintf("replace %s with a symlink to %s", typeName(fi), s.target)
	} else {
		s.change = "create -> " + s.target
	}
	if !apply {
		return false, nil
	}
	tmp := filepath.Join(filepath.Dir(s.path), "."+filepath.Base(s.path)+".hactl-link")
	os.Remove(tmp)
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return false, err
	}
	if err := os.Symlink(s.target, tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return false, nil
}

func typeName(fi fs.FileInfo) string {
	if fi.Mode().IsRegular() {
		return "a regular file"
	}
	return fi.Mode().Type().String()
}
