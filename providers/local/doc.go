// Package local is hactl's embedded default provider: a "machine" is a
// detached process on this computer with its own directory (its disk) and its
// own loopback address 127.A.B.C. It needs no root and no account.
//
// Layout under the state directory (see docs/providers/local.md):
//
//	<StateDir>/bin/hactl-<sha256 prefix>        InstallBinary: the node binary
//	<StateDir>/.lock                            flock for address-pair allocation
//	<StateDir>/<cluster>/.lock                  flock around allocation and node dirs
//	<StateDir>/<cluster>/net.json               the cluster's 127.A.B pair and leases
//	<StateDir>/<cluster>/vips.json              desired VIP holders (the agent binds)
//	<StateDir>/<cluster>/nodes/<role>-<slot>.g<gen>/
//	    meta-data.json  user-data  root/  agent.pid  agent.log
//
// The package owns that layout, address allocation, and the life cycle of the
// node processes (start detached, confirm liveness through /proc, fence with
// SIGKILL of the process group, destroy). It does not own what runs inside a
// node: the argv that boots a node comes from Config.Command (the CLI passes
// "hactl agent --node-dir DIR"), and binding a VIP is the holder agent's job.
// Exclusivity of VIPs is the control plane's job (raft), not this package's.
//
// Machine ids are "<cluster>/<role>-<slot>.g<gen>" (the node directory name,
// which is also the meta-data instance-id, qualified by its cluster).
//
// Discover lists the gossip addresses of a cluster's node directories: the
// local provider's "cloud auto-join" for the control plane.
//
// Provider implements providers.Provider, providers.Fencer,
// providers.PowerOner and providers.VIPAssigner; Factory adapts it to
// providers.Factory for cmd/hactl. It is Linux-only: liveness and fencing
// read /proc.
package local
