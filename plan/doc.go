// Package plan owns the planner and the executor that the CLI (hactl plan
// and apply) and the in-cluster reconciler share.
//
// Plan is a pure function of an Input: the decoded configuration, the
// machines the providers list (with their gossip health and the VIPs they
// hold), the observation time and the failure timeout. It returns a Result:
// ordered steps (create, fence, destroy, replace, move-vip, restore-data)
// with a reason each and a partial order (Step.After), the per-role failure
// tolerance, the raft voter arithmetic, and warnings about fragile designs.
// It does no I/O and reads no clock, so it is table-, golden- and
// property-tested. Render prints a Result for people, Result.JSON for
// programs; Save, Load and Fingerprint make saved plans (-out) that apply
// refuses once the world changed.
//
// Executor runs steps through providers.Provider and its optional
// capabilities with bounded parallelism, keeping each slot's steps in order,
// and reports progress events. Every step is idempotent, so a crashed run is
// finished by running the same steps, or a new plan, again.
//
// The package does not observe anything itself (cluster and cmd/hactl build
// the Input from provider listings and membership), does not decide when to
// plan (the reconciler's loop, rebuild budgets and backoff live in cluster),
// does not restore data (the node's agent does, before its services start;
// the executor only records that it must), and imports no provider
// implementation.
package plan
