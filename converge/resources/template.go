package resources

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"

	"github.com/hactl/hactl/converge"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// templateKind is a file whose content is an HCL template. `source` is a
// template file rendered like templatefile(): in the run's evaluation
// context (var.*, local.*, node.*, cluster.*, functions) plus `vars` as
// top-level names. `content` is already rendered by HCL when the body is
// evaluated, so it takes the same names directly.
func templateKind() converge.Kind {
	return converge.Kind{
		Name: "template",
		Spec: pathAttrs(hcldec.ObjectSpec{
			"source":  optStr("source"),
			"content": optStr("content"),
			"vars":    &hcldec.AttrSpec{Name: "vars", Type: cty.DynamicPseudoType},
		}),
		New: func(env converge.Env, v cty.Value) (converge.Resource, error) {
			o := obj{v}
			f, err := newFile(env, o)
			if err != nil {
				return nil, err
			}
			src, content := o.str("source"), o.strp("content")
			if (src == "") == (content == nil) && !f.absent {
				return nil, errors.New("exactly one of source and content is required")
			}
			var vars map[string]cty.Value
			if vv, ok := o.get("vars"); ok {
				if !vv.Type().IsObjectType() && !vv.Type().IsMapType() {
					return nil, errors.New("vars: want an object")
				}
				vars = make(map[string]cty.Value, vv.LengthInt())
				for it := vv.ElementIterator(); it.Next(); {
					k, e := it.Element()
					vars[k.AsString()] = compactNumber(e)
				}
			}
			if content != nil {
				c := *content
				f.want = func() ([]byte, error) { return []byte(c), nil }
			} else {
				texts, path := simpleVars(vars), sourcePath(env, src)
				f.want = func() ([]byte, error) { return render(env, path, vars, texts) }
			}
			return f, nil
		},
	}
}

// parsedTemplate is a template file parsed once per run (Memo), with its
// plan when it has the simple shape (see planTemplate).
type parsedTemplate struct {
	expr   hclsyntax.Expression
	plan   []tplPart
	planOK bool
}

// render renders the template file at path with vars; texts holds the
// vars that have a plain text form (simpleVars), for the fast path.
func render(env converge.Env, path string, vars map[string]cty.Value, texts map[string]string) ([]byte, error) {
	// Resources of one run share a template: read and parse it once.
	v, err := env.Memo.Do("template:"+path, func() (any, error) {
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("template: %w", err)
		}
		expr, diags := hclsyntax.ParseTemplate(src, path, hcl.Pos{Line: 1, Column: 1})
		if diags.HasErrors() {
			return nil, fmt.Errorf("template: %s", diags.Error())
		}
		pt := &parsedTemplate{expr: expr}
		pt.plan, pt.planOK = planTemplate(expr)
		return pt, nil
	})
	if err != nil {
		return nil, err
	}
	pt := v.(*parsedTemplate)
	expr := pt.expr
	if pt.planOK {
		if out, ok := renderPlan(pt.plan, texts); ok {
			return out, nil
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}}
	if env.EvalContext != nil {
		ctx = env.EvalContext.NewChild()
		ctx.Variables = map[string]cty.Value{}
	}
	for k, v := range vars {
		ctx.Variables[k] = v
	}
	val, diags := expr.Value(ctx)
	if diags.HasErrors() {
		return nil, fmt.Errorf("template: %s", diags.Error())
	}
	s, err := convert.Convert(val, cty.String)
	if err != nil || s.IsNull() || !s.IsKnown() {
		return nil, fmt.Errorf("template %s: result is not a string", path)
	}
	return []byte(s.AsString()), nil
}

// compactNumber re-creates a whole number literal (parsed with 512-bit
// precision) as a 64-bit one: the same value, but rendering it as text in
// a template is an order of magnitude cheaper.
func compactNumber(v cty.Value) cty.Value {
	if v.Type() != cty.Number || !v.IsKnown() || v.IsNull() {
		return v
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		return v
	}
	if i, acc := bf.Int64(); acc == big.Exact {
		return cty.NumberIntVal(i)
	}
	return v
}

// renderSimple renders the common template shape (literal text and ${name}
// interpolations of a var holding a string, a whole number or a bool)
// without cty conversions, producing exactly what TemplateExpr.Value and
// convert.Convert would (numbers are formatted like big.Float's 'f', -1,
// which for whole numbers is the decimal integer). ok is false for any
// other shape, which the caller then evaluates in full. A run does its two
// halves apart: planTemplate once per template, simpleVars once per
// resource, renderPlan on every check.
func renderSimple(expr hclsyntax.Expression, vars map[string]cty.Value) ([]byte, bool) {
	plan, ok := planTemplate(expr)
	if !ok {
		return nil, false
	}
	return renderPlan(plan, simpleVars(vars))
}

// tplPart is literal text, or (name != "") a bare ${name} interpolation.
type tplPart struct {
	lit, name string
}

// planTemplate returns the parts of a template made only of literal text
// and bare ${name} interpolations; ok is false for any other template.
func planTemplate(expr hclsyntax.Expression) (plan []tplPart, ok bool) {
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok {
		return nil, false
	}
	plan = make([]tplPart, 0, len(t.Parts))
	for _, p := range t.Parts {
		switch p := p.(type) {
		case *hclsyntax.LiteralValueExpr:
			v := p.Val
			if v.Type() != cty.String || !v.IsKnown() || v.IsNull() || v.IsMarked() {
				return nil, false
			}
			plan = append(plan, tplPart{lit: v.AsString()})
		case *hclsyntax.ScopeTraversalExpr:
			if len(p.Traversal) != 1 {
				return nil, false
			}
			plan = append(plan, tplPart{name: p.Traversal.RootName()})
		default:
			return nil, false
		}
	}
	return plan, true
}

// simpleVars returns the text of each var that is a known, unmarked,
// non-null string, bool, or whole number that fits 64 bits ("-0" is left
// to the full evaluation).
func simpleVars(vars map[string]cty.Value) map[string]string {
	texts := make(map[string]string, len(vars))
	for k, v := range vars {
		if !v.IsKnown() || v.IsNull() || v.IsMarked() {
			continue
		}
		switch v.Type() {
		case cty.String:
			texts[k] = v.AsString()
		case cty.Bool:
			texts[k] = strconv.FormatBool(v.True())
		case cty.Number:
			bf := v.AsBigFloat()
			i, acc := bf.Int64()
			if bf.IsInt() && acc == big.Exact && !(i == 0 && bf.Signbit()) {
				texts[k] = strconv.FormatInt(i, 10)
			}
		}
	}
	return texts
}

// renderPlan renders a plan; ok is false when it names a var without a
// text form.
func renderPlan(plan []tplPart, texts map[string]string) ([]byte, bool) {
	size := 0
	for _, p := range plan {
		size += len(p.lit) + 8
	}
	buf := make([]byte, 0, size)
	for _, p := range plan {
		if p.name == "" {
			buf = append(buf, p.lit...)
			continue
		}
		t, ok := texts[p.name]
		if !ok {
			return nil, false
		}
		buf = append(buf, t...)
	}
	return buf, true
}
