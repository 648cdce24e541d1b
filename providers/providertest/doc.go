// Package providertest holds the conformance suite every hactl provider
// passes: RunConformance creates, lists, fences, powers on, assigns VIPs and
// destroys machines through the providers interfaces and checks the
// contracts written in package providers (idempotent create and destroy,
// tags and cluster isolation in List, fence confirmed before it returns,
// concurrent creates of distinct slots).
//
// It owns no provider and no fake: each implementation calls RunConformance
// from its own tests with a constructor for a fresh provider (the local
// provider with a temporary state directory and real processes, DigitalOcean
// against its API emulator). It imports only providers, testing and go-cmp.
package providertest
