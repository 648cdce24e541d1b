package lang

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Top-level schemas, next to their decoders (phase one of the two-phase
// decode: structure first, values later with an EvalContext).
var (
	fileSchema = &hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "cluster", LabelNames: []string{"name"}},
			{Type: "provider", LabelNames: []string{"name"}},
			{Type: "variable", LabelNames: []string{"name"}},
			{Type: "locals"},
			{Type: "role", LabelNames: []string{"name"}},
		},
	}
	clusterSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "provider"}, {Name: "voters"}, {Name: "witness"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "objectives"}},
	}
	objectivesSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "rto"}, {Name: "rpo"}, {Name: "availability"}},
	}
	providerSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "type"}},
	}
	variableSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"}},
	}
)

// ProviderTypes are the provider implementations a provider block may name.
var ProviderTypes = []string{"baremetal", "digitalocean", "lab", "local"}

// Load reads every *.hcl file in dir (sorted by name, not recursively; role
// sources are loaded as they are referenced), decodes and validates them,
// and returns the configuration. It reports every problem it finds, with
// source ranges. When the diagnostics have errors, the Config must not be
// used.
func Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, hcl.Diagnostics{errDiag("Cannot read configuration directory",
			fmt.Sprintf("Reading %s failed: %s. Give the directory that holds the *.hcl files.", dir, err), nil)}
	}
	files := map[string][]byte{}
	var diags hcl.Diagnostics
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".hcl") || strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(dir, name)
		b, err := os.ReadFile(full)
		if err != nil {
			diags = append(diags, errDiag("Cannot read configuration file",
				fmt.Sprintf("Reading %s failed: %s. Check the file's permissions.", full, err), nil))
			continue
		}
		files[full] = b
	}
	if diags.HasErrors() {
		return nil, diags
	}
	opts.Dir = dir
	c, d := LoadFiles(files, opts)
	return c, append(diags, d...)
}

// loader holds the state of one LoadFiles call.
type loader struct {
	opts   LoadOptions
	src    *sources
	cfg    *Config
	parsed map[string]*hcl.File
	ctx    *hcl.EvalContext // load time: var, local and functions
	// provRange remembers where each role named its provider (for diagnostics).
	provRange map[*Role]*hcl.Range
	// refs remembers where each resource reference was written.
	refs map[*ResourceDecl][]refAt
	// votersRng, witnessRng and provRng point at the cluster attributes, when set.
	votersRng, witnessRng, provRng *hcl.Range
}

type refAt struct {
	attr string // depends_on, notify, subscribe
	addr ResourceAddr
	rng  hcl.Range
}

// LoadFiles is Load on an in-memory set of files (name -> contents); see
// LoadOptions.Dir for which entries are the configuration. Tests use it to
// load without touching the disk.
func LoadFiles(files map[string][]byte, opts LoadOptions) (*Config, hcl.Diagnostics) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	src := newSources(opts.Dir, files)
	c := &Config{
		Dir:       opts.Dir,
		Providers: map[string]*Provider{},
		Variables: map[string]cty.Value{},
		Sensitive: map[string]bool{},
		Locals:    map[string]cty.Value{},
		Files:     map[string][]byte{},
		src:       src,
		getenv:    opts.Getenv,
	}
	l := &loader{opts: opts, src: src, cfg: c, parsed: map[string]*hcl.File{},
		provRange: map[*Role]*hcl.Range{}, refs: map[*ResourceDecl][]refAt{}}

	var names []string
	for name := range src.mem {
		if filepath.Dir(name) == src.root && strings.HasSuffix(name, ".hcl") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var diags hcl.Diagnostics
	if len(names) == 0 {
		return c, append(diags, errDiag("No configuration files",
			fmt.Sprintf("There are no *.hcl files in %s. Create one with a cluster block and the roles of the cluster.", src.root), nil))
	}
	var blocks hcl.Blocks
	for _, name := range names {
		f, d := l.parse(name, src.mem[name])
		diags = append(diags, d...)
		if f == nil {
			continue
		}
		content, d := f.Body.Content(fileSchema)
		diags = append(diags, d...)
		blocks = append(blocks, content.Blocks...)
	}
	byType := map[string]hcl.Blocks{}
	for _, b := range blocks {
		byType[b.Type] = append(byType[b.Type], b)
	}
	diags = append(diags, l.decodeVariables(byType["variable"])...)
	diags = append(diags, l.decodeLocals(byType["locals"])...)
	l.ctx = &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(c.Variables), "local": cty.ObjectVal(c.Locals)},
		Functions: c.functions(),
	}
	diags = append(diags, l.decodeCluster(byType["cluster"])...)
	diags = append(diags, l.decodeProviders(byType["provider"])...)
	diags = append(diags, l.decodeRoles(byType["role"])...)
	diags = append(diags, l.validate()...)
	return c, diags
}

