package lang

import (
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/robfig/cron/v3"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/crypto/ssh"
)

var (
	roleSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "count"}, {Name: "provider"}, {Name: "source"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "placement"},
			{Type: "health", LabelNames: []string{"name"}},
			{Type: "fencing"},
			{Type: "vip"},
			{Type: "data", LabelNames: []string{"name"}},
			{Type: "resource", LabelNames: []string{"kind", "name"}},
		},
	}
	// roleFileSchema is the schema of a role source file: one role block.
	roleFileSchema = &hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{{Type: "role", LabelNames: []string{"name"}}},
	}
	placementSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "regions"}, {Name: "size"}, {Name: "image"}, {Name: "spread"}},
	}
	healthSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "type", Required: true}, {Name: "port"}, {Name: "path"}, {Name: "command"},
			{Name: "interval"}, {Name: "timeout"}, {Name: "threshold"},
		},
	}
	fencingSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "method"}, {Name: "delay"}},
	}
	vipSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "address"}, {Name: "port"}, {Name: "failback"}, {Name: "failback_delay"}, {Name: "note"},
		},
	}
	dataSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "path", Required: true}, {Name: "mode"}, {Name: "interval"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "backup", LabelNames: []string{"name"}}},
	}
	backupSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "target", Required: true}, {Name: "schedule", Required: true},
			{Name: "keep_last"}, {Name: "keep_daily"}, {Name: "host_key"},
		},
	}
	resourceMetaSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "depends_on"}, {Name: "notify"}, {Name: "subscribe"}},
	}
)

// Known values of the enumerated attributes.
var (
	HealthTypes     = []string{"http", "tcp", "smtp", "exec"}
	FencingMethods  = []string{"provider", "destroy", "ssh", "ipmi", "redfish", "none"}
	FailbackModes   = []string{FailbackNever, FailbackImmediate, FailbackDelayed}
	ReplicationMode = []string{ReplicationSync, ReplicationAsync, ReplicationNone}
)

// Defaults of optional attributes.
const (
	DefaultHealthInterval  = 10 * time.Second
	DefaultHealthTimeout   = 5 * time.Second
	DefaultHealthThreshold = 3
	DefaultFailbackDelay   = 5 * time.Minute
	DefaultDataInterval    = time.Minute
	DefaultKeepLast        = 7
)

// roleParts is a role body split into its pieces, so a role source and the
// block that references it can be merged before values are decoded.
type roleParts struct {
	attrs                   hcl.Attributes
	placement, fencing, vip *hcl.Block
	health, data, resources []*hcl.Block
}

func blockKey(b *hcl.Block) string { return strings.Join(b.Labels, ".") }

// split decodes the structure of one role body and reports duplicates.
func (l *loader) split(body hcl.Body) (*roleParts, hcl.Diagnostics) {
	content, diags := body.Content(roleSchema)
	p := &roleParts{attrs: content.Attributes}
	seen := map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		switch b.Type {
		case "placement", "fencing", "vip":
			slot := map[string]**hcl.Block{"placement": &p.placement, "fencing": &p.fencing, "vip": &p.vip}[b.Type]
			if *slot != nil {
				diags = append(diags, errDiag("Duplicate "+b.Type+" block",
					fmt.Sprintf("The role already has a %s block at %s. Merge the two.", b.Type, (*slot).DefRange), rangePtr(b.DefRange)))
				continue
			}
			*slot = b
		default:
			key := b.Type + "." + blockKey(b)
			if prev, dup := seen[key]; dup {
				what := map[string]string{"health": "Duplicate health check", "data": "Duplicate data block", "resource": "Duplicate resource"}[b.Type]
				diags = append(diags, errDiag(what,
					fmt.Sprintf("%s %q is already declared in this role at %s. Names must be unique within a role; rename or remove one.", b.Type, blockKey(b), prev.DefRange), rangePtr(b.DefRange)))
				continue
			}
			seen[key] = b
			switch b.Type {
			case "health":
				p.health = append(p.health, b)
			case "data":
				p.data = append(p.data, b)
			case "resource":
				p.resources = append(p.resources, b)
			}
		}
	}
	return p, diags
}

