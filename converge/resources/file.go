package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func pathAttrs(extra hcldec.ObjectSpec) hcldec.ObjectSpec {
	s := hcldec.ObjectSpec{
		"path":   reqStr("path"),
		"mode":   optStr("mode"),
		"owner":  optStr("owner"),
		"group":  optStr("group"),
		"ensure": strDefault("ensure", "present"),
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

func fileKind() converge.Kind {
	return converge.Kind{
		Name: "file",
		Spec: pathAttrs(hcldec.ObjectSpec{"content": optStr("content"), "source": optStr("source")}),
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			f, err := newFile(env, o)
			if err != nil {
				return nil, err
			}
			if o.has("content") && o.has("source") {
				return nil, errors.New("content and source are mutually exclusive")
			}
			if c := o.strp("content"); c != nil {
				f.want = func() ([]byte, error) { return []byte(*c), nil }
			}
			if src := o.str("source"); src != "" {
				f.want = func() ([]byte, error) { return os.ReadFile(sourcePath(env, src)) }
			}
			return f, nil
		},
	}
}

// sourcePath resolves a `source` attribute against the configuration dir.
func sourcePath(env converge.Env, src string) string {
	if filepath.IsAbs(src) || env.ConfigDir == "" {
		return src
	}
	return filepath.Join(env.ConfigDir, src)
}

// File is a regular file (kinds file and template). want is nil when
// only the attributes are managed.
type File struct {
	env    converge.Env
	decl   string // declared path, for messages and diffs
	path   string // host path
	absent bool
	attrs  attrs
	want   func() ([]byte, error)

	change string
	old    []byte // content before, for Diff
	new    []byte // content wanted, for Diff
}

var (
	_ converge.Differ  = (*File)(nil)
	_ converge.Pather  = (*File)(nil)
	_ converge.Changer = (*File)(nil)
)

func newFile(env converge.Env, o obj) (*File, error) {
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
	return &File{env: env, decl: decl, path: p, absent: ensure == "absent", attrs: a}, nil
}

// ManagedPath implements converge.Pather.
func (f *File) ManagedPath() (string, bool) { return f.path, false }

// Change implements converge.Changer.
func (f *File) Change() string { return f.change }

// Diff implements converge.Differ.
func (f *File) Diff() (string, error) {
	if f.new == nil && !f.absent {
		return "", nil
	}
	return converge.UnifiedDiff("a"+f.decl, "b"+f.decl, f.old, f.new), nil
}

// CheckApply implements converge.Resource.
func (f *File) CheckApply(ctx context.Context, apply bool) (bool, error) {
	fi, err := os.Lstat(f.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if exists && fi.IsDir() {
		return false, fmt.Errorf("%s is a directory", f.decl)
	}
	regular := exists && fi.Mode().IsRegular()
	if f.absent {
		if !exists {
			return true, nil
		}
		f.change = "remove"
		if regular {
			f.old, _ = os.ReadFile(f.path)
		}
		if !apply {
			return false, nil
		}
		if regular {
			// Written at once, not staged: the removal below is
			// immediate, and the backup must not be lost with it.
			benv := f.env
			benv.Writes = nil
			if err := backup(benv, f.decl, f.path); err != nil {
				return false, err
			}
		}
		f.change = "removed"
		return false, os.Remove(f.path)
	}

	var want []byte
	if f.want != nil {
		if want, err = f.want(); err != nil {
			return false, err
		}
	}
	var old []byte
	same := regular
	if regular {
		if old, same, err = readCompare(f.path, fi.Size(), want, f.want != nil); err != nil {
			return false, err
		}
	}
	rewrite := !regular || (f.want != nil && !same)
	if rewrite {
		f.old, f.new = old, want
		if f.want == nil { // attributes only: create an empty file
			f.new = []byte{}
			want = old
		}
		switch {
		case !exists:
			f.change = fmt.Sprintf("create, %d bytes", len(want))
		case !regular:
			f.change = fmt.Sprintf("replace %s with a file, %d bytes", fi.Mode().Type(), len(want))
		default:
			f.change = fmt.Sprintf("content %d -> %d bytes", len(old), len(want))
		}
		if !apply {
			return false, nil
		}
		if regular {
			if err := backup(f.env, f.decl, f.path); err != nil {
				return false, err
			}
		}
		mode := fs.FileMode(0o644)
		if regular {
			mode = fi.Mode() & permMask
		}
		if f.attrs.mode != nil {
			mode = *f.attrs.mode
		}
		// Owner and group go on the temporary file, so the new file
		// appears with them (mode is set by WriteFile). The backup
		// above was staged first, so it is renamed into place first.
		err := f.env.WriteFile(f.path, want, mode, func(tmp string) error {
			fi, err := os.Lstat(tmp)
			if err != nil {
				return err
			}
			_, err = f.attrs.check(tmp, fi, true)
			return err
		})
		return false, err
	}
	diffs, err := f.attrs.check(f.path, fi, apply)
	if err != nil {
		return false, err
	}
	if len(diffs) == 0 {
		return true, nil
	}
	f.change = joinChanges(diffs)
	return false, nil
}

// readCompare returns the content of the regular file at path (size from
// its Lstat) and whether it is exactly want; with compare false
// (attributes only) it just reads. It reads with plain open/read/close
// system calls into one buffer of the Lstat size plus one byte: os.Open
// would also try to register the descriptor with the poller (a failing
// epoll_ctl per file) and fstat it. A file that changed size since the
// Lstat is still read whole and compared.
func readCompare(path string, size int64, want []byte, compare bool) (old []byte, same bool, err error) {
	var fd int
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, false, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, false, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	return buf, compare && string(buf) == string(want), nil
}

// BackupDir returns where replaced versions of the file declared at decl
// are kept: <root>/var/lib/hactl/backup/<decl>/.
func BackupDir(env converge.Env, decl string) (string, error) {
	return env.Path(filepath.Join("/var/lib/hactl/backup", filepath.Clean(decl)))
}

// backup copies the current content of host path into the backup dir and
// keeps the newest env.BackupKeep copies (counting this one, which is only
// staged when env.Writes is set).
func backup(env converge.Env, decl, path string) error {
	dir, err := BackupDir(env, decl)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("backup %s: %w", decl, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup %s: %w", decl, err)
	}
	name := time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := env.WriteFile(filepath.Join(dir, name), data, 0o600, nil); err != nil {
		return fmt.Errorf("backup %s: %w", decl, err)
	}
	keep := env.BackupKeep
	if keep <= 0 {
		keep = 5
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("backup %s: %w", decl, err)
	}
	names := []string{name}
	for _, e := range ents {
		if e.Type().IsRegular() && e.Name()[0] != '.' && e.Name() != name {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for len(names) > keep {
		os.Remove(filepath.Join(dir, names[0]))
		names = names[1:]
	}
	return nil
}
