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

func directoryKind() converge.Kind {
	return converge.Kind{
		Name: "directory",
		Spec: pathAttrs(hcldec.ObjectSpec{"purge": optBool("purge")}),
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
			a, err := decodeAttrs(o)
			if err != nil {
				return nil, err
			}
			return &Directory{env: env, decl: decl, path: p, absent: ensure == "absent", attrs: a, purge: o.boolean("purge")}, nil
		},
	}
}

// Directory is a directory; with purge it removes every entry that no
// resource of the run manages.
type Directory struct {
	env    converge.Env
	decl   string
	path   string
	absent bool
	attrs  attrs
	purge  bool
	change string
}

var (
	_ converge.Pather  = (*Directory)(nil)
	_ converge.Changer = (*Directory)(nil)
)

// ManagedPath implements converge.Pather.
func (d *Directory) ManagedPath() (string, bool) { return d.path, true }

// Change implements converge.Changer.
func (d *Directory) Change() string { return d.change }

// CheckApply implements converge.Resource.
func (d *Directory) CheckApply(ctx context.Context, apply bool) (bool, error) {
	fi, err := os.Lstat(d.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if exists && !fi.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory (%s)", d.decl, typeName(fi))
	}
	if d.absent {
		if !exists {
			return true, nil
		}
		d.change = "remove directory and its contents"
		if !apply {
			return false, nil
		}
		return false, os.RemoveAll(d.path)
	}
	var changes []string
	if !exists {
		changes = append(changes, "create")
		if apply {
			mode := fs.FileMode(0o755)
			if d.attrs.mode != nil {
				mode = *d.attrs.mode
			}
			if err := os.MkdirAll(filepath.Dir(d.path), 0o755); err != nil {
				return false, err
			}
			if err := os.Mkdir(d.path, mode); err != nil {
				return false, err
			}
			if fi, err = os.Lstat(d.path); err != nil {
				return false, err
			}
		}
	}
	if fi != nil {
		diffs, err := d.attrs.check(d.path, fi, apply)
		if err != nil {
			return false, err
		}
		changes = append(changes, diffs...)
	}
	if d.purge && exists {
		ents, err := os.ReadDir(d.path)
		if err != nil {
			return false, err
		}
		var gone []string
		for _, e := range ents {
			p := filepath.Join(d.path, e.Name())
			if d.env.Managed.Covers(p) {
				continue
			}
			gone = append(gone, e.Name())
			if apply {
				if err := os.RemoveAll(p); err != nil {
					return false, err
				}
			}
		}
		if len(gone) > 0 {
			changes = append(changes, fmt.Sprintf("purge %d unmanaged entries %q", len(gone), gone))
		}
	}
	if len(changes) == 0 {
		return true, nil
	}
	d.change = joinChanges(changes)
	return false, nil
}
