package resources

import (
	"errors"
	"fmt"
	"math/big"
	"os"

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
			vars := map[string]cty.Value{}
			if o.has("vars") {
				vv := v.GetAttr("vars")
				if !vv.Type().IsObjectType() && !vv.Type().IsMapType() {
					return nil, errors.New("vars: want an object")
				}
				for k, e := range vv.AsValueMap() {
					vars[k] = compactNumber(e)
				}
			}
			if content != nil {
				c := *content
				f.want = func() ([]byte, error) { return []byte(c), nil }
			} else {
				f.want = func() ([]byte, error) { return render(env, sourcePath(env, src), vars) }
			}
			return f, nil
		},
	}
}

func render(env converge.Env, path string, vars map[string]cty.Value) ([]byte, error) {
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
		return expr, nil
	})
	if err != nil {
		return nil, err
	}
	expr := v.(hclsyntax.Expression)
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
