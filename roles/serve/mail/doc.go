// Package mail is the built-in mail server of the reference cluster ("hactl
// serve mail"): an SMTP server (github.com/emersion/go-smtp) that accepts
// mail for one domain into a Maildir, and an authenticated HTTP endpoint that
// lists and fetches the stored messages and receives replicas from the other
// mail nodes.
//
// Interim replication: a message is answered 250 only once it is stored and
// fsynced locally and at least one peer mail node has stored, fsynced and
// acknowledged it with its SHA-256; otherwise the client gets 451 and retries
// later. The data subsystem will take this over; see docs/services.md.
//
// It does not relay, deliver to other domains, offer IMAP or POP, or
// authenticate SMTP clients; see docs/services.md for how postfix replaces
// it on Debian machines.
package mail
