package lang

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxTemplateDepth bounds templatefile calls inside templates.
const maxTemplateDepth = 8

// functions returns the function table of the configuration.
func (c *Config) functions() map[string]function.Function {
	src, getenv := c.src, c.getenv
	if src == nil {
		src = newSources(c.Dir, nil)
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	return makeFunctions(src, getenv, 0)
}

// FunctionNames lists the functions available to expressions, sorted.
func FunctionNames() []string {
	fns := makeFunctions(newSources("", nil), func(string) string { return "" }, 0)
	names := make([]string, 0, len(fns))
	for n := range fns {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func makeFunctions(src *sources, getenv func(string) string, depth int) map[string]function.Function {
	fns := map[string]function.Function{
		"abs":             stdlib.AbsoluteFunc,
		"can":             tryfunc.CanFunc,
		"ceil":            stdlib.CeilFunc,
		"chomp":           stdlib.ChompFunc,
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"csvdecode":       stdlib.CSVDecodeFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"floor":           stdlib.FloorFunc,
		"format":          stdlib.FormatFunc,
		"formatdate":      stdlib.FormatDateFunc,
		"formatlist":      stdlib.FormatListFunc,
		"indent":          stdlib.IndentFunc,
		"index":           stdlib.IndexFunc,
		"join":            stdlib.JoinFunc,
		"jsondecode":      stdlib.JSONDecodeFunc,
		"jsonencode":      stdlib.JSONEncodeFunc,
		"keys":            stdlib.KeysFunc,
		"length":          stdlib.LengthFunc,
		"log":             stdlib.LogFunc,
		"lookup":          stdlib.LookupFunc,
		"lower":           stdlib.LowerFunc,
		"max":             stdlib.MaxFunc,
		"merge":           stdlib.MergeFunc,
		"min":             stdlib.MinFunc,
		"parseint":        stdlib.ParseIntFunc,
		"pow":             stdlib.PowFunc,
		"range":           stdlib.RangeFunc,
		"regex":           stdlib.RegexFunc,
		"regexall":        stdlib.RegexAllFunc,
		"regexreplace":    stdlib.RegexReplaceFunc,
		"replace":         stdlib.ReplaceFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setproduct":      stdlib.SetProductFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"signum":          stdlib.SignumFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"split":           stdlib.SplitFunc,
		"strrev":          stdlib.ReverseFunc,
		"substr":          stdlib.SubstrFunc,
		"timeadd":         stdlib.TimeAddFunc,
		"title":           stdlib.TitleFunc,
		"tobool":          stdlib.MakeToFunc(cty.Bool),
		"tolist":          stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":           stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":        stdlib.MakeToFunc(cty.Number),
		"toset":           stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":        stdlib.MakeToFunc(cty.String),
		"trim":            stdlib.TrimFunc,
		"trimprefix":      stdlib.TrimPrefixFunc,
		"trimspace":       stdlib.TrimSpaceFunc,
		"trimsuffix":      stdlib.TrimSuffixFunc,
		"try":             tryfunc.TryFunc,
		"upper":           stdlib.UpperFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,

		"base64decode": base64DecodeFunc,
		"base64encode": base64EncodeFunc,
		"cidrhost":     cidrHostFunc,
		"endswith":     strPredFunc(strings.HasSuffix),
		"sha256":       sha256Func,
		"startswith":   strPredFunc(strings.HasPrefix),
		"strcontains":  strPredFunc(strings.Contains),
	}
	fns["env"] = envFunc(getenv)
	fns["file"] = fileFunc(src)
	fns["templatefile"] = templateFileFunc(src, getenv, depth)
	return fns
}

func stringParam(name string) function.Parameter {
	return function.Parameter{Name: name, Type: cty.String}
}

// fileFunc reads a UTF-8 file relative to the configuration directory.
func fileFunc(src *sources) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{stringParam("path")},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := readConfined(src, args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

func readConfined(src *sources, p string) ([]byte, error) {
	full, err := src.resolve(src.root, p)
	if err != nil {
		return nil, err
	}
	b, err := src.read(full)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%s is not valid UTF-8", full)
	}
	return b, nil
}

// templateFileFunc renders a template file with the given variables; the
// template sees the same functions, and may call templatefile itself up to
// maxTemplateDepth deep.
func templateFileFunc(src *sources, getenv func(string) string, depth int) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{
			stringParam("path"),
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if depth >= maxTemplateDepth {
				return cty.NilVal, fmt.Errorf("templatefile calls are nested more than %d deep", maxTemplateDepth)
			}
			vars := args[1]
			if !vars.Type().IsObjectType() && !vars.Type().IsMapType() {
				return cty.NilVal, function.NewArgErrorf(1, "vars must be an object or a map, not %s", vars.Type().FriendlyName())
			}
			if !vars.IsWhollyKnown() {
				return cty.UnknownVal(cty.String), nil
			}
			if vars.IsNull() {
				return cty.NilVal, function.NewArgErrorf(1, "vars must not be null")
			}
			ctxVars := map[string]cty.Value{}
			for it := vars.ElementIterator(); it.Next(); {
				k, v := it.Element()
				name := k.AsString()
				if !hclsyntax.ValidIdentifier(name) {
					return cty.NilVal, function.NewArgErrorf(1, "vars key %q is not a valid identifier", name)
				}
				ctxVars[name] = v
			}
			path := args[0].AsString()
			b, err := readConfined(src, path)
			if err != nil {
				return cty.NilVal, err
			}
			expr, diags := hclsyntax.ParseTemplate(b, path, hcl.InitialPos)
			if diags.HasErrors() {
				return cty.NilVal, fmt.Errorf("template %s: %s", path, diagsText(diags))
			}
			for _, tr := range expr.Variables() {
				if _, ok := ctxVars[tr.RootName()]; !ok {
					return cty.NilVal, fmt.Errorf("template %s refers to %q at line %d, which is not in vars", path, tr.RootName(), tr.SourceRange().Start.Line)
				}
			}
			ctx := &hcl.EvalContext{Variables: ctxVars, Functions: makeFunctions(src, getenv, depth+1)}
			v, diags := expr.Value(ctx)
			if diags.HasErrors() {
				return cty.NilVal, fmt.Errorf("template %s: %s", path, diagsText(diags))
			}
			if !v.IsWhollyKnown() {
				return cty.UnknownVal(cty.String), nil
			}
			sv, err := convert.Convert(v, cty.String)
			if err != nil || sv.IsNull() {
				return cty.NilVal, fmt.Errorf("template %s does not produce a string", path)
			}
			return sv, nil
		},
	})
}

