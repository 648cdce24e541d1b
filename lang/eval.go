package lang

import (
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Types of the node and cluster objects resource bodies see.
var (
	nodeType = cty.Object(map[string]cty.Type{
		"name": cty.String, "role": cty.String, "slot": cty.Number, "generation": cty.Number,
		"address": cty.String, "dir": cty.String, "os_family": cty.String,
	})
	memberType  = cty.Object(map[string]cty.Type{"name": cty.String, "address": cty.String, "slot": cty.Number})
	membersType = cty.Map(cty.List(memberType))
)

// EvalContext returns the context resource bodies are evaluated in: var.*,
// local.*, node.*, cluster.* and the functions. With facts nil, node.* and
// cluster.members are unknown values of the right type (for validation:
// type errors and misspelt attributes are still caught). The context is
// freshly built; callers may add to it. It is safe to call concurrently.
func (c *Config) EvalContext(facts *NodeFacts) *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   cty.ObjectVal(c.Variables),
		"local": cty.ObjectVal(c.Locals),
	}
	clusterName := cty.UnknownVal(cty.String)
	if c.Cluster != nil {
		clusterName = cty.StringVal(c.Cluster.Name)
	}
	if facts == nil {
		vars["node"] = cty.UnknownVal(nodeType)
		vars["cluster"] = cty.ObjectVal(map[string]cty.Value{"name": clusterName, "members": cty.UnknownVal(membersType)})
	} else {
		vars["node"] = cty.ObjectVal(map[string]cty.Value{
			"name":       cty.StringVal(facts.Name),
			"role":       cty.StringVal(facts.Role),
			"slot":       cty.NumberIntVal(int64(facts.Slot)),
			"generation": cty.NumberIntVal(int64(facts.Generation)),
			"address":    cty.StringVal(facts.Address),
			"dir":        cty.StringVal(facts.Dir),
			"os_family":  cty.StringVal(facts.OSFamily),
		})
		if facts.Cluster != "" {
			clusterName = cty.StringVal(facts.Cluster)
		}
		vars["cluster"] = cty.ObjectVal(map[string]cty.Value{"name": clusterName, "members": membersValue(c, facts.Members)})
	}
	return &hcl.EvalContext{Variables: vars, Functions: c.functions()}
}

// membersValue has one entry per declared role (an empty list when no
// member is alive) plus any role the facts mention.
func membersValue(c *Config, members map[string][]Member) cty.Value {
	roles := map[string]bool{}
	for _, r := range c.Roles {
		roles[r.Name] = true
	}
	for r := range members {
		roles[r] = true
	}
	if len(roles) == 0 {
		return cty.MapValEmpty(cty.List(memberType))
	}
	m := make(map[string]cty.Value, len(roles))
	for r := range roles {
		list := append([]Member(nil), members[r]...)
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
		if len(list) == 0 {
			m[r] = cty.ListValEmpty(memberType)
			continue
		}
		vals := make([]cty.Value, len(list))
		for i, mb := range list {
			vals[i] = cty.ObjectVal(map[string]cty.Value{
				"name": cty.StringVal(mb.Name), "address": cty.StringVal(mb.Address), "slot": cty.NumberIntVal(int64(mb.Slot)),
			})
		}
		m[r] = cty.ListVal(vals)
	}
	return cty.MapVal(m)
}
