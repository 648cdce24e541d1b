// Package cluster is hactl's control plane: gossip membership
// (hashicorp/memberlist, encrypted with a cluster keyring), the leader and
// cluster log (hashicorp/raft over mutual TLS with cluster-generated
// certificates), quorum and the self-fencing watchdog, fencing orchestration
// with the lone-survivor recovery, virtual-IP ownership, and the leader-only
// reconciler loop.
//
// The entry point is [New] with a [Config] (start from [DefaultConfig]); the
// agent runs the returned [Node] with [Node.Run], which owns every goroutine
// of the package and returns after they have stopped. Read-only callers use
// [Node.View], [Node.Status] and [Node.Events].
//
// What cluster does not own: planning (package plan computes steps from an
// observation; cluster only observes, records intent in the raft log and
// executes within a budget), provider calls themselves (package providers and
// its implementations), binding an address to an interface (the VIP callback
// does that; the agent wires it) and stopping services (the self-fence
// callback). Sub-package faultnet holds transport wrappers that drop and
// partition traffic, for tests and chaos.
package cluster
