package lang

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// maxAutoVoters is how many raft voters "voters = 0" picks at most.
const maxAutoVoters = 5

// validate runs the checks that need the whole configuration.
func (l *loader) validate() hcl.Diagnostics {
	var diags hcl.Diagnostics
	c := l.cfg
	providerNames := make([]string, 0, len(c.Providers))
	for n := range c.Providers {
		providerNames = append(providerNames, n)
	}
	sort.Strings(providerNames)
	undeclared := func(name string, rng *hcl.Range) *hcl.Diagnostic {
		return errDiag("Undeclared provider",
			fmt.Sprintf("Provider %q is not declared. Add a provider %q block, or use one of: %s.", name, name, strings.Join(providerNames, ", ")), rng)
	}
	cl := c.Cluster
	if cl != nil && c.Providers[cl.Provider] == nil {
		diags = append(diags, undeclared(cl.Provider, l.provRng))
	}
	total := 0
	for _, r := range c.Roles {
		total += r.Count
		if c.Providers[r.Provider] == nil {
			if rng := l.provRange[r]; rng != nil {
				diags = append(diags, undeclared(r.Provider, rng))
			}
		}
	}
	if cl == nil {
		return diags
	}
	if cl.Witness != "" {
		if err := checkWitness(c, cl.Witness); err != nil {
			diags = append(diags, errDiag("Invalid witness",
				fmt.Sprintf("witness %q %s. Name a node as ROLE-SLOT with 1 <= SLOT <= the role's count, e.g. \"lb-1\".", cl.Witness, err), l.witnessRng))
		}
	}
	if cl.Voters > total {
		diags = append(diags, errDiag("Too many voters",
			fmt.Sprintf("voters is %d but the cluster has only %d nodes. Lower voters or add nodes.", cl.Voters, total), l.votersRng))
	}
	voters := cl.Voters
	if voters == 0 {
		voters = min(total, maxAutoVoters)
	}
	switch {
	case voters == 2 && cl.Witness == "":
		diags = append(diags, warnDiag("Two voters without a witness",
			"With two voters, losing either one loses quorum and the cluster cannot rebuild anything. Add a witness, or use three voters.", rangePtr(cl.DeclRange)))
	case cl.Voters > 0 && cl.Voters%2 == 0:
		diags = append(diags, warnDiag("Even number of voters",
			fmt.Sprintf("%d voters tolerate no more failures than %d; the extra voter only adds a machine that must agree. Use an odd number.", cl.Voters, cl.Voters-1), l.votersRng))
	}
	if rpo := cl.Objectives.RPO; rpo > 0 {
		for _, r := range c.Roles {
			for _, d := range r.Data {
				if d.Mode == ReplicationAsync && d.Interval > rpo {
					diags = append(diags, warnDiag("Replication interval exceeds RPO",
						fmt.Sprintf("Data %q of role %q replicates every %s, but the cluster's RPO is %s: a failure just before a sync loses more than the objective allows. Shorten the interval or use mode = \"sync\".", d.Name, r.Name, d.Interval, rpo),
						rangePtr(d.DeclRange)))
				}
			}
		}
	}
	diags = append(diags, l.checkResourceBodies()...)
	return diags
}

// checkWitness checks that name is ROLE-SLOT of an existing node.
func checkWitness(c *Config, name string) error {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return fmt.Errorf("is not a node name")
	}
	r := c.Role(name[:i])
	if r == nil {
		return fmt.Errorf("names role %q, which is not declared", name[:i])
	}
	slot, err := strconv.Atoi(name[i+1:])
	if err != nil || slot < 1 || slot > r.Count || name[i+1] == '0' {
		return fmt.Errorf("names slot %q, but role %q has slots 1 to %d", name[i+1:], r.Name, r.Count)
	}
	return nil
}

// checkResourceBodies validates resource bodies: against their kind's spec
// when Schemas is set, else only their references to var, local, node and
// cluster.
func (l *loader) checkResourceBodies() hcl.Diagnostics {
	var diags hcl.Diagnostics
	ctx := l.cfg.EvalContext(nil)
	var kinds []string
	if kl, ok := l.opts.Schemas.(KindLister); ok {
		kinds = kl.Kinds()
	}
	for _, r := range l.cfg.Roles {
		for _, d := range r.Resources {
			if l.opts.Schemas == nil {
				diags = append(diags, checkBodyRefs(d.Body, ctx, true)...)
				continue
			}
			spec, ok := l.opts.Schemas.ResourceSpec(d.Addr.Kind)
			if !ok {
				detail := fmt.Sprintf("There is no resource kind %q.", d.Addr.Kind)
				if len(kinds) > 0 {
					detail += " Use one of: " + strings.Join(kinds, ", ") + "."
				}
				diags = append(diags, errDiag("Unknown resource kind", detail, rangePtr(d.TypeRange)))
				continue
			}
			_, dd := hcldec.Decode(d.Body, spec, ctx)
			diags = append(diags, dd...)
		}
	}
	return diags
}

// resourceMeta are the attributes lang removes from resource bodies.
var resourceMeta = map[string]bool{"depends_on": true, "notify": true, "subscribe": true}

// checkBodyRefs resolves every variable reference in a native-syntax body
// against ctx, so misspelt var.x or node.nmae fail at validate time even
// without resource schemas.
func checkBodyRefs(body hcl.Body, ctx *hcl.EvalContext, top bool) hcl.Diagnostics {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	var diags hcl.Diagnostics
	names := make([]string, 0, len(sb.Attributes))
	for n := range sb.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if top && resourceMeta[n] {
			continue
		}
		for _, tr := range sb.Attributes[n].Expr.Variables() {
			_, d := tr.TraverseAbs(ctx)
			diags = append(diags, d...)
		}
	}
	for _, b := range sb.Blocks {
		if b.Type == "dynamic" {
			continue // iterator variables are not in ctx
		}
		diags = append(diags, checkBodyRefs(b.Body, ctx, false)...)
	}
	return diags
}