// parse parses one file once and records it for diagnostics. It returns nil
// when the file has syntax errors (continuing would only add noise).
func (l *loader) parse(name string, b []byte) (*hcl.File, hcl.Diagnostics) {
	if f, ok := l.parsed[name]; ok {
		return f, nil
	}
	l.cfg.Files[name] = b
	f, diags := hclsyntax.ParseConfig(b, name, hcl.InitialPos)
	if diags.HasErrors() {
		l.parsed[name] = nil
		return nil, diags
	}
	l.parsed[name] = f
	return f, diags
}

// decodeVariables decodes the variable blocks and settles each value: from
// LoadOptions.Variables, then HACTL_VAR_<name>, then the default.
func (l *loader) decodeVariables(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			diags = append(diags, errDiag("Invalid variable name",
				fmt.Sprintf("%q is not a valid name. Use letters, digits, underscores and dashes, starting with a letter.", name), rangePtr(b.LabelRanges[0])))
			continue
		}
		if prev, dup := seen[name]; dup {
			diags = append(diags, errDiag("Duplicate variable",
				fmt.Sprintf("A variable named %q was already declared at %s. Remove or rename one of them.", name, prev), rangePtr(b.DefRange)))
			continue
		}
		seen[name] = b.DefRange
		content, d := b.Body.Content(variableSchema)
		diags = append(diags, d...)
		ty := cty.DynamicPseudoType
		if a := content.Attributes["type"]; a != nil {
			t, d := typeexpr.TypeConstraint(a.Expr)
			diags = append(diags, d...)
			if !d.HasErrors() {
				ty = t
			}
		}
		_, _, d = attrString(nil, content.Attributes["description"])
		diags = append(diags, d...)
		if s, ok, d := attrBool(nil, content.Attributes["sensitive"]); ok {
			if s {
				l.cfg.Sensitive[name] = true
			}
		} else {
			diags = append(diags, d...)
		}

		var val cty.Value
		what := ""
		if raw, ok := l.opts.Variables[name]; ok {
			val, what = parseVarValue(raw, ty), "the value given with -var"
		} else if raw := l.opts.Getenv("HACTL_VAR_" + name); raw != "" {
			val, what = parseVarValue(raw, ty), "the value of HACTL_VAR_"+name
		} else if a := content.Attributes["default"]; a != nil {
			v, d := a.Expr.Value(nil)
			diags = append(diags, d...)
			if d.HasErrors() {
				continue
			}
			val, what = v, "the default"
		} else {
			diags = append(diags, errDiag("Missing variable value",
				fmt.Sprintf("Variable %q has no value. Set it with -var %s=VALUE, with the environment variable HACTL_VAR_%s, or give it a default.", name, name, name),
				rangePtr(b.DefRange)))
			continue
		}
		cv, err := convert.Convert(val, ty)
		if err != nil {
			diags = append(diags, errDiag("Invalid value for variable",
				fmt.Sprintf("The value of variable %q from %s is not a %s: %s. Give a value of that type.", name, what, typeexpr.TypeString(ty), err),
				rangePtr(b.DefRange)))
			continue
		}
		l.cfg.Variables[name] = cv
	}
	var extra []string
	for name := range l.opts.Variables {
		if _, ok := seen[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		diags = append(diags, errDiag("Value for undeclared variable",
			fmt.Sprintf("A value was given for %q, but no variable of that name is declared. Declare it with a variable block or remove the -var option.", name), nil))
	}
	return diags
}

// parseVarValue reads a -var or HACTL_VAR_ value: as a string for string
// variables, else as an HCL expression when it is one, else as a string.
func parseVarValue(raw string, ty cty.Type) cty.Value {
	if ty == cty.String {
		return cty.StringVal(raw)
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), "<value>", hcl.InitialPos)
	if !diags.HasErrors() {
		if v, diags := expr.Value(nil); !diags.HasErrors() {
			return v
		}
	}
	return cty.StringVal(raw)
}

