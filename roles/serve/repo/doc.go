// Package repo is the built-in code and package repository of the reference
// cluster ("hactl serve repo"): git over smart HTTP through the real "git
// http-backend" (net/http/cgi) for the bare repositories under one
// directory, and a static directory of packages at /packages/.
//
// A push is acknowledged only once it is on two replicas. A pre-receive hook
// that this package installs (through core.hooksPath, so repositories need no
// set-up) first refuses deletions and non-fast-forward updates of protected
// refs, then pushes the incoming refs to the peer repository servers with
// "git push --atomic" while the new objects are still in git's quarantine;
// only when enough peers accepted does the hook succeed and git update the
// local refs. When no peer accepts, the push fails with a "remote rejected"
// message and the quarantined objects are discarded: nothing changes locally.
//
// Pushes need the cluster token as the HTTP basic-auth password; reads may
// be anonymous. It does not host repositories for users, offer SSH access or
// a web interface; see docs/services.md for how git-daemon, nginx and
// git-http-backend replace it on Debian machines.
package repo
