// Package supervise is the process supervisor that runs `service`
// resources on local nodes, where there is no systemd. A Supervisor is a
// long-lived object owned by the agent (or by one `hactl converge` run) and
// handed to converge through converge.Env.
//
// Each service runs as a child process in its own process group, with
// stdout and stderr appended to <root>/var/log/<name>.log. One monitor
// goroutine per service owns the process: it restarts it when it exits,
// with exponential backoff (reset once the process has stayed up for
// StableAfter), restarts it on request (notify), and stops it by signalling
// the whole group (SIGTERM, then SIGKILL after StopTimeout), so no
// grandchild outlives its service.
//
// The pid and spec of each running service are recorded in
// <root>/var/lib/hactl/supervise/<name>.json, so a restarted agent (or the
// next one-shot `hactl converge`) finds what an earlier supervisor left
// running. When that process is still alive, still runs the recorded
// command line (checked in /proc, so a reused pid is not mistaken for it)
// and the spec is unchanged, Ensure adopts it without a restart: it is not
// a child, so the monitor polls it (every 250ms) instead of waiting for it,
// and starts a child of its own once it dies. When the spec changed, the
// old process group is stopped and a new child started.
//
// It does not own: deciding what should run (converge/resources' service
// kind does), systemd units, or health checks.
package supervise
