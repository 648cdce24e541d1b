// Package serve holds what the built-in services of the reference cluster
// share: an HTTP lifecycle bound to a context (Serve), URL-or-file target
// lists that are re-read when the file changes (List), a static file handler
// that cannot leave its root (Static), and cluster-token helpers.
//
// The services themselves live in the sub-packages web, lb, mail and repo;
// each has a Config, a New constructor that validates it, and a Run(ctx)
// method that returns when the context is done, after a graceful shutdown.
// This package does not start processes, converge anything or know about
// cluster membership: the agent writes the target files and the supervisor
// runs "hactl serve <name>".
package serve
