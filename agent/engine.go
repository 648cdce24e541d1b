package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/converge/supervise"
	"github.com/hactl/hactl/lang"
)

// LangLoader returns the Loader the agent uses in production: lang.Load with
// the converge registry's schemas, diagnostics rendered (file:line and
// snippet) into the error.
func LangLoader(schemas lang.Schemas) Loader {
	return func(dir string) (*lang.Config, error) {
		cfg, diags := lang.Load(dir, lang.LoadOptions{Schemas: schemas, Getenv: func(string) string { return "" }})
		if diags.HasErrors() {
			var b bytes.Buffer
			files := map[string][]byte{}
			if cfg != nil {
				files = cfg.Files
			}
			_ = lang.WriteDiagnostics(&b, files, diags, false)
			return nil, fmt.Errorf("configuration in %s does not evaluate:\n%s", dir, b.String())
		}
		return cfg, nil
	}
}

// EngineConverger adapts the converge engine to Converger. On a local node
// (root other than "/") it owns the supervisor that runs the role's services
// and stops them on Close; on a machine services are systemd units.
type EngineConverger struct {
	reg  *converge.Registry
	root string
	log  *slog.Logger
	sup  *supervise.Supervisor
	// Parallelism bounds concurrent resources; 0 = the engine default.
	Parallelism int
}

// NewEngineConverger builds the adapter for a node rooted at root with the
// resource kinds of reg.
func NewEngineConverger(reg *converge.Registry, root string, log *slog.Logger) (*EngineConverger, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ec := &EngineConverger{reg: reg, root: root, log: log}
	if root != "/" {
		sup, err := supervise.New(supervise.Config{Root: root, Logger: log.With("component", "supervisor")})
		if err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		ec.sup = sup
	}
	return ec, nil
}

// Converge implements Converger. A real run writes its JSON report to
// <root>/var/lib/hactl/last-report.json.
func (ec *EngineConverger) Converge(ctx context.Context, cfg *lang.Config, role string, facts *lang.NodeFacts, dryRun bool) (Report, error) {
	r := cfg.Role(role)
	if r == nil {
		return Report{}, fmt.Errorf("configuration declares no role %q", role)
	}
	env := converge.Env{
		Root: ec.root, ConfigDir: cfg.Dir, Facts: facts, OSFamily: facts.OSFamily,
		Logger: ec.log, Supervisor: ec.sup,
	}
	rep, err := converge.NewEngine(ec.reg, env).Run(ctx, r.Resources, cfg.EvalContext(facts), converge.Options{DryRun: dryRun, Parallelism: ec.Parallelism})
	if rep == nil {
		if err == nil {
			err = errors.New("converge engine returned no report")
		}
		return Report{}, err
	}
	out := Report{Changed: rep.Summary.Changed, Unchanged: rep.Summary.Unchanged, Failed: rep.Summary.Failed, Skipped: rep.Summary.Skipped}
	for _, rr := range rep.Resources {
		if rr.Status == converge.StatusFailed {
			out.Failures = append(out.Failures, rr.Addr+": "+rr.Error)
		}
	}
	if b, jerr := json.Marshal(rep); jerr == nil {
		out.Details = b
	}
	if !dryRun {
		if werr := rep.WriteFile(filepath.Join(ec.root, "var/lib/hactl/last-report.json")); werr != nil {
			ec.log.Warn("cannot write the run report", "err", werr)
		}
	}
	return out, err
}

// Close stops the supervised services of a local node.
func (ec *EngineConverger) Close() error {
	if ec.sup != nil {
		return ec.sup.Close()
	}
	return nil
}