// merge lays over on top of base: attributes and single blocks in over win;
// named blocks in over replace base blocks of the same name, others append.
func merge(base, over *roleParts) *roleParts {
	m := &roleParts{attrs: hcl.Attributes{}}
	for k, a := range base.attrs {
		m.attrs[k] = a
	}
	for k, a := range over.attrs {
		m.attrs[k] = a
	}
	delete(m.attrs, "source")
	pick := func(a, b *hcl.Block) *hcl.Block {
		if b != nil {
			return b
		}
		return a
	}
	m.placement = pick(base.placement, over.placement)
	m.fencing = pick(base.fencing, over.fencing)
	m.vip = pick(base.vip, over.vip)
	named := func(a, b []*hcl.Block) []*hcl.Block {
		out := append([]*hcl.Block(nil), a...)
	next:
		for _, nb := range b {
			for i, ob := range out {
				if blockKey(ob) == blockKey(nb) {
					out[i] = nb
					continue next
				}
			}
			out = append(out, nb)
		}
		return out
	}
	m.health = named(base.health, over.health)
	m.data = named(base.data, over.data)
	m.resources = named(base.resources, over.resources)
	return m
}

// decodeRoles decodes every role block, merging role sources in.
func (l *loader) decodeRoles(blocks hcl.Blocks) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]*Role{}
	for _, b := range blocks {
		name := b.Labels[0]
		if !validName(name) {
			diags = append(diags, errDiag("Invalid role name",
				fmt.Sprintf("%q is not a valid role name. Use lower-case letters, digits and underscores, starting with a letter (node names are ROLE-SLOT).", name),
				rangePtr(b.LabelRanges[0])))
			continue
		}
		if prev, dup := seen[name]; dup {
			diags = append(diags, errDiag("Duplicate role",
				fmt.Sprintf("A role named %q was already declared at %s. Remove or rename one of them.", name, prev.DeclRange), rangePtr(b.DefRange)))
			continue
		}
		r, d := l.decodeRole(b)
		diags = append(diags, d...)
		seen[name] = r
		l.cfg.Roles = append(l.cfg.Roles, r)
	}
	sort.Slice(l.cfg.Roles, func(i, j int) bool { return l.cfg.Roles[i].Name < l.cfg.Roles[j].Name })
	return diags
}

// validName: role names become host names (ROLE-SLOT), so no dashes.
func validName(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z') {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (l *loader) decodeRole(b *hcl.Block) (*Role, hcl.Diagnostics) {
	r := &Role{Name: b.Labels[0], Count: 1, Provider: "local", DeclRange: b.DefRange,
		Fencing: Fencing{Method: "provider", Settings: cty.EmptyObjectVal}}
	if l.cfg.Cluster != nil {
		r.Provider = l.cfg.Cluster.Provider
	}
	parts, diags := l.split(b.Body)
	if a := parts.attrs["source"]; a != nil {
		src, full, d := l.loadSource(a)
		diags = append(diags, d...)
		if src != nil {
			r.Source = full
			parts = merge(src, parts)
		}
	}
	if n, ok, d := attrInt(l.ctx, parts.attrs["count"]); ok {
		if n < 1 {
			diags = append(diags, errDiag("Invalid count",
				fmt.Sprintf("Role %q has count %d; a role needs at least 1 node. Remove the role if it is not wanted.", r.Name, n),
				rangePtr(parts.attrs["count"].Expr.Range())))
		} else {
			r.Count = n
		}
	} else {
		diags = append(diags, d...)
	}
	if a := parts.attrs["provider"]; a != nil {
		if s, ok, d := attrString(l.ctx, a); ok {
			r.Provider = s
			l.provRange[r] = rangePtr(a.Expr.Range())
		} else {
			diags = append(diags, d...)
		}
	}
	if parts.placement != nil {
		diags = append(diags, l.decodePlacement(parts.placement, &r.Placement)...)
	}
	for _, hb := range parts.health {
		h, d := l.decodeHealth(hb)
		diags = append(diags, d...)
		r.Health = append(r.Health, h)
	}
	if parts.fencing != nil {
		diags = append(diags, l.decodeFencing(parts.fencing, &r.Fencing)...)
	}
	if parts.vip != nil {
		v, d := l.decodeVIP(parts.vip, r)
		diags = append(diags, d...)
		r.VIP = v
	}
	for _, db := range parts.data {
		dt, d := l.decodeData(db, r)
		diags = append(diags, d...)
		r.Data = append(r.Data, dt)
	}
	for _, rb := range parts.resources {
		decl, d := l.decodeResource(rb)
		diags = append(diags, d...)
		if decl != nil {
			r.Resources = append(r.Resources, decl)
		}
	}
	diags = append(diags, l.checkResourceGraph(r)...)
	return r, diags
}

