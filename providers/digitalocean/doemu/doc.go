// Package doemu is an in-process emulator of the slice of the DigitalOcean
// API v2 that hactl's digitalocean provider (and godo) use: droplets, droplet
// actions, actions, reserved (and floating) IPs, snapshots and images, tags,
// SSH keys, regions, sizes and the account.
//
// The contract it follows is /work/shared/do-api.md (kept in docs as the DO
// API notes): root keys, status codes, error envelopes, pagination links and
// meta, rate-limit headers, droplet lifecycle new → active → off, and action
// lifecycle in-progress → completed | errored.
//
// A Server is an http.Handler: serve it with httptest.NewServer in tests or
// with net/http for users (hactl emulate digitalocean). Time-based behaviour
// (boot, action durations, list visibility lag) is evaluated lazily against
// Config.Now on every request, so no background goroutine mutates state
// except the one that waits for a Backend to boot a droplet.
//
// What a droplet *is* is decided by a Backend: NopBackend keeps droplets
// imaginary (API-shape tests), ProcessBackend runs one real process per
// droplet with its user_data on disk, and the localbackend sub-package boots
// droplets as hactl local-provider nodes.
//
// Faults are programmed with Server.Inject (or POST /_emu/faults): 429 with a
// reset time (hourly or burst mode), 5xx before or after the work commits,
// slow answers, truncated or empty bodies, closed connections; plus knobs for
// eventual consistency (HideNewFor, GetNotFoundFor, KeepDeletedFor), errored
// actions (FailActions), droplets stuck in "new" (StickNew), ignored
// shutdowns (IgnoreShutdown) and status lag (StatusLag).
//
// doemu does not import godo on purpose: the emulator is written from the API
// notes, so a misunderstanding in the client cannot be mirrored here.
// It does not emulate volumes, load balancers, firewalls, projects or VPC
// creation.
package doemu
