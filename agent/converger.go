package agent

import (
	"context"
	"encoding/json"

	"github.com/hactl/hactl/lang"
)

// Converger brings this node to the declared state of its role. It is the
// agent's seam to package converge; EngineConverger (engine.go) adapts the
// converge engine to it.
//
// Contract: Converge is called only from the agent's loop goroutine, never
// concurrently with itself. cfg is shared and must not be modified. It
// returns when the run is over or ctx is done. A run where some resources
// failed returns a Report with Failed > 0 and a nil error; an error means the
// run could not be carried out at all (the role does not evaluate, the graph
// has a cycle). With dryRun it changes nothing. The agent never retains the
// Report's Details beyond its status page.
//
// If a Converger also implements io.Closer, the agent calls Close once when
// it stops (e.g. to stop a supervisor's processes).
type Converger interface {
	Converge(ctx context.Context, cfg *lang.Config, role string, facts *lang.NodeFacts, dryRun bool) (Report, error)
}

// Report is the summary of one converge run as the agent records it.
type Report struct {
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	// Failures names each failed resource with its error ("file.index: ...").
	Failures []string `json:"failures,omitempty"`
	// Details is the engine's full report (JSON), shown by /v1/status.
	Details json.RawMessage `json:"details,omitempty"`
}

// Loader evaluates the configuration directory at a trusted commit (lang.Load
// with the converge schemas, diagnostics rendered into the error). It must
// not keep references to dir after it returns, except through the Config
// (Config.Dir).
type Loader func(dir string) (*lang.Config, error)