// loadSource reads a role source file: one role block, whose body is the
// base the referencing block is laid over.
func (l *loader) loadSource(a *hcl.Attribute) (*roleParts, string, hcl.Diagnostics) {
	path, ok, diags := attrString(l.ctx, a)
	if !ok {
		return nil, "", diags
	}
	full, err := l.src.resolve(filepath.Dir(a.Range.Filename), path)
	if err != nil {
		return nil, "", append(diags, errDiag("Role source outside the configuration",
			fmt.Sprintf("Role source %s. Keep shared roles inside the configuration directory or in a roles/ directory next to it.", err),
			rangePtr(a.Expr.Range())))
	}
	if f, seen := l.parsed[full]; seen && f == nil {
		return nil, "", diags // syntax errors already reported
	}
	bs, err := l.src.read(full)
	if err != nil {
		return nil, "", append(diags, errDiag("Cannot read role source",
			fmt.Sprintf("Reading the role source failed: %s. Check the path, which is relative to the file that names it.", err),
			rangePtr(a.Expr.Range())))
	}
	_, seen := l.parsed[full]
	f, d := l.parse(full, bs)
	if !seen {
		diags = append(diags, d...)
	}
	if f == nil {
		return nil, "", diags
	}
	content, d := f.Body.Content(roleFileSchema)
	if !seen {
		diags = append(diags, d...)
	}
	if len(content.Blocks) != 1 {
		return nil, "", append(diags, errDiag("Invalid role source",
			fmt.Sprintf("%s holds %d role blocks; a role source holds exactly one role block with the role's defaults.", full, len(content.Blocks)),
			rangePtr(a.Expr.Range())))
	}
	parts, d := l.split(content.Blocks[0].Body)
	if !seen {
		diags = append(diags, d...)
	}
	if na := parts.attrs["source"]; na != nil {
		return nil, "", append(diags, errDiag("Nested role source",
			fmt.Sprintf("The role in %s has a source attribute itself; role sources do not nest. Remove it.", full),
			rangePtr(na.NameRange)))
	}
	return parts, full, diags
}

func (l *loader) decodePlacement(b *hcl.Block, p *Placement) hcl.Diagnostics {
	content, diags := b.Body.Content(placementSchema)
	if v, ok, d := attrStrings(l.ctx, content.Attributes["regions"]); ok {
		p.Regions = v
	} else {
		diags = append(diags, d...)
	}
	if v, ok, d := attrString(l.ctx, content.Attributes["size"]); ok {
		p.Size = v
	} else {
		diags = append(diags, d...)
	}
	if v, ok, d := attrString(l.ctx, content.Attributes["image"]); ok {
		p.Image = v
	} else {
		diags = append(diags, d...)
	}
	if v, ok, d := attrBool(l.ctx, content.Attributes["spread"]); ok {
		p.Spread = v
	} else {
		diags = append(diags, d...)
	}
	return diags
}

