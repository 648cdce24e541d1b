// Package lang is the HCL language of hactl: it reads a directory of *.hcl
// files (Load, LoadFiles), decodes them in two phases (structure with body
// schemas, then values with an EvalContext holding var.*, local.* and the
// functions), validates the whole configuration at once and returns a
// Config with every problem as an hcl.Diagnostic that has a source range.
//
//	cfg, diags := lang.Load("examples/blog", lang.LoadOptions{})
//	if diags.HasErrors() {
//		lang.WriteDiagnostics(os.Stderr, cfg.Files, diags, false)
//		return
//	}
//
// lang owns: the schema of cluster, provider, variable, locals and role
// blocks (health, fencing, vip, data, backup, placement, resource), shared
// role sources, variables and locals, the function table (file,
// templatefile, env, cidrhost and the cty standard library), the node and
// cluster facts resource bodies may refer to (Config.EvalContext), and the
// rendering of diagnostics as text and JSON.
//
// lang does not own what resources mean: resource bodies are kept
// unevaluated in ResourceDecl.Body, and their kinds and attributes are the
// converge package's business, which lang learns through the Schemas
// interface without importing converge. It does not plan (package plan), talk
// to providers, or read anything outside the configuration directory (and a
// roles/ directory next to it).
package lang
