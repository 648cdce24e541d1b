// Package lab is the lab provider: the local provider's nodes (detached
// "hactl agent" processes, each with its own directory) with a real network.
// Every node runs in its own Linux network namespace, joined by a veth pair
// to a per-cluster bridge; nodes have 10.A.B.C addresses, the host end of
// the bridge has 10.A.B.1 so the CLI reaches them, a VIP is an address added
// to the holder's interface and announced with a gratuitous ARP, and chaos
// can cut a node off (partition) or drop a share of its packets (loss) with
// nftables inside its namespace. It needs root and the ip, nft, nsenter and
// arping commands (iproute2, nftables, util-linux, iputils-arping).
//
// It reuses providers/local for everything that is not the network: node
// directories, meta-data, address and VIP allocation (with first octet 10),
// process life cycle, liveness and fencing through /proc. The lab adds, per
// node, the namespace and veth (local.Config.Prepare, before the process
// starts), the exec prefix "nsenter --net=/run/netns/<ns>" (the process
// shares the host's mount namespace, so a node that rebuilds another sees
// the same /run/netns), and their removal after a confirmed fence or
// destroy. See docs/providers/lab.md for names and layout.
//
// It does not own what runs in a node, nor who holds a VIP (the control
// plane's raft decides; the holder's agent calls BindVIP in its own
// namespace).
package lab