func (l *loader) decodeHealth(b *hcl.Block) (HealthCheck, hcl.Diagnostics) {
	h := HealthCheck{Name: b.Labels[0], Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout,
		Threshold: DefaultHealthThreshold, DeclRange: b.DefRange}
	content, diags := b.Body.Content(healthSchema)
	at := content.Attributes
	if s, ok, d := attrString(l.ctx, at["type"]); ok {
		if !contains(HealthTypes, s) {
			diags = append(diags, errDiag("Unknown health check type",
				fmt.Sprintf("Health check type %q is not known. Use one of: %s.", s, strings.Join(HealthTypes, ", ")), rangePtr(at["type"].Expr.Range())))
		} else {
			h.Type = s
		}
	} else {
		diags = append(diags, d...)
	}
	if n, ok, d := attrInt(l.ctx, at["port"]); ok {
		diags = append(diags, checkPort(at["port"], n)...)
		h.Port = n
	} else {
		diags = append(diags, d...)
	}
	if s, ok, d := attrString(l.ctx, at["path"]); ok {
		h.Path = s
	} else {
		diags = append(diags, d...)
	}
	if v, ok, d := attrStrings(l.ctx, at["command"]); ok {
		h.Command = v
	} else {
		diags = append(diags, d...)
	}
	for _, x := range []struct {
		name string
		dst  *time.Duration
	}{{"interval", &h.Interval}, {"timeout", &h.Timeout}} {
		if dur, ok, d := attrDuration(l.ctx, at[x.name]); ok {
			if dur == 0 {
				diags = append(diags, errDiag("Invalid duration",
					fmt.Sprintf("Health check %s must be longer than zero, e.g. \"10s\".", x.name), rangePtr(at[x.name].Expr.Range())))
			} else {
				*x.dst = dur
			}
		} else {
			diags = append(diags, d...)
		}
	}
	if n, ok, d := attrInt(l.ctx, at["threshold"]); ok {
		if n < 1 {
			diags = append(diags, errDiag("Invalid threshold",
				fmt.Sprintf("threshold is %d; give the number of consecutive failures (1 or more) that make a node unhealthy.", n), rangePtr(at["threshold"].Expr.Range())))
		} else {
			h.Threshold = n
		}
	} else {
		diags = append(diags, d...)
	}
	switch h.Type {
	case "http", "tcp", "smtp":
		if at["port"] == nil {
			diags = append(diags, errDiag("Missing health check port",
				fmt.Sprintf("A %s health check needs the port to probe. Add port = NUMBER.", h.Type), rangePtr(b.DefRange)))
		}
		if h.Type == "http" && h.Path == "" {
			h.Path = "/"
		}
	case "exec":
		if len(h.Command) == 0 {
			diags = append(diags, errDiag("Missing health check command",
				`An exec health check needs a command to run. Add command = ["/path/to/check", "arg"].`, rangePtr(b.DefRange)))
		}
	}
	if h.Timeout > h.Interval {
		diags = append(diags, warnDiag("Health check timeout exceeds interval",
			fmt.Sprintf("Health check %q may run for %s but starts every %s, so probes overlap. Make the timeout shorter than the interval.", h.Name, h.Timeout, h.Interval),
			rangePtr(b.DefRange)))
	}
	return h, diags
}

func (l *loader) decodeFencing(b *hcl.Block, f *Fencing) hcl.Diagnostics {
	content, remain, diags := b.Body.PartialContent(fencingSchema)
	f.DeclRange = b.DefRange
	if s, ok, d := attrString(l.ctx, content.Attributes["method"]); ok {
		if !contains(FencingMethods, s) {
			diags = append(diags, errDiag("Unknown fencing method",
				fmt.Sprintf("Fencing method %q is not known. Use one of: %s.", s, strings.Join(FencingMethods, ", ")), rangePtr(content.Attributes["method"].Expr.Range())))
		} else {
			f.Method = s
		}
	} else {
		diags = append(diags, d...)
	}
	if dur, ok, d := attrDuration(l.ctx, content.Attributes["delay"]); ok {
		f.Delay = dur
	} else {
		diags = append(diags, d...)
	}
	attrs, d := remain.JustAttributes()
	diags = append(diags, d...)
	obj, d := attrsObject(l.ctx, attrs)
	diags = append(diags, d...)
	f.Settings = obj
	need := map[string]string{"ipmi": "host", "redfish": "endpoint"}[f.Method]
	if need != "" && attrs[need] == nil {
		diags = append(diags, errDiag("Missing fencing setting",
			fmt.Sprintf("Fencing method %q needs the %s setting. Add %s = \"...\" to the fencing block.", f.Method, need, need), rangePtr(b.DefRange)))
	}
	if f.Method == "none" {
		diags = append(diags, warnDiag("No fencing",
			"With fencing disabled, a node that stops answering is replaced without being stopped first; if it is only partitioned, two nodes may serve the same data or VIP. Prefer method = \"provider\".",
			rangePtr(b.DefRange)))
	}
	return diags
}

