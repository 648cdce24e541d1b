package converge

import (
	"fmt"

	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

var resourceFileSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "resource", LabelNames: []string{"kind", "name"}},
	},
}

var metaSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "depends_on"}, {Name: "notify"}, {Name: "subscribe"},
	},
}

// ParseResources reads the `resource "KIND" "NAME" { ... }` blocks of an
// HCL file, ignoring every other block and attribute. It is the small
// stand-alone reader that tests and `hactl converge FILE` use on a bare
// resource file; whole cluster configurations go through lang.Load, which
// builds the same ResourceDecls.
func ParseResources(filename string, src []byte) ([]*lang.ResourceDecl, hcl.Diagnostics) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, diags
	}
	content, _, d := f.Body.PartialContent(resourceFileSchema)
	diags = append(diags, d...)
	var out []*lang.ResourceDecl
	for _, b := range content.Blocks {
		decl, d := DeclFromBlock(b)
		diags = append(diags, d...)
		if decl != nil {
			out = append(out, decl)
		}
	}
	return out, diags
}

// DeclFromBlock turns one resource block into a ResourceDecl: depends_on,
// notify and subscribe become addresses and are removed from the body.
func DeclFromBlock(b *hcl.Block) (*lang.ResourceDecl, hcl.Diagnostics) {
	meta, rest, diags := b.Body.PartialContent(metaSchema)
	d := &lang.ResourceDecl{
		Addr:      lang.ResourceAddr{Kind: b.Labels[0], Name: b.Labels[1]},
		Body:      rest,
		DeclRange: b.DefRange,
		TypeRange: b.LabelRanges[0],
	}
	for name, dst := range map[string]*[]lang.ResourceAddr{"depends_on": &d.DependsOn, "notify": &d.Notify, "subscribe": &d.Subscribe} {
		a, ok := meta.Attributes[name]
		if !ok {
			continue
		}
		exprs, ds := hcl.ExprList(a.Expr)
		diags = append(diags, ds...)
		for _, e := range exprs {
			tr, ds := hcl.AbsTraversalForExpr(e)
			diags = append(diags, ds...)
			if ds.HasErrors() {
				continue
			}
			if len(tr) != 2 {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid resource reference",
					Detail:   fmt.Sprintf("%s takes references of the form KIND.NAME, such as file.index.", name),
					Subject:  e.Range().Ptr(),
				})
				continue
			}
			attr, ok := tr[1].(hcl.TraverseAttr)
			if !ok {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid resource reference", Detail: "Use KIND.NAME.", Subject: e.Range().Ptr()})
				continue
			}
			*dst = append(*dst, lang.ResourceAddr{Kind: tr.RootName(), Name: attr.Name})
		}
	}
	return d, diags
}
