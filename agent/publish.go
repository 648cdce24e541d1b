package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Publish commits the contents of srcDir (the HCL configuration directory and
// every file it references) as a new commit on refs/heads/main of the bare
// repository repoDir, creating the repository when it is missing, and returns
// the commit hash. The commit is signed with key (git's gpg.format=ssh form
// for an SSHSigner); a nil key makes an unsigned commit, which agents refuse
// (useful only to test that they do).
//
// The tree is exactly srcDir: files removed from srcDir disappear from the
// new commit; .git directories and empty directories are skipped; symlinks
// are stored as symlinks; the executable bit is kept. When the tree equals
// the tip's, no commit is made and the tip is returned. The branch is moved
// with compare-and-swap, so two concurrent publishers cannot lose a commit
// silently (the loser gets an error).
func Publish(ctx context.Context, srcDir, repoDir string, key Signer, msg string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if fi, err := os.Stat(srcDir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("publish: source %s is not a directory", srcDir)
	}
	repo, err := openOrInitBare(repoDir)
	if err != nil {
		return "", err
	}
	st := repo.Storer
	tree, err := writeTree(ctx, st, srcDir)
	if err != nil {
		return "", fmt.Errorf("publish %s: %w", srcDir, err)
	}
	branch := plumbing.NewBranchReferenceName(DefaultBranch)
	var parents []plumbing.Hash
	old, err := st.Reference(branch)
	switch {
	case err == nil:
		parents = []plumbing.Hash{old.Hash()}
		if pc, err := object.GetCommit(st, old.Hash()); err == nil && pc.TreeHash == tree {
			return old.Hash().String(), nil
		}
	case errors.Is(err, plumbing.ErrReferenceNotFound):
		old = nil
	default:
		return "", fmt.Errorf("publish: read %s: %w", branch, err)
	}
	if msg == "" {
		msg = "hactl publish"
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	who := object.Signature{Name: envOr("GIT_AUTHOR_NAME", "hactl"), Email: envOr("GIT_AUTHOR_EMAIL", "hactl@localhost"), When: time.Now().Truncate(time.Second)}
	c := &object.Commit{Author: who, Committer: who, Message: msg, TreeHash: tree, ParentHashes: parents}
	if key != nil {
		payload := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(payload); err != nil {
			return "", fmt.Errorf("publish: encode commit: %w", err)
		}
		r, _ := payload.Reader()
		sig, err := key.Sign(r)
		r.Close()
		if err != nil {
			return "", fmt.Errorf("publish: sign commit: %w", err)
		}
		c.PGPSignature = string(sig)
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", fmt.Errorf("publish: encode commit: %w", err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return "", fmt.Errorf("publish: store commit: %w", err)
	}
	if err := st.CheckAndSetReference(plumbing.NewHashReference(branch, h), old); err != nil {
		return "", fmt.Errorf("publish: update %s in %s (a concurrent publish?): %w", branch, repoDir, err)
	}
	return h.String(), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func openOrInitBare(dir string) (*git.Repository, error) {
	repo, err := git.PlainOpen(dir)
	if err == nil {
		return repo, nil
	}
	if !errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	repo, err = git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		Bare:        true,
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(DefaultBranch)},
	})
	if err != nil {
		return nil, fmt.Errorf("create repository %s: %w", dir, err)
	}
	// Let `git daemon` serve it without --export-all.
	if err := os.WriteFile(filepath.Join(dir, "git-daemon-export-ok"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("create repository %s: %w", dir, err)
	}
	return repo, nil
}

// writeTree stores dir recursively as git objects and returns its tree hash.
func writeTree(ctx context.Context, st storer.EncodedObjectStorer, dir string) (plumbing.Hash, error) {
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var tes []object.TreeEntry
	for _, e := range ents {
		name := e.Name()
		if name == ".git" {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			h, err := writeBlob(st, strings.NewReader(target), int64(len(target)))
			if err != nil {
				return plumbing.ZeroHash, err
			}
			tes = append(tes, object.TreeEntry{Name: name, Mode: filemode.Symlink, Hash: h})
		case fi.IsDir():
			h, err := writeTree(ctx, st, p)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			if h == plumbing.ZeroHash {
				continue // empty directory: git cannot hold it
			}
			tes = append(tes, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return plumbing.ZeroHash, err
			}
			h, err := writeBlob(st, f, fi.Size())
			f.Close()
			if err != nil {
				return plumbing.ZeroHash, fmt.Errorf("%s: %w", p, err)
			}
			mode := filemode.Regular
			if fi.Mode()&0o111 != 0 {
				mode = filemode.Executable
			}
			tes = append(tes, object.TreeEntry{Name: name, Mode: mode, Hash: h})
		default:
			return plumbing.ZeroHash, fmt.Errorf("%s: unsupported file type %s", p, fi.Mode().Type())
		}
	}
	if len(tes) == 0 {
		return plumbing.ZeroHash, nil
	}
	// git orders tree entries by name, comparing directories as "name/".
	sort.Slice(tes, func(i, j int) bool { return treeKey(tes[i]) < treeKey(tes[j]) })
	t := &object.Tree{Entries: tes}
	obj := st.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

func treeKey(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

func writeBlob(st storer.EncodedObjectStorer, r io.Reader, size int64) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(size)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}
