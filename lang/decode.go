package lang

import (
	"fmt"
	"math/big"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// This file holds the small helpers that evaluate one attribute into a Go
// value. Each returns ok=false (with diagnostics) when the attribute is
// absent, null or invalid, so callers keep their default.

func errDiag(summary, detail string, rng *hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng}
}

func warnDiag(summary, detail string, rng *hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: detail, Subject: rng}
}

func rangePtr(r hcl.Range) *hcl.Range { return &r }

// evalAttr evaluates attr in ctx and converts it to ty. A null value is
// reported as absent (ok=false, no diagnostics).
func evalAttr(ctx *hcl.EvalContext, attr *hcl.Attribute, ty cty.Type) (cty.Value, bool, hcl.Diagnostics) {
	if attr == nil {
		return cty.NilVal, false, nil
	}
	v, diags := attr.Expr.Value(ctx)
	if diags.HasErrors() {
		return cty.NilVal, false, diags
	}
	if v.IsNull() {
		return cty.NilVal, false, diags
	}
	if !v.IsWhollyKnown() {
		return cty.NilVal, false, append(diags, errDiag("Value not known at load time",
			fmt.Sprintf("The value of %q depends on something that is only known on a node. Use a literal, a variable or a local value here.", attr.Name),
			rangePtr(attr.Expr.Range())))
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return cty.NilVal, false, append(diags, errDiag("Incorrect attribute value type",
			fmt.Sprintf("Inappropriate value for attribute %q: %s. Give a value of type %s.", attr.Name, err, ty.FriendlyName()),
			rangePtr(attr.Expr.Range())))
	}
	if cv.IsNull() {
		return cty.NilVal, false, diags
	}
	return cv, true, diags
}

func attrString(ctx *hcl.EvalContext, attr *hcl.Attribute) (string, bool, hcl.Diagnostics) {
	v, ok, diags := evalAttr(ctx, attr, cty.String)
	if !ok {
		return "", false, diags
	}
	return v.AsString(), true, diags
}

func attrBool(ctx *hcl.EvalContext, attr *hcl.Attribute) (bool, bool, hcl.Diagnostics) {
	v, ok, diags := evalAttr(ctx, attr, cty.Bool)
	if !ok {
		return false, false, diags
	}
	return v.True(), true, diags
}

// attrInt evaluates a whole number that fits in 32 bits.
func attrInt(ctx *hcl.EvalContext, attr *hcl.Attribute) (int, bool, hcl.Diagnostics) {
	v, ok, diags := evalAttr(ctx, attr, cty.Number)
	if !ok {
		return 0, false, diags
	}
	bf := v.AsBigFloat()
	if !bf.IsInt() {
		return 0, false, append(diags, errDiag("Incorrect attribute value type",
			fmt.Sprintf("Attribute %q must be a whole number, not %s.", attr.Name, bf.Text('g', 10)),
			rangePtr(attr.Expr.Range())))
	}
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<31-1 || i < -(1<<31) {
		return 0, false, append(diags, errDiag("Incorrect attribute value type",
			fmt.Sprintf("Attribute %q is out of range; give a number between %d and %d.", attr.Name, -(1<<31), 1<<31-1),
			rangePtr(attr.Expr.Range())))
	}
	return int(i), true, diags
}

func attrStrings(ctx *hcl.EvalContext, attr *hcl.Attribute) ([]string, bool, hcl.Diagnostics) {
	v, ok, diags := evalAttr(ctx, attr, cty.List(cty.String))
	if !ok {
		return nil, false, diags
	}
	out := make([]string, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			return nil, false, append(diags, errDiag("Incorrect attribute value type",
				fmt.Sprintf("Attribute %q must not contain null elements.", attr.Name), rangePtr(attr.Expr.Range())))
		}
		out = append(out, e.AsString())
	}
	return out, true, diags
}

// attrDuration evaluates a Go duration string ("90s", "5m") that is not negative.
func attrDuration(ctx *hcl.EvalContext, attr *hcl.Attribute) (time.Duration, bool, hcl.Diagnostics) {
	s, ok, diags := attrString(ctx, attr)
	if !ok {
		return 0, false, diags
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false, append(diags, errDiag("Invalid duration",
			fmt.Sprintf("Attribute %q is %q, which is not a duration. Write a non-negative Go duration such as \"90s\", \"5m\" or \"1h30m\".", attr.Name, s),
			rangePtr(attr.Expr.Range())))
	}
	return d, true, diags
}

// attrsObject evaluates a set of attributes into one object value.
func attrsObject(ctx *hcl.EvalContext, attrs hcl.Attributes) (cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	vals := make(map[string]cty.Value, len(attrs))
	for name, a := range attrs {
		v, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		if !v.IsWhollyKnown() {
			diags = append(diags, errDiag("Value not known at load time",
				fmt.Sprintf("The value of %q depends on something that is only known on a node. Use a literal, a variable or a local value here.", name),
				rangePtr(a.Expr.Range())))
			continue
		}
		vals[name] = v
	}
	return cty.ObjectVal(vals), diags
}

// checkPort reports a port outside 1..65535.
func checkPort(attr *hcl.Attribute, port int) hcl.Diagnostics {
	if port < 1 || port > 65535 {
		return hcl.Diagnostics{errDiag("Invalid port",
			fmt.Sprintf("Port %d is out of range; give a TCP port between 1 and 65535.", port), rangePtr(attr.Expr.Range()))}
	}
	return nil
}
