package resources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

func execKind() converge.Kind {
	return converge.Kind{
		Name: "exec",
		Spec: hcldec.ObjectSpec{
			"command":     &hcldec.AttrSpec{Name: "command", Type: cty.List(cty.String), Required: true},
			"creates":     optStr("creates"),
			"unless":      optList("unless"),
			"onlyif":      optList("onlyif"),
			"timeout":     strDefault("timeout", "5m"),
			"cwd":         optStr("cwd"),
			"env":         optMap("env"),
			"refreshonly": optBool("refreshonly"),
		},
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			e := &Exec{env: env, command: o.list("command"), unless: o.list("unless"), onlyif: o.list("onlyif"),
				refreshonly: o.boolean("refreshonly")}
			if len(e.command) == 0 {
				return nil, errors.New("command: must not be empty")
			}
			if o.has("unless") && len(e.unless) == 0 || o.has("onlyif") && len(e.onlyif) == 0 {
				return nil, errors.New("unless and onlyif must not be empty lists")
			}
			d, err := time.ParseDuration(o.str("timeout"))
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("timeout: %q is not a positive duration like \"30s\"", o.str("timeout"))
			}
			e.timeout = d
			if c := o.str("creates"); c != "" {
				if e.creates, err = env.Path(c); err != nil {
					return nil, fmt.Errorf("creates: %w", err)
				}
			}
			e.cwd = env.Root
			if c := o.str("cwd"); c != "" {
				if e.cwd, err = env.Path(c); err != nil {
					return nil, fmt.Errorf("cwd: %w", err)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(o.strMap("env"))) {
				e.environ = append(e.environ, k+"="+o.strMap("env")[k])
			}
			return e, nil
		},
	}
}

// Exec runs a command when its guards say it is needed. The guards (a
// `creates` path that exists, an `unless` command that succeeds, an
// `onlyif` command that fails) mean "already done"; they run in dry runs
// too, so they must not change anything. With refreshonly, the command
// runs only when a notifying resource changed. On local nodes `cwd` and
// `creates` are confined under the root, but the command itself is not
// sandboxed.
type Exec struct {
	env            converge.Env
	command        []string
	creates        string
	unless, onlyif []string
	timeout        time.Duration
	cwd            string
	environ        []string
	refreshonly    bool

	ran    bool
	change string
}

var (
	_ converge.Refresher = (*Exec)(nil)
	_ converge.Changer   = (*Exec)(nil)
)

// Change implements converge.Changer.
func (e *Exec) Change() string { return e.change }

// CheckApply implements converge.Resource.
func (e *Exec) CheckApply(ctx context.Context, apply bool) (bool, error) {
	if e.refreshonly {
		return true, nil
	}
	done, err := e.satisfied(ctx)
	if err != nil || done {
		return done, err
	}
	e.change = fmt.Sprintf("run %q", e.command)
	if !apply {
		return false, nil
	}
	return false, e.exec(ctx)
}

// Refresh implements converge.Refresher: run the command (refreshonly), or
// run it again unless it already ran in this run or its guards hold.
func (e *Exec) Refresh(ctx context.Context) error {
	if e.ran {
		return nil
	}
	if !e.refreshonly {
		if done, err := e.satisfied(ctx); err != nil || done {
			return err
		}
	}
	return e.exec(ctx)
}

func (e *Exec) satisfied(ctx context.Context) (bool, error) {
	if e.creates != "" {
		if _, err := os.Lstat(e.creates); err == nil {
			return true, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if e.unless != nil {
		code, err := exitCode(ctx, e.environ, e.cwd, e.unless...)
		if err != nil {
			return false, fmt.Errorf("unless: %w", err)
		}
		if code == 0 {
			return true, nil
		}
	}
	if e.onlyif != nil {
		code, err := exitCode(ctx, e.environ, e.cwd, e.onlyif...)
		if err != nil {
			return false, fmt.Errorf("onlyif: %w", err)
		}
		if code != 0 {
			return true, nil
		}
	}
	return false, nil
}

func (e *Exec) exec(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	e.ran = true
	if _, err := run(ctx, e.environ, e.cwd, e.command...); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("timed out after %s: %w", e.timeout, err)
		}
		return err
	}
	return nil
}
