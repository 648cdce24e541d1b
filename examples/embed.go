// Package examples embeds the runnable example clusters so that the hactl
// binary can bring one up from anywhere (hactl demo) without a checkout.
package examples

import "embed"

// FS holds every example directory (blog, ...), as in the repository.
//
//go:embed blog
var FS embed.FS
