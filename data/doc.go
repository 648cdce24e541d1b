// Package data is hactl's durable data mechanism: the state a role declares
// in a `data` block survives the loss of any node.
//
// It owns:
//
//   - Snapshot: a consistent, hashed manifest of a directory tree; the
//     manifest names its hash algorithm (BLAKE2b-256 now, SHA-256 in
//     manifests and backups written before, which are still read);
//   - backups to a Target (dir:// or sftp://) as a checksummed JSON manifest
//     plus content-addressed objects, so unchanged files are never uploaded
//     twice; Verify, Restore (into a temporary directory, swapped in
//     atomically), and retention (keep last N plus one per day for D days,
//     then prune unreferenced objects);
//   - Scheduler: runs the backups of every data block on their cron
//     schedule, retrying a target that is down with backoff, never blocking
//     its caller;
//   - replication between the live replicas of a role over HTTP with mutual
//     TLS (Server, Replicator): sync writes that return only once a second
//     replica has fsynced them, and an async loop that pushes changes on an
//     interval (last writer wins per file, by modification time);
//   - Bootstrap: what the agent runs before services start on a rebuilt
//     node: pull from a healthy replica, else restore the newest backup that
//     verifies, else refuse unless the cluster is new.
//
// It does not own: deciding which node is a role's data primary or backup
// runner (the agent asks the cluster log; Scheduler's MayRun gate), or who
// its peers are (the control plane passes a Peers function), certificates (the
// caller passes TLS configurations built from the cluster CA, see
// MutualTLS), when to bootstrap (the agent), or the interim replication of
// the built-in mail and repo services (roles/serve). See docs/data.md for
// the design and the behaviour when a partition heals.
package data
