// Package agent is the long-running process on every hactl node.
//
// It owns, for one node:
//   - identity: which node it is (name, role, slot, generation, address,
//     root), from a local node directory (--node-dir), cloud-init instance
//     data, or the hostname;
//   - boot: reading cloud-init user-data (RenderUserData / ParseUserData) and,
//     on local nodes, applying its write_files under the node's root the way
//     cloud-init would on a machine;
//   - pull: fetching the cluster's configuration repository from an ordered
//     list of git remotes with go-git, failing over between them;
//   - trust: refusing any commit whose signature (SSH or OpenPGP) does not
//     verify against the configured trusted keys, before anything in it is
//     evaluated;
//   - the converge loop: evaluating the HCL at the trusted commit for this
//     node's role and handing it to a Converger, every interval (with splay)
//     and at once when notified, keeping the last good configuration in
//     force when a new commit is refused or fails;
//   - the local API (healthz, status, notify, members, cluster, events,
//     Prometheus metrics);
//   - the seams to the control plane: ClusterConfig builds a cluster.Config
//     from agent.json, the identity and the delivered secrets (the node
//     issues its own raft certificate from the cluster CA); MembersOf turns
//     the gossip view into cluster.members facts; FollowMembers re-converges
//     when membership changes; Forwarder binds the VIPs this node holds and
//     forwards them to the node's own address;
//   - the role's data on the node (DataManager): before converge, restore
//     an empty data directory from a live replica or the newest backup
//     (never from nothing unless the cluster is new), then serve it to
//     replicas on DataPort over mutual TLS and run the backup schedule on
//     the lowest live slot of the role;
//   - publishing: Publish commits a configuration directory as an SSH-signed
//     commit to a bare repository (the operator side of the same trust).
//
// It does not own: decoding HCL (package lang), snapshots, backups,
// replication and restore themselves (package data), resources and the
// supervisor of local services (package converge), membership, raft, VIP
// ownership and rebuilds (package cluster; cmd/hactl runs a cluster.Node
// beside the agent and wires it through these seams). The agent reaches converge and lang through
// the small Converger and Loader seams declared here (EngineConverger and
// LangLoader are the production implementations), so its state machine can
// be tested with a minimal converger that injects failures.
package agent
