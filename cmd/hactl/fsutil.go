package main

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// copyTreeDeref copies src into dst, following symbolic links (a config
// directory may link to the shared roles/ library) and skipping .git, so the
// published tree is self-contained.
func copyTreeDeref(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Stat(p) // follows links
		if err != nil {
			return err
		}
		if fi.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 {
				return copyTreeDeref(p, target)
			}
			return nil
		}
		return copyFile(p, target, fi.Mode().Perm())
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
