// Package localbackend makes the DigitalOcean emulator's droplets real by
// booting each one as a node of hactl's local provider (providers/local): a
// detached process with its own directory and loopback address, which
// receives the droplet's user_data as its cloud-init user-data.
//
// It owns only the mapping droplet → local node. The droplet's hactl tags
// (hactl-cluster-X, hactl-role-Y, hactl-slot-N, hactl-gen-N) become the
// node's cluster, role, slot and generation, so the node's meta-data looks
// like the machine hactl asked for; a droplet without them becomes role
// "droplet", slot <droplet id> in cluster "doemu". Because DO droplet names
// and tags are not unique but local nodes are, a second live droplet with
// the same tags boots in cluster "<cluster>-dup<id>" so it is still a
// separate machine (as on DO) instead of adopting the first one's node.
//
// The local state directory should be the emulator's own, not the one the
// local provider of a real cluster uses.
package localbackend
