// Package converge is hactl's node convergence engine: it turns a role's
// resource declarations (lang.ResourceDecl) into Resources through a Registry
// of kinds, orders them in a dependency graph (depends_on, implicit
// parent-directory edges, notify/subscribe), and checks and applies them in
// parallel with a bound, or only checks them in a dry run. Each run returns a
// Report (also written as JSON by the CLI).
//
// It owns: the Resource contract and its optional capabilities (Differ,
// Refresher, Pather, Changer), the Kind registry, Env (the capabilities a
// resource gets: node root and path confinement, facts, logger, supervisor),
// unified diffs for dry runs, the Report, and the compiled form of a run's
// declarations (Engine.Compile: bodies decoded in their evaluation context;
// Compiled.MarshalBinary/UnmarshalCompiled: a compact encoding that callers
// such as `hactl converge FILE` may keep to skip parsing and decoding an
// unchanged file — never the checks).
//
// It does not own: the built-in kinds (converge/resources), the process
// supervisor (converge/supervise), parsing HCL files (lang), fetching the
// configuration or running converge in a loop (agent).
package converge
