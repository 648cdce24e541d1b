// Package web is the built-in static web server of the reference blog role
// ("hactl serve web"): it serves the content directory the agent checked out
// from the configuration repository and answers GET /healthz for the load
// balancer and the agent's health checks.
//
// It does not fetch or render content, terminate TLS or balance load; see
// docs/services.md for how nginx replaces it on Debian machines.
package web
