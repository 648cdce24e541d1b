package resources

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strconv"
	"sync"

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
			// The path first: its error is reported before the others.
			p, err := env.Path(o.str("path"))
			if err != nil {
				return nil, fmt.Errorf("path: %w", err)
			}
			spec, err := templateSpecOf(o)
			if err != nil {
				return nil, err
			}
			return spec.build(env, p)
		},
		Flatten: func(v cty.Value) ([]byte, error) {
			spec, err := templateSpecOf(obj{v})
			if err != nil {
				return nil, err
			}
			return spec.appendFlat(nil)
		},
		Unflatten: func(env converge.Env, flat []byte) (converge.Resource, error) {
			spec, err := templateSpecFlat(flat)
			if err != nil {
				return nil, err
			}
			p, err := env.Path(spec.path)
			if err != nil {
				return nil, fmt.Errorf("path: %w", err)
			}
			return spec.build(env, p)
		},
	}
}

// templateSpec is what a template resource is built from, checked: the
// decoded value's attributes, or their flat form in a cached compilation
// (no cty values but the vars, which only a template off the fast path
// needs, decoded then).
type templateSpec struct {
	path, ensure, source string
	mode                 string // as written: attrs.mode parsed
	attrs                attrs
	content              *string
	vars                 func() (map[string]cty.Value, error) // nil without vars
	texts                map[string]string                    // simpleVars of the vars
}

func templateSpecOf(o obj) (*templateSpec, error) {
	s := &templateSpec{path: o.str("path"), ensure: o.str("ensure"), source: o.str("source"), mode: o.str("mode"), content: o.strp("content")}
	if err := oneOf("ensure", s.ensure, "present", "absent"); err != nil {
		return nil, err
	}
	var err error
	if s.attrs, err = decodeAttrs(o); err != nil {
		return nil, err
	}
	if (s.source == "") == (s.content == nil) && s.ensure != "absent" {
		return nil, errors.New("exactly one of source and content is required")
	}
	if vv, ok := o.get("vars"); ok {
		if !vv.Type().IsObjectType() && !vv.Type().IsMapType() {
			return nil, errors.New("vars: want an object")
		}
		vars := make(map[string]cty.Value, vv.LengthInt())
		for it := vv.ElementIterator(); it.Next(); {
			k, e := it.Element()
			vars[k.AsString()] = compactNumber(e)
		}
		s.vars = func() (map[string]cty.Value, error) { return vars, nil }
	}
	return s, nil
}

// build makes the resource at host path p.
func (s *templateSpec) build(env converge.Env, p string) (converge.Resource, error) {
	f := &File{env: env, decl: s.path, path: p, absent: s.ensure == "absent", attrs: s.attrs}
	if s.content != nil {
		c := *s.content
		f.want = func() ([]byte, error) { return []byte(c), nil }
		return f, nil
	}
	texts := s.texts
	if texts == nil && s.vars != nil {
		vars, err := s.vars()
		if err != nil {
			return nil, err
		}
		texts = simpleVars(vars)
	}
	path, vars := sourcePath(env, s.source), s.vars
	f.want = func() ([]byte, error) { return render(env, path, vars, texts) }
	return f, nil
}

// The flat form: a version byte, then path, ensure, source, mode, owner
// and group, content (a presence byte first), and the vars (a presence
// byte, the vars object in converge.AppendValue's encoding, then the
// simpleVars texts as a count and name, text pairs in name order).
const templateFlatVersion = 1

func (s *templateSpec) appendFlat(b []byte) ([]byte, error) {
	str := func(v string) {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	b = append(b, templateFlatVersion)
	for _, v := range []string{s.path, s.ensure, s.source, s.mode, s.attrs.owner, s.attrs.group} {
		str(v)
	}
	if s.content == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		str(*s.content)
	}
	if s.vars == nil {
		return append(b, 0), nil
	}
	b = append(b, 1)
	vars, err := s.vars()
	if err != nil {
		return nil, err
	}
	enc, err := converge.AppendValue(nil, cty.ObjectVal(vars))
	if err != nil {
		return nil, err
	}
	str(string(enc))
	texts := simpleVars(vars)
	names := make([]string, 0, len(texts))
	for k := range texts {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		str(k)
		str(texts[k])
	}
	return b, nil
}

var errFlat = errors.New("template: malformed cached form")

func templateSpecFlat(b []byte) (*templateSpec, error) {
	bad := false
	uv := func() int {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			bad = true
			b = nil
			return 0
		}
		b = b[k:]
		return int(n)
	}
	str := func() string {
		n := uv()
		if n > len(b) {
			bad = true
			b = nil
			return ""
		}
		v := string(b[:n])
		b = b[n:]
		return v
	}
	flag := func() bool {
		if len(b) == 0 {
			bad = true
			return false
		}
		f := b[0]
		b = b[1:]
		if f > 1 {
			bad = true
		}
		return f == 1
	}
	if len(b) == 0 || b[0] != templateFlatVersion {
		return nil, errFlat
	}
	b = b[1:]
	s := &templateSpec{path: str(), ensure: str(), source: str(), mode: str()}
	s.attrs.owner, s.attrs.group = str(), str()
	if flag() {
		c := str()
		s.content = &c
	}
	if flag() {
		enc := str()
		s.vars = sync.OnceValues(func() (map[string]cty.Value, error) {
			v, err := converge.DecodeValue([]byte(enc))
			if err != nil {
				return nil, fmt.Errorf("template: cached vars: %w", err)
			}
			return v.AsValueMap(), nil
		})
		n := uv()
		s.texts = make(map[string]string, n)
		for range n {
			k := str()
			s.texts[k] = str()
		}
	}
	if bad || len(b) != 0 {
		return nil, errFlat
	}
	var err error
	if s.attrs.mode, err = parseMode(s.mode); err != nil {
		return nil, err
	}
	return s, nil
}

// parsedTemplate is a template file parsed once per run (Memo), with its
// plan when it has the simple shape (see planTemplate).
type parsedTemplate struct {
	expr   hclsyntax.Expression
	plan   []tplPart
	planOK bool
}

// render renders the template file at path with vars; texts holds the
// vars that have a plain text form (simpleVars), for the fast path. vars
// is nil without vars, and called only off the fast path.
func render(env converge.Env, path string, varsOf func() (map[string]cty.Value, error), texts map[string]string) ([]byte, error) {
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
	var vars map[string]cty.Value
	if varsOf != nil {
		if vars, err = varsOf(); err != nil {
			return nil, err
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
