package resources

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func gitKind() converge.Kind {
	return converge.Kind{
		Name: "git",
		Spec: hcldec.ObjectSpec{
			"path":   reqStr("path"),
			"repo":   reqStr("repo"),
			"branch": optStr("branch"),
			"tag":    optStr("tag"),
			"commit": optStr("commit"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			decl := o.str("path")
			p, err := env.Path(decl)
			if err != nil {
				return nil, fmt.Errorf("path: %w", err)
			}
			g := &Git{decl: decl, path: p, repo: o.str("repo")}
			n := 0
			for _, a := range []string{"branch", "tag", "commit"} {
				if o.has(a) {
					n++
				}
			}
			switch {
			case n > 1:
				return nil, errors.New("branch, tag and commit are mutually exclusive")
			case o.has("commit"):
				g.commit = strings.ToLower(o.str("commit"))
				if len(g.commit) != 40 || strings.Trim(g.commit, "0123456789abcdef") != "" {
					return nil, fmt.Errorf("commit: %q is not a full 40-digit commit hash", g.commit)
				}
			case o.has("tag"):
				g.ref = plumbing.NewTagReferenceName(o.str("tag"))
			case o.has("branch"):
				g.ref = plumbing.NewBranchReferenceName(o.str("branch"))
			}
			return g, nil
		},
	}
}

// Git is a checkout of a repository at a branch, tag or commit (detached
// HEAD), made with go-git. With none of the three it clones the default
// branch once and then only checks that the checkout exists. Checking a
// branch or tag asks the remote for its current commit. Local edits to
// tracked files are overwritten when HEAD must move, but are not
// detected on their own.
type Git struct {
	decl, path, repo string
	ref              plumbing.ReferenceName
	commit           string
	change           string
}

var (
	_ converge.Pather  = (*Git)(nil)
	_ converge.Changer = (*Git)(nil)
)

// ManagedPath implements converge.Pather.
func (g *Git) ManagedPath() (string, bool) { return g.path, true }

// Change implements converge.Changer.
func (g *Git) Change() string { return g.change }

// want returns the commit the checkout must be at ("" = any).
func (g *Git) want(ctx context.Context) (string, error) {
	if g.commit != "" || g.ref == "" {
		return g.commit, nil
	}
	rem := git.NewRemote(nil, &config.RemoteConfig{Name: "origin", URLs: []string{g.repo}})
	refs, err := rem.ListContext(ctx, &git.ListOptions{PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", fmt.Errorf("list %s: %w", g.repo, err)
	}
	var direct, peeled string
	for _, r := range refs {
		switch r.Name().String() {
		case g.ref.String():
			direct = r.Hash().String()
		case g.ref.String() + "^{}":
			peeled = r.Hash().String()
		}
	}
	if peeled != "" {
		return peeled, nil
	}
	if direct == "" {
		return "", fmt.Errorf("%s has no %s", g.repo, g.ref)
	}
	return direct, nil
}

// CheckApply implements converge.Resource.
func (g *Git) CheckApply(ctx context.Context, apply bool) (bool, error) {
	want, err := g.want(ctx)
	if err != nil {
		return false, err
	}
	r, err := git.PlainOpen(g.path)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		g.change = "clone " + g.repo
		if want != "" {
			g.change += " at " + want[:12]
		}
		if !apply {
			return false, nil
		}
		opts := &git.CloneOptions{URL: g.repo}
		if g.ref.IsBranch() {
			opts.ReferenceName = g.ref
		}
		if r, err = git.PlainCloneContext(ctx, g.path, false, opts); err != nil {
			return false, fmt.Errorf("clone %s: %w", g.repo, err)
		}
		if want == "" {
			return false, nil
		}
		return false, g.checkout(ctx, r, want)
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", g.decl, err)
	}
	if want == "" {
		return true, nil
	}
	head, err := r.Head()
	if err == nil && head.Hash().String() == want {
		return true, nil
	}
	from := "nothing"
	if err == nil {
		from = head.Hash().String()[:12]
	}
	g.change = fmt.Sprintf("checkout %s -> %s", from, want[:12])
	if !apply {
		return false, nil
	}
	return false, g.checkout(ctx, r, want)
}

func (g *Git) checkout(ctx context.Context, r *git.Repository, want string) error {
	h := plumbing.NewHash(want)
	if _, err := r.CommitObject(h); err != nil {
		err := r.FetchContext(ctx, &git.FetchOptions{
			RemoteURL: g.repo,
			RefSpecs:  []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"},
			Tags:      git.AllTags,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return fmt.Errorf("fetch %s: %w", g.repo, err)
		}
	}
	wt, err := r.Worktree()
	if err != nil {
		return err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: h, Force: true}); err != nil {
		return fmt.Errorf("checkout %s: %w", want, err)
	}
	return nil
}
