package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/hactl/hactl/converge"
	"github.com/hactl/hactl/converge/resources"
	"github.com/hactl/hactl/converge/supervise"
	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"
	"github.com/zclconf/go-cty/cty"
)

func newConvergeCmd(g *globals) *cobra.Command {
	var (
		node, root, report, configDir, address string
		dryRun, noCache                        bool
		parallelism                            int
	)
	cmd := &cobra.Command{
		Use:   "converge ROLE-OR-FILE",
		Short: "Converge this node to a role's resources (once)",
		Long: `Converge checks every resource of a role and makes the node match, once.

ROLE-OR-FILE is a role name of the configuration in --config (default ".",
loaded like "hactl validate"), or a file of bare resource "KIND" "NAME" blocks.
With --dry-run it prints what would change, with unified diffs, and changes
nothing. A real run prints a summary and writes a JSON report (default
<root>/var/lib/hactl/last-report.json). It exits 1 when a resource failed.

--root DIR confines every path under DIR (a local node); services there run
under hactl's own supervisor and keep running after the command exits (the
next run or the agent takes them over).

A resource FILE is decoded once and kept, decoded (templates as the
checked attributes they are built from), in
<root>/var/lib/hactl/converge-cache, keyed by a SHA-256 of the file's bytes,
its name, the node facts it is evaluated with and the hactl executable
(size and modification time): a later run with the same key skips parsing
and decoding (not the checks: every resource is still checked against the
node). --no-cache turns that off. Roles of a configuration are not cached.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if node == "" {
				return fmt.Errorf("--node is required")
			}
			defer oneShotGC()()
			rootAbs, err := filepath.Abs(root)
			if err != nil {
				return err
			}
			if rootAbs != "/" {
				if err := os.MkdirAll(rootAbs, 0o755); err != nil {
					return fmt.Errorf("node root: %w", err)
				}
			}
			reg := resources.Builtin()
			facts := &lang.NodeFacts{
				Name: node, Role: roleOf(node), Slot: slotOf(node), Address: address,
				Dir: rootAbs, OSFamily: converge.DetectOSFamily(),
			}
			var (
				decls     []*lang.ResourceDecl
				evalCtx   *hcl.EvalContext
				sourceDir string
				files     map[string][]byte
				compiled  *converge.Compiled
				cache     *compileCache
			)
			arg := args[0]
			if fi, err := os.Stat(arg); err == nil && !fi.IsDir() {
				src, err := os.ReadFile(arg)
				if err != nil {
					return err
				}
				facts.Members = map[string][]lang.Member{facts.Role: {{Name: node, Address: address, Slot: facts.Slot}}}
				evalCtx = factsContext(facts)
				sourceDir = filepath.Dir(arg)
				if !noCache {
					cache = newCompileCache(rootAbs, arg, src, evalCtx)
					compiled = cache.load(g)
				}
				if compiled == nil {
					var diags hcl.Diagnostics
					decls, diags = converge.ParseResources(arg, src)
					if diags.HasErrors() {
						_ = lang.WriteDiagnostics(g.stderr, map[string][]byte{arg: src}, diags, g.color())
						return silentExit(1)
					}
				}
			} else {
				cfg, diags := lang.Load(configDir, lang.LoadOptions{Schemas: reg})
				if cfg != nil {
					files = cfg.Files
				}
				if diags.HasErrors() {
					_ = lang.WriteDiagnostics(g.stderr, files, diags, g.color())
					return silentExit(1)
				}
				role := cfg.Role(arg)
				if role == nil {
					return fmt.Errorf("%s is neither a file nor a role of the configuration in %s", arg, configDir)
				}
				facts.Role = role.Name
				if cfg.Cluster != nil {
					facts.Cluster = cfg.Cluster.Name
				}
				facts.Members = map[string][]lang.Member{role.Name: {{Name: node, Address: address, Slot: facts.Slot}}}
				decls, evalCtx, sourceDir = role.Resources, cfg.EvalContext(facts), cfg.Dir
			}

			env := converge.Env{Root: rootAbs, ConfigDir: sourceDir, Facts: facts, OSFamily: facts.OSFamily, Logger: g.logger}
			if rootAbs != "/" {
				// Not closed on purpose: services outlive this one-shot
				// command, and the next supervisor adopts them.
				sup, err := supervise.New(supervise.Config{Root: rootAbs, Logger: g.logger})
				if err != nil {
					return err
				}
				env.Supervisor = sup
			}
			eng := converge.NewEngine(reg, env)
			if compiled == nil {
				if cache != nil && !dryRun {
					compiled = eng.CompileFlat(decls, evalCtx)
					cache.store(g, compiled)
				} else {
					compiled = eng.Compile(decls, evalCtx)
				}
			}
			rep, err := eng.RunCompiled(cmd.Context(), compiled, evalCtx, converge.Options{DryRun: dryRun, Parallelism: parallelism})
			if err != nil {
				return err
			}
			if report == "" && !dryRun {
				report = filepath.Join(rootAbs, "var/lib/hactl/last-report.json")
			}
			if report != "" {
				if err := rep.WriteFile(report); err != nil {
					return err
				}
			}
			if g.jsonOut {
				if err := rep.WriteJSON(g.stdout); err != nil {
					return err
				}
			} else {
				rep.WriteText(g.stdout)
			}
			if rep.Failed() {
				return silentExit(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", "node name, e.g. web-1 (role and slot are taken from it)")
	f.StringVar(&root, "root", "/", "node root directory; anything but / confines every path under it (a local node)")
	f.BoolVar(&dryRun, "dry-run", false, "show what would change, with diffs; change nothing")
	f.StringVar(&report, "report", "", "write the JSON report here (default <root>/var/lib/hactl/last-report.json on real runs)")
	f.StringVar(&configDir, "config", ".", "configuration directory, when ROLE-OR-FILE names a role")
	f.StringVar(&address, "address", "127.0.0.1", "this node's address (node.address in templates)")
	f.IntVar(&parallelism, "parallelism", 4, "resources converged at once")
	f.BoolVar(&noCache, "no-cache", false, "parse and decode a resource FILE on every run; neither read nor write <root>/var/lib/hactl/converge-cache")
	return cmd
}

// oneShotGC turns the garbage collector off for a one-shot run and returns
// what restores the settings (for tests, which run commands in-process): a
// run allocates a few MB per hundred resources and exits, so collecting is
// pure overhead (a third of a no-op run's CPU). A soft memory limit of at
// most 256 MiB brings the collector back should a huge configuration ever
// need it. The agent, which converges in a loop, keeps the default.
func oneShotGC() (restore func()) {
	lim := debug.SetMemoryLimit(-1)
	debug.SetMemoryLimit(min(lim, 256<<20))
	pct := debug.SetGCPercent(-1)
	return func() {
		debug.SetGCPercent(pct)
		debug.SetMemoryLimit(lim)
	}
}

// roleOf and slotOf split a node name ROLE-SLOT.
func roleOf(node string) string {
	if i := strings.LastIndexByte(node, '-'); i > 0 {
		if _, err := strconv.Atoi(node[i+1:]); err == nil {
			return node[:i]
		}
	}
	return node
}

func slotOf(node string) int {
	if i := strings.LastIndexByte(node, '-'); i > 0 {
		if n, err := strconv.Atoi(node[i+1:]); err == nil {
			return n
		}
	}
	return 0
}

// factsContext is the evaluation context of a bare resource file: node.*
// and cluster.* only (variables and functions need a configuration).
func factsContext(f *lang.NodeFacts) *hcl.EvalContext {
	member := func(m lang.Member) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(m.Name), "address": cty.StringVal(m.Address), "slot": cty.NumberIntVal(int64(m.Slot))})
	}
	members := map[string]cty.Value{}
	for role, ms := range f.Members {
		var vs []cty.Value
		for _, m := range ms {
			vs = append(vs, member(m))
		}
		members[role] = cty.ListVal(vs)
	}
	return &hcl.EvalContext{Variables: map[string]cty.Value{
		"node": cty.ObjectVal(map[string]cty.Value{
			"name": cty.StringVal(f.Name), "role": cty.StringVal(f.Role), "slot": cty.NumberIntVal(int64(f.Slot)),
			"generation": cty.NumberIntVal(int64(f.Generation)), "address": cty.StringVal(f.Address),
			"dir": cty.StringVal(f.Dir), "os_family": cty.StringVal(f.OSFamily),
		}),
		"cluster": cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(f.Cluster), "members": cty.MapVal(members)}),
	}}
}