func (l *loader) decodeVIP(b *hcl.Block, r *Role) (*VIP, hcl.Diagnostics) {
	v := &VIP{Failback: FailbackNever, DeclRange: b.DefRange}
	content, diags := b.Body.Content(vipSchema)
	at := content.Attributes
	if s, ok, d := attrString(l.ctx, at["address"]); ok {
		if _, err := netip.ParseAddr(s); err != nil {
			diags = append(diags, errDiag("Invalid VIP address",
				fmt.Sprintf("%q is not an IP address: %s. Give an address such as \"10.0.0.100\", or leave address out to let the provider allocate one.", s, err), rangePtr(at["address"].Expr.Range())))
		} else {
			v.Address = s
		}
	} else {
		diags = append(diags, d...)
	}
	if n, ok, d := attrInt(l.ctx, at["port"]); ok {
		diags = append(diags, checkPort(at["port"], n)...)
		v.Port = n
	} else {
		diags = append(diags, d...)
	}
	if s, ok, d := attrString(l.ctx, at["failback"]); ok {
		if !contains(FailbackModes, s) {
			diags = append(diags, errDiag("Unknown failback policy",
				fmt.Sprintf("Failback policy %q is not known. Use one of: %s.", s, strings.Join(FailbackModes, ", ")), rangePtr(at["failback"].Expr.Range())))
		} else {
			v.Failback = s
		}
	} else {
		diags = append(diags, d...)
	}
	if dur, ok, d := attrDuration(l.ctx, at["failback_delay"]); ok {
		v.FailbackDelay = dur
		if v.Failback != FailbackDelayed {
			diags = append(diags, warnDiag("Unused failback delay",
				fmt.Sprintf("failback_delay only applies with failback = %q; it is ignored with %q.", FailbackDelayed, v.Failback), rangePtr(at["failback_delay"].NameRange)))
		}
	} else {
		diags = append(diags, d...)
	}
	if v.Failback == FailbackDelayed && v.FailbackDelay == 0 {
		v.FailbackDelay = DefaultFailbackDelay
	}
	if s, ok, d := attrString(l.ctx, at["note"]); ok {
		v.Note = s
	} else {
		diags = append(diags, d...)
	}
	if r.Count == 1 && strings.TrimSpace(v.Note) == "" {
		diags = append(diags, errDiag("VIP on a single-node role",
			fmt.Sprintf("Role %q has a vip but only one node, so the address cannot move anywhere when the node fails. Raise count, or add note = \"...\" saying why a VIP is still wanted.", r.Name),
			rangePtr(b.DefRange)))
	}
	return v, diags
}

func (l *loader) decodeData(b *hcl.Block, r *Role) (Data, hcl.Diagnostics) {
	dt := Data{Name: b.Labels[0], Mode: ReplicationAsync, DeclRange: b.DefRange}
	content, diags := b.Body.Content(dataSchema)
	at := content.Attributes
	if s, ok, d := attrString(l.ctx, at["path"]); ok {
		if !strings.HasPrefix(s, "/") || filepath.Clean(s) == "/" {
			diags = append(diags, errDiag("Invalid data path",
				fmt.Sprintf("Data path %q must be an absolute path below /, such as \"/var/lib/mail\".", s), rangePtr(at["path"].Expr.Range())))
		} else {
			dt.Path = filepath.Clean(s)
		}
	} else {
		diags = append(diags, d...)
	}
	if s, ok, d := attrString(l.ctx, at["mode"]); ok {
		if !contains(ReplicationMode, s) {
			diags = append(diags, errDiag("Unknown replication mode",
				fmt.Sprintf("Replication mode %q is not known. Use one of: %s.", s, strings.Join(ReplicationMode, ", ")), rangePtr(at["mode"].Expr.Range())))
		} else {
			dt.Mode = s
		}
	} else {
		diags = append(diags, d...)
	}
	if dur, ok, d := attrDuration(l.ctx, at["interval"]); ok {
		dt.Interval = dur
	} else {
		diags = append(diags, d...)
	}
	if dt.Mode == ReplicationAsync && dt.Interval == 0 {
		dt.Interval = DefaultDataInterval
	}
	if dt.Mode != ReplicationNone && r.Count == 1 {
		diags = append(diags, warnDiag("Replication without a peer",
			fmt.Sprintf("Data %q is replicated (%s) but role %q has one node, so there is no peer to replicate to. Raise count or use mode = \"none\" with a backup.", dt.Name, dt.Mode, r.Name),
			rangePtr(b.DefRange)))
	}
	seen := map[string]hcl.Range{}
	for _, bb := range content.Blocks {
		name := bb.Labels[0]
		if prev, dup := seen[name]; dup {
			diags = append(diags, errDiag("Duplicate backup",
				fmt.Sprintf("Backup %q is already declared in this data block at %s. Rename or remove one.", name, prev), rangePtr(bb.DefRange)))
			continue
		}
		seen[name] = bb.DefRange
		bk, d := l.decodeBackup(bb)
		diags = append(diags, d...)
		dt.Backups = append(dt.Backups, bk)
	}
	return dt, diags
}

