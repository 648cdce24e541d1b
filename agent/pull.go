package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// puller fetches the configuration branch into a local bare repository.
// It is used only by the agent's loop goroutine.
type puller struct {
	dir     string // <root>/var/lib/hactl/repo
	remotes []string
	branch  string
	timeout time.Duration
	log     *slog.Logger
	// onFail is called once per remote that failed.
	onFail func(remote string, err error)

	repo *git.Repository
}

// trackingRef is where the fetched tip is recorded in the local repository.
const trackingRef = "refs/hactl/tip"

func (p *puller) open() (*git.Repository, error) {
	if p.repo != nil {
		if _, err := os.Stat(filepath.Join(p.dir, "HEAD")); err == nil {
			return p.repo, nil
		}
		p.repo = nil // the disk was wiped under us: start again
	}
	repo, err := git.PlainOpen(p.dir)
	if err != nil {
		if !errors.Is(err, git.ErrRepositoryNotExists) {
			p.log.Warn("local repository unreadable, recreating it", "dir", p.dir, "err", err)
		}
		if err := os.RemoveAll(p.dir); err != nil {
			return nil, fmt.Errorf("reset local repository %s: %w", p.dir, err)
		}
		if err := os.MkdirAll(filepath.Dir(p.dir), 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", filepath.Dir(p.dir), err)
		}
		repo, err = git.PlainInit(p.dir, true)
		if err != nil {
			return nil, fmt.Errorf("create local repository %s: %w", p.dir, err)
		}
	}
	p.repo = repo
	return repo, nil
}

// fetch tries every remote in order and returns the branch tip and the
// remote that served it. It fails only when every remote failed; the error
// then names each remote.
func (p *puller) fetch(ctx context.Context) (plumbing.Hash, string, error) {
	repo, err := p.open()
	if err != nil {
		return plumbing.ZeroHash, "", err
	}
	spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", p.branch, trackingRef))
	var errs []error
	for _, url := range p.remotes {
		if err := ctx.Err(); err != nil {
			return plumbing.ZeroHash, "", err
		}
		h, err := p.fetchOne(ctx, repo, url, spec)
		if err == nil {
			return h, url, nil
		}
		if p.onFail != nil {
			p.onFail(url, err)
		}
		p.log.Warn("fetch failed, trying the next remote", "remote", redactURL(url), "err", err)
		errs = append(errs, fmt.Errorf("remote %s: %w", redactURL(url), err))
	}
	return plumbing.ZeroHash, "", fmt.Errorf("every remote failed: %w", errors.Join(errs...))
}

func (p *puller) fetchOne(ctx context.Context, repo *git.Repository, url string, spec config.RefSpec) (plumbing.Hash, error) {
	fctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	rem := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "hactl", URLs: []string{url}})
	opts := &git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Depth: 1, Force: true, Tags: git.NoTags}
	err := rem.FetchContext(fctx, opts)
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if fctx.Err() != nil {
			return plumbing.ZeroHash, fmt.Errorf("fetch timed out after %s: %w", p.timeout, err)
		}
		return plumbing.ZeroHash, err
	}
	ref, err := repo.Storer.Reference(trackingRef)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("branch %s not fetched: %w", p.branch, err)
	}
	// A remote that answered "up to date" left the ref as it was; make sure
	// the commit it names is really here (a wiped or partial store).
	if _, err := object.GetCommit(repo.Storer, ref.Hash()); err != nil {
		_ = repo.Storer.RemoveReference(trackingRef)
		return plumbing.ZeroHash, fmt.Errorf("commit %s missing from the local store: %w", ref.Hash(), err)
	}
	return ref.Hash(), nil
}

// commit returns a commit from the local store.
func (p *puller) commit(h plumbing.Hash) (*object.Commit, error) {
	repo, err := p.open()
	if err != nil {
		return nil, err
	}
	c, err := object.GetCommit(repo.Storer, h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// checkout writes the tree of c into dir (replacing it atomically through a
// temporary sibling). Tree entry names that could leave dir are refused.
func checkout(c *object.Commit, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil // worktrees are immutable: same commit, same content
	}
	tree, err := c.Tree()
	if err != nil {
		return fmt.Errorf("commit %s tree: %w", c.Hash, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".checkout-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	err = tree.Files().ForEach(func(f *object.File) error {
		for _, part := range strings.Split(f.Name, "/") {
			if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
				return fmt.Errorf("commit %s: refusing tree path %q", c.Hash, f.Name)
			}
		}
		dst := filepath.Join(tmp, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		r, err := f.Reader()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		defer r.Close()
		if f.Mode == filemode.Symlink {
			b, err := io.ReadAll(r)
			if err != nil {
				return err
			}
			return os.Symlink(string(b), dst)
		}
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		return out.Close()
	})
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("checkout %s: %w", c.Hash, err)
	}
	return nil
}

// redactURL drops userinfo from a URL for logs and errors.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && (strings.Index(rest, "/") < 0 || at < strings.Index(rest, "/")) {
			return u[:i+3] + "REDACTED@" + rest[at+1:]
		}
	}
	return u
}