// decodeLocals evaluates the locals blocks in dependency order and reports
// cycles by name.
func (l *loader) decodeLocals(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	var order []*hcl.Attribute
	byName := map[string]*hcl.Attribute{}
	for _, b := range blocks {
		attrs, d := b.Body.JustAttributes()
		diags = append(diags, d...)
		list := make([]*hcl.Attribute, 0, len(attrs))
		for _, a := range attrs {
			list = append(list, a)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].Range.Start.Byte < list[j].Range.Start.Byte })
		for _, a := range list {
			if prev, dup := byName[a.Name]; dup {
				diags = append(diags, errDiag("Duplicate local value",
					fmt.Sprintf("A local value named %q was already defined at %s. Remove or rename one of them.", a.Name, prev.NameRange), rangePtr(a.NameRange)))
				continue
			}
			byName[a.Name] = a
			order = append(order, a)
		}
	}
	names := make([]string, len(order))
	deps := map[string][]string{}
	for i, a := range order {
		names[i] = a.Name
		for _, tr := range a.Expr.Variables() {
			if tr.RootName() != "local" || len(tr) < 2 {
				continue
			}
			if ta, ok := tr[1].(hcl.TraverseAttr); ok {
				if _, exists := byName[ta.Name]; exists {
					deps[a.Name] = append(deps[a.Name], ta.Name)
				}
			}
		}
	}
	failed := map[string]bool{}
	for _, cyc := range findCycles(names, deps) {
		for _, n := range cyc {
			failed[n] = true
		}
		diags = append(diags, errDiag("Cycle in local values",
			fmt.Sprintf("The local values %s refer to each other in a loop, so none of them can be evaluated. Break the loop by removing one of the references.", strings.Join(append(cyc, cyc[0]), " -> ")),
			rangePtr(byName[cyc[0]].NameRange)))
	}
	done := map[string]bool{}
	var eval func(name string)
	eval = func(name string) {
		if done[name] || failed[name] {
			return
		}
		done[name] = true
		for _, dep := range deps[name] {
			eval(dep)
			if failed[dep] {
				failed[name] = true
				return
			}
		}
		a := byName[name]
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.ObjectVal(l.cfg.Variables), "local": cty.ObjectVal(l.cfg.Locals)},
			Functions: l.cfg.functions(),
		}
		v, d := a.Expr.Value(ctx)
		diags = append(diags, d...)
		if d.HasErrors() {
			failed[name] = true
			return
		}
		l.cfg.Locals[name] = v
	}
	for _, n := range names {
		eval(n)
	}
	return diags
}

// decodeCluster decodes the one cluster block.
func (l *loader) decodeCluster(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	if len(blocks) == 0 {
		return append(diags, errDiag("Missing cluster block",
			`The configuration has no cluster block. Add one, for example: cluster "blog" { provider = "local" }.`, nil))
	}
	for _, b := range blocks[1:] {
		diags = append(diags, errDiag("Duplicate cluster block",
			fmt.Sprintf("A configuration has exactly one cluster block; the first is at %s. Remove this one.", blocks[0].DefRange), rangePtr(b.DefRange)))
	}
	b := blocks[0]
	cl := &Cluster{Name: b.Labels[0], Provider: "local", DeclRange: b.DefRange}
	l.cfg.Cluster = cl
	content, d := b.Body.Content(clusterSchema)
	diags = append(diags, d...)
	if s, ok, d := attrString(l.ctx, content.Attributes["provider"]); ok {
		cl.Provider = s
		l.provRng = rangePtr(content.Attributes["provider"].Expr.Range())
	} else {
		diags = append(diags, d...)
	}
	if n, ok, d := attrInt(l.ctx, content.Attributes["voters"]); ok {
		if n < 0 {
			diags = append(diags, errDiag("Invalid voters",
				fmt.Sprintf("voters is %d; give 0 for automatic, or the number of raft voters wanted.", n), rangePtr(content.Attributes["voters"].Expr.Range())))
		} else {
			cl.Voters = n
			l.votersRng = rangePtr(content.Attributes["voters"].Expr.Range())
		}
	} else {
		diags = append(diags, d...)
	}
	if s, ok, d := attrString(l.ctx, content.Attributes["witness"]); ok {
		cl.Witness = s
		l.witnessRng = rangePtr(content.Attributes["witness"].Expr.Range())
	} else {
		diags = append(diags, d...)
	}
	var objectives *hcl.Block
	for _, ob := range content.Blocks {
		if objectives != nil {
			diags = append(diags, errDiag("Duplicate objectives block",
				fmt.Sprintf("The cluster already has an objectives block at %s. Merge the two.", objectives.DefRange), rangePtr(ob.DefRange)))
			continue
		}
		objectives = ob
		diags = append(diags, l.decodeObjectives(ob, &cl.Objectives)...)
	}
	return diags
}