func diagsText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		s := d.Summary
		if d.Subject != nil {
			s = fmt.Sprintf("%s:%d,%d: %s", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, s)
		}
		if d.Detail != "" {
			s += "; " + d.Detail
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func envFunc(getenv func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{stringParam("name")},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(getenv(args[0].AsString())), nil
		},
	})
}

// cidrHostFunc: cidrhost("10.0.0.0/24", 5) = "10.0.0.5"; negative numbers
// count from the end of the prefix.
var cidrHostFunc = function.New(&function.Spec{
	Params: []function.Parameter{stringParam("prefix"), {Name: "hostnum", Type: cty.Number}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		p, err := netip.ParsePrefix(args[0].AsString())
		if err != nil {
			return cty.NilVal, function.NewArgErrorf(0, "invalid CIDR prefix: %s", err)
		}
		bf := args[1].AsBigFloat()
		if !bf.IsInt() {
			return cty.NilVal, function.NewArgErrorf(1, "hostnum must be a whole number")
		}
		n, _ := bf.Int(nil)
		p = p.Masked()
		bits := p.Addr().BitLen()
		hostBits := uint(bits - p.Bits())
		size := new(big.Int).Lsh(big.NewInt(1), hostBits)
		if n.Sign() < 0 {
			n.Add(n, size)
		}
		if n.Sign() < 0 || n.Cmp(size) >= 0 {
			return cty.NilVal, function.NewArgErrorf(1, "prefix %s has no host number %s", p, bf.Text('f', 0))
		}
		base := new(big.Int).SetBytes(p.Addr().AsSlice())
		base.Add(base, n)
		buf := base.FillBytes(make([]byte, bits/8))
		addr, _ := netip.AddrFromSlice(buf)
		return cty.StringVal(addr.String()), nil
	},
})

var base64EncodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{stringParam("str")},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
	},
})

var base64DecodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{stringParam("str")},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		b, err := base64.StdEncoding.DecodeString(args[0].AsString())
		if err != nil {
			return cty.NilVal, function.NewArgErrorf(0, "invalid base64: %s", err)
		}
		if !utf8.Valid(b) {
			return cty.NilVal, function.NewArgErrorf(0, "the decoded bytes are not valid UTF-8")
		}
		return cty.StringVal(string(b)), nil
	},
})

var sha256Func = function.New(&function.Spec{
	Params: []function.Parameter{stringParam("str")},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		sum := sha256.Sum256([]byte(args[0].AsString()))
		return cty.StringVal(hex.EncodeToString(sum[:])), nil
	},
})

func strPredFunc(pred func(s, sub string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{stringParam("str"), stringParam("substr")},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(pred(args[0].AsString(), args[1].AsString())), nil
		},
	})
}
