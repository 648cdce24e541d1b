// Package resources holds hactl's built-in resource kinds: file, directory,
// symlink, template, package, service, user, group, exec and git, one file
// per kind, and Builtin, the one function that registers them all.
//
// Every kind follows the converge.Resource contract: CheckApply checks,
// returns early when the state is right, returns (false, nil) in noop mode,
// and otherwise converges in one call. Paths go through converge.Env.Path, so
// on local nodes nothing outside the node root is touched.
//
// It does not own the engine, the graph or reports (converge), nor the
// process supervisor (converge/supervise).
package resources
