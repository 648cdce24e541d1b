// Package chaos proves that a hactl cluster meets its objectives by breaking
// it on purpose: it injects faults (destroy a node, power it off, kill -9 or
// pause its agent or a service; partition and packet loss on providers that
// can), chooses victims with a seeded generator, refuses to start while the
// cluster is already degraded or recovering, probes the services from
// outside the victim set during the whole run, writes data markers before
// each fault and reads them back after recovery, and reports detection and
// recovery times, availability and lost data per round against the
// objectives in the HCL (rto, rpo, availability), as JSON and as a
// self-contained HTML timeline. A Scheduler runs it on a cron schedule with
// a history file and a kill switch.
//
// The package sees the cluster only through the Cluster interface (nodes
// with role, slot, state, health, recoveries in flight, and the control
// plane's view of members and rebuilds); ProviderCluster implements it over
// the providers' List, the agents' health endpoints and one node's
// /v1/cluster. Probe and marker targets may name a role ({mail}) and then
// fail over between the role's current nodes (Roles), as real clients do;
// SMTP 4xx replies are deferrals, not failures. Faults go through providers.Provider (Destroy) and
// providers.Fencer (power off); process faults on the local provider find
// their pids through the node directory.
//
// It does not own: rebuilding what it broke (the control plane does, chaos
// only watches), the CLI (cmd/hactl/chaos.go wires it), or deciding the
// cluster's tolerance and quorum (package plan computes them; chaos reads
// them through SpecFromConfig).
package chaos