func (l *loader) decodeBackup(b *hcl.Block) (Backup, hcl.Diagnostics) {
	bk := Backup{Name: b.Labels[0], DeclRange: b.DefRange}
	content, diags := b.Body.Content(backupSchema)
	at := content.Attributes
	sftp := false
	if s, ok, d := attrString(l.ctx, at["target"]); ok {
		u, err := url.Parse(s)
		switch {
		case err != nil:
		case u.Scheme == "dir" && u.Host == "" && strings.HasPrefix(u.Path, "/"):
			bk.Target = s
		case u.Scheme == "sftp" && u.Hostname() != "" && u.Path != "":
			bk.Target, sftp = s, true
		default:
			err = fmt.Errorf("unsupported scheme or missing host/path")
		}
		if bk.Target == "" {
			diags = append(diags, errDiag("Invalid backup target",
				fmt.Sprintf("Backup target %q is not usable (%v). Write dir:///absolute/path or sftp://user@host:22/path.", s, err), rangePtr(at["target"].Expr.Range())))
		}
	} else {
		diags = append(diags, d...)
	}
	if s, ok, d := attrString(l.ctx, at["schedule"]); ok {
		if _, err := cron.ParseStandard(s); err != nil {
			diags = append(diags, errDiag("Invalid backup schedule",
				fmt.Sprintf("Schedule %q is not a cron expression: %s. Write five fields (\"30 3 * * *\") or a descriptor such as \"@daily\".", s, err), rangePtr(at["schedule"].Expr.Range())))
		} else {
			bk.Schedule = s
		}
	} else {
		diags = append(diags, d...)
	}
	for _, x := range []struct {
		name string
		dst  *int
	}{{"keep_last", &bk.KeepLast}, {"keep_daily", &bk.KeepDaily}} {
		if n, ok, d := attrInt(l.ctx, at[x.name]); ok {
			if n < 0 {
				diags = append(diags, errDiag("Invalid retention",
					fmt.Sprintf("%s is %d; give 0 or more.", x.name, n), rangePtr(at[x.name].Expr.Range())))
			} else {
				*x.dst = n
			}
		} else {
			diags = append(diags, d...)
		}
	}
	if at["keep_last"] == nil && at["keep_daily"] == nil {
		bk.KeepLast = DefaultKeepLast
	}
	if s, ok, d := attrString(l.ctx, at["host_key"]); ok {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
			diags = append(diags, errDiag("Invalid host key",
				fmt.Sprintf("host_key is not a public key in authorized_keys format (%s). Copy a line from ssh-keyscan, e.g. \"ssh-ed25519 AAAA...\".", err), rangePtr(at["host_key"].Expr.Range())))
		} else {
			bk.HostKey = s
		}
	} else {
		diags = append(diags, d...)
		if sftp && at["host_key"] == nil {
			diags = append(diags, errDiag("Unpinned SFTP host key",
				"An sftp backup target needs the server's host key pinned, or a man in the middle could receive the backups. Add host_key = \"ssh-ed25519 AAAA...\" (from ssh-keyscan).",
				rangePtr(b.DefRange)))
		}
	}
	return bk, diags
}

