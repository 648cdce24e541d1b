// Package digitalocean is hactl's DigitalOcean provider: droplets are the
// machines, tags are the inventory, droplet power_off is the fence, reserved
// IPs are the virtual IPs and droplet snapshots are the base images.
//
// It owns the translation between providers.Provider (and the optional
// Fencer, PowerOner, VIPAssigner and Snapshotter) and the DigitalOcean API
// through github.com/digitalocean/godo, and everything needed to use that API
// safely: its own HTTP transport (rate limits, retries, timeouts, the
// token), idempotent creates in the face of eventual consistency, and
// confirmation of fences by reading the droplet back.
//
// Inventory tags. DO tags allow only [a-zA-Z0-9_:-], so hactl's key=value
// tags are encoded as "<key>-<value>" with the keys from package providers:
//
//	hactl-cluster-blog  hactl-role-web  hactl-slot-2  hactl-gen-3
//
// List asks for the cluster tag and reads the other three from each droplet.
//
// Transport. godo's built-in retry (go-retryablehttp) is not used: it
// retries POSTs after 5xx (duplicate droplets), ignores ratelimit-reset
// (it hammers a 429 every few ms) and replaces any custom transport. The
// package's transport instead: waits until ratelimit-reset (or retry-after)
// after a 429 and whenever ratelimit-remaining reaches 0, then re-sends (a
// 429 was not carried out, so this is safe for every method); retries
// network errors, 5xx (not 501), truncated, stalled and empty bodies with
// jittered exponential backoff under a deadline, but only for GET, HEAD,
// PUT and DELETE; and leaves a failed POST to the operation, which knows how
// to check whether it happened (Create looks for the droplet by its tags,
// Fence re-reads the droplet's status).
//
// The token comes from the token setting (token = var.do_token), the
// token_file setting, or DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN). It is set on requests by the transport only and is
// scrubbed from every error the package returns; it is never logged.
//
// This package does not decide what to create or fence (that is the
// planner's job), does not manage DNS, volumes, firewalls or load balancers,
// and does not build the snapshot image (see docs/providers/digitalocean.md).
// The API emulator used by its tests lives in the doemu sub-package.
package digitalocean