func (l *loader) decodeObjectives(b *hcl.Block, o *Objectives) hcl.Diagnostics {
	content, diags := b.Body.Content(objectivesSchema)
	for _, name := range []string{"rto", "rpo"} {
		a := content.Attributes[name]
		s, ok, d := attrString(l.ctx, a)
		diags = append(diags, d...)
		if !ok {
			continue
		}
		dur, err := time.ParseDuration(s)
		if err != nil || dur <= 0 {
			diags = append(diags, errDiag("Invalid objective",
				fmt.Sprintf("%s is %q, which is not a positive duration. Write a Go duration such as \"60s\" or \"5m\".", name, s), rangePtr(a.Expr.Range())))
			continue
		}
		if name == "rto" {
			o.RTO = dur
		} else {
			o.RPO = dur
		}
	}
	if a := content.Attributes["availability"]; a != nil {
		v, ok, d := evalAttr(l.ctx, a, cty.DynamicPseudoType)
		diags = append(diags, d...)
		if ok {
			f, err := parseAvailability(v)
			if err != nil {
				diags = append(diags, errDiag("Invalid objective",
					fmt.Sprintf("availability %s. Write a percentage such as \"99.9%%\" or a fraction such as 0.999.", err), rangePtr(a.Expr.Range())))
			} else {
				o.Availability = f
			}
		}
	}
	return diags
}

// parseAvailability accepts "99.9%" or a number in (0,1].
func parseAvailability(v cty.Value) (float64, error) {
	var f float64
	switch v.Type() {
	case cty.String:
		s := strings.TrimSpace(v.AsString())
		if p, ok := strings.CutSuffix(s, "%"); ok {
			// Parsing "99.9e-2" rounds once, so "99.9%" is exactly 0.999.
			p = strings.TrimSpace(p)
			x, err := strconv.ParseFloat(p+"e-2", 64)
			if err != nil || strings.ContainsAny(p, "eExXpP_") || x <= 0 || x > 1 {
				return 0, fmt.Errorf("is %q, which is not a percentage in (0%%,100%%]", s)
			}
			return x, nil
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("is %q, which is neither a percentage nor a number", s)
		}
		f = x
	case cty.Number:
		f, _ = v.AsBigFloat().Float64()
	default:
		return 0, fmt.Errorf("is a %s", v.Type().FriendlyName())
	}
	if f <= 0 || f > 1 {
		return 0, fmt.Errorf("is %g, which is not in (0,1]", f)
	}
	return f, nil
}

// decodeProviders decodes provider blocks; "local" exists implicitly.
func (l *loader) decodeProviders(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, dup := l.cfg.Providers[name]; dup {
			diags = append(diags, errDiag("Duplicate provider",
				fmt.Sprintf("A provider named %q was already declared at %s. Remove or rename one of them.", name, prev.DeclRange), rangePtr(b.DefRange)))
			continue
		}
		p := &Provider{Name: name, Type: name, Config: cty.EmptyObjectVal, DeclRange: b.DefRange}
		l.cfg.Providers[name] = p
		content, remain, d := b.Body.PartialContent(providerSchema)
		diags = append(diags, d...)
		typeRange := b.LabelRanges[0]
		if a := content.Attributes["type"]; a != nil {
			s, ok, d := attrString(l.ctx, a)
			diags = append(diags, d...)
			if ok {
				p.Type = s
			}
			typeRange = a.Expr.Range()
		}
		if !contains(ProviderTypes, p.Type) {
			diags = append(diags, errDiag("Unknown provider type",
				fmt.Sprintf("Provider type %q is not known. Set type to one of: %s.", p.Type, strings.Join(ProviderTypes, ", ")), rangePtr(typeRange)))
		}
		attrs, d := remain.JustAttributes()
		diags = append(diags, d...)
		obj, d := attrsObject(l.ctx, attrs)
		diags = append(diags, d...)
		p.Config = obj
	}
	if _, ok := l.cfg.Providers["local"]; !ok {
		l.cfg.Providers["local"] = &Provider{Name: "local", Type: "local", Config: cty.EmptyObjectVal}
	}
	return diags
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
