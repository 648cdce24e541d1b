// Package lb is the built-in HTTP load balancer of the reference cluster
// ("hactl serve lb"). It listens on the role's VIP, proxies to the web
// backends named by static URLs or by a JSON file the agent rewrites from
// cluster membership, checks every backend actively (GET /healthz), ejects
// backends passively on connection errors and 5xx answers, and retries
// idempotent requests without a body on another backend, so that losing one
// web node fails no client request. It answers /healthz and /lb/status
// itself.
//
// It does not terminate TLS, hold the VIP (the agent and cluster packages
// do) or balance anything but HTTP; see docs/services.md for how haproxy
// replaces it on Debian machines.
package lb