// decodeResource splits a resource block into its references and its
// unevaluated body.
func (l *loader) decodeResource(b *hcl.Block) (*ResourceDecl, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	kind, name := b.Labels[0], b.Labels[1]
	for i, s := range b.Labels {
		if !hclsyntax.ValidIdentifier(s) {
			diags = append(diags, errDiag("Invalid resource name",
				fmt.Sprintf("%q is not a valid identifier, so it could not be referred to as KIND.NAME. Use letters, digits, underscores and dashes, starting with a letter.", s),
				rangePtr(b.LabelRanges[i])))
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	decl := &ResourceDecl{Addr: ResourceAddr{Kind: kind, Name: name}, DeclRange: b.DefRange, TypeRange: b.LabelRanges[0]}
	content, remain, d := b.Body.PartialContent(resourceMetaSchema)
	diags = append(diags, d...)
	decl.Body = remain
	for _, x := range []struct {
		name string
		dst  *[]ResourceAddr
	}{{"depends_on", &decl.DependsOn}, {"notify", &decl.Notify}, {"subscribe", &decl.Subscribe}} {
		a := content.Attributes[x.name]
		if a == nil {
			continue
		}
		exprs, d := hcl.ExprList(a.Expr)
		diags = append(diags, d...)
		for _, e := range exprs {
			tr, d := hcl.AbsTraversalForExpr(e)
			var addr ResourceAddr
			ok := !d.HasErrors() && len(tr) == 2
			if ok {
				ta, isAttr := tr[1].(hcl.TraverseAttr)
				ok = isAttr
				addr = ResourceAddr{Kind: tr.RootName(), Name: ta.Name}
			}
			if !ok {
				diags = append(diags, errDiag("Invalid resource reference",
					fmt.Sprintf("Each element of %s must name a resource of this role as KIND.NAME, for example file.index (without quotes).", x.name),
					rangePtr(e.Range())))
				continue
			}
			*x.dst = append(*x.dst, addr)
			l.refs[decl] = append(l.refs[decl], refAt{attr: x.name, addr: addr, rng: e.Range()})
		}
	}
	return decl, diags
}

// checkResourceGraph reports references to missing resources and cycles.
func (l *loader) checkResourceGraph(r *Role) hcl.Diagnostics {
	var diags hcl.Diagnostics
	byAddr := map[ResourceAddr]*ResourceDecl{}
	var nodes []string
	for _, d := range r.Resources {
		byAddr[d.Addr] = d
		nodes = append(nodes, d.Addr.String())
	}
	edges := map[string][]string{} // before -> after
	for _, d := range r.Resources {
		for _, ref := range l.refs[d] {
			if byAddr[ref.addr] == nil {
				diags = append(diags, errDiag("Reference to undeclared resource",
					fmt.Sprintf("%s of %s names %s, but role %q has no such resource. Declare it, or fix the name.", ref.attr, d.Addr, ref.addr, r.Name),
					rangePtr(ref.rng)))
				continue
			}
			self, other := d.Addr.String(), ref.addr.String()
			switch ref.attr {
			case "depends_on", "subscribe":
				edges[other] = append(edges[other], self)
			case "notify":
				edges[self] = append(edges[self], other)
			}
		}
	}
	// findCycles follows edges in the "needs" direction for readable names:
	// a -> b means a must wait for b. Reverse the before->after edges.
	needs := map[string][]string{}
	for from, tos := range edges {
		for _, to := range tos {
			needs[to] = append(needs[to], from)
		}
	}
	for k := range needs {
		sort.Strings(needs[k])
	}
	for _, cyc := range findCycles(nodes, needs) {
		first := byAddr[parseAddr(cyc[0])]
		diags = append(diags, errDiag("Dependency cycle",
			fmt.Sprintf("The resources %s of role %q wait for each other in a loop (through depends_on, notify and subscribe), so none can be applied. Remove one of the references.", strings.Join(append(cyc, cyc[0]), " -> "), r.Name),
			rangePtr(first.DeclRange)))
	}
	return diags
}

func parseAddr(s string) ResourceAddr {
	k, n, _ := strings.Cut(s, ".")
	return ResourceAddr{Kind: k, Name: n}
}
