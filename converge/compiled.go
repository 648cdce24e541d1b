package converge

import (
	"bytes"
	bin "encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/big"
	"slices"

	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Compiled holds declarations with their bodies decoded in one evaluation
// context (Engine.Compile). It is read-only once made.
type Compiled struct {
	Decls []*lang.ResourceDecl
	// Values[i] is Decls[i]'s body decoded against its kind's schema, or
	// cty.NilVal when that failed (the run then reports the resource as
	// failed with the decoding error).
	Values []cty.Value
	// flat[i], when not nil, is Decls[i]'s Kind.Flatten form: the run
	// builds the resource from it (Kind.Unflatten), and Values[i] is
	// cty.NilVal once decoded from the binary form.
	flat [][]byte
	errs []error
}

// flatAt is declaration i's flat form, or nil.
func (c *Compiled) flatAt(i int) []byte {
	if i < len(c.flat) {
		return c.flat[i]
	}
	return nil
}

// err is the decoding error of declaration i (none in a Compiled made
// by hand or by UnmarshalCompiled).
func (c *Compiled) err(i int) error {
	if i < len(c.errs) {
		return c.errs[i]
	}
	return nil
}

// OK reports whether every declaration decoded.
func (c *Compiled) OK() bool {
	for _, err := range c.errs {
		if err != nil {
			return false
		}
	}
	return true
}

// compiledMagic starts the binary form; bump the version when the layout
// changes.
const compiledMagic = "hactl-compiled 3\n"

// MarshalBinary encodes c in a compact binary form that UnmarshalCompiled
// reads back much faster than the HCL it came from can be parsed and
// decoded: addresses, source ranges, depends_on/notify/subscribe and, per
// declaration, its flat form (CompileFlat) or else its decoded value
// (types as cty JSON, once per distinct type; values without JSON). Bodies
// are not kept. It fails when a declaration did not
// decode, or a value is unknown, marked or of a type it cannot encode
// (capsules); such a compilation must be redone each time. A CRC-32 (IEEE)
// of the content ends the encoding, so a damaged copy is refused, not
// misread (a checksum against damage, not a digest against forgery: whoever
// can write the file can write the configuration). Measured per run, in a
// fresh process: SHA-256 of the ~50 KB form ~0.2 ms (no SHA-NI here);
// CRC-32C ~0.3 ms, nearly all building its tables on first use; CRC-32 IEEE
// (carry-less multiply, no tables) 0.04-0.08 ms.
func (c *Compiled) MarshalBinary() ([]byte, error) {
	if !c.OK() {
		return nil, errors.New("compiled: a declaration did not decode")
	}
	w := &encoder{types: map[string]int{}}
	w.buf = append(w.buf, compiledMagic...)
	w.uvarint(len(c.Decls))
	for i, d := range c.Decls {
		w.str(d.Addr.Kind)
		w.str(d.Addr.Name)
		w.rng(d.DeclRange)
		w.rng(d.TypeRange)
		for _, as := range [][]lang.ResourceAddr{d.DependsOn, d.Notify, d.Subscribe} {
			w.uvarint(len(as))
			for _, a := range as {
				w.str(a.Kind)
				w.str(a.Name)
			}
		}
		if f := c.flatAt(i); f != nil {
			w.buf = append(w.buf, 1)
			w.str(string(f))
			continue
		}
		w.buf = append(w.buf, 0)
		v := c.Values[i]
		if !v.IsWhollyKnown() || v.ContainsMarked() {
			return nil, fmt.Errorf("compiled: %s: value is unknown or marked", d.Addr)
		}
		if err := w.typ(v.Type()); err != nil {
			return nil, fmt.Errorf("compiled: %s: %w", d.Addr, err)
		}
		if err := w.value(v, v.Type()); err != nil {
			return nil, fmt.Errorf("compiled: %s: %w", d.Addr, err)
		}
	}
	// The type table goes last: the decoder reads it first through the
	// offset just before the checksum.
	tableAt := len(w.buf)
	w.uvarint(len(w.typeList))
	for _, t := range w.typeList {
		w.str(t)
	}
	w.buf = bin.BigEndian.AppendUint32(w.buf, uint32(tableAt))
	return bin.BigEndian.AppendUint32(w.buf, crc32.ChecksumIEEE(w.buf)), nil
}

// UnmarshalCompiled decodes what MarshalBinary made. The declarations it
// returns have no Body: they can be run (Engine.RunCompiled) but not
// compiled again.
func UnmarshalCompiled(data []byte) (*Compiled, error) {
	if len(data) < len(compiledMagic)+4+4 || !bytes.HasPrefix(data, []byte(compiledMagic)) {
		return nil, errors.New("compiled: not a compiled form")
	}
	body, sum := data[:len(data)-4], data[len(data)-4:]
	if crc32.ChecksumIEEE(body) != bin.BigEndian.Uint32(sum) {
		return nil, errors.New("compiled: checksum mismatch")
	}
	tableAt := int(bin.BigEndian.Uint32(body[len(body)-4:]))
	if tableAt < len(compiledMagic) || tableAt > len(body)-4 {
		return nil, errors.New("compiled: bad type table offset")
	}
	r := &decoder{buf: body[tableAt : len(body)-4]}
	nt := r.uvarint()
	for i := 0; i < nt && r.err == nil; i++ {
		t, err := ctyjson.UnmarshalType([]byte(r.str()))
		if err != nil {
			return nil, fmt.Errorf("compiled: type %d: %w", i, err)
		}
		r.plans = append(r.plans, newPlan(t))
	}
	if r.err != nil {
		return nil, r.err
	}
	r.buf = body[len(compiledMagic):tableAt]
	n := r.uvarint()
	if n > len(r.buf) {
		return nil, errors.New("compiled: bad declaration count")
	}
	c := &Compiled{Decls: make([]*lang.ResourceDecl, 0, n), Values: make([]cty.Value, 0, n), errs: make([]error, n)}
	for range n {
		d := &lang.ResourceDecl{Addr: lang.ResourceAddr{Kind: r.str(), Name: r.str()}}
		d.DeclRange = r.rng()
		d.TypeRange = r.rng()
		for _, dst := range []*[]lang.ResourceAddr{&d.DependsOn, &d.Notify, &d.Subscribe} {
			m := r.uvarint()
			for i := 0; i < m && r.err == nil; i++ {
				*dst = append(*dst, lang.ResourceAddr{Kind: r.str(), Name: r.str()})
			}
		}
		tag := r.bytes(1)
		if r.err != nil {
			return nil, r.err
		}
		if tag[0] == 1 {
			f := r.bytes(r.uvarint())
			if r.err != nil {
				return nil, r.err
			}
			if c.flat == nil {
				c.flat = make([][]byte, n)
			}
			c.flat[len(c.Decls)] = f
			c.Decls = append(c.Decls, d)
			c.Values = append(c.Values, cty.NilVal)
			continue
		}
		if tag[0] != 0 {
			return nil, errors.New("compiled: bad declaration tag")
		}
		ti := r.uvarint()
		if r.err != nil {
			return nil, r.err
		}
		if ti >= len(r.plans) {
			return nil, errors.New("compiled: bad type index")
		}
		v := r.value(r.plans[ti])
		if r.err != nil {
			return nil, r.err
		}
		c.Decls = append(c.Decls, d)
		c.Values = append(c.Values, v)
	}
	if len(r.buf) != 0 {
		return nil, errors.New("compiled: trailing bytes")
	}
	return c, nil
}

// AppendValue appends an encoding of v (known, unmarked, not a capsule)
// that is the same for equal values and differs for different ones (types
// included): what a cache key needs. It is the compiled form's encoding,
// without JSON for the value (json.Marshal of the node facts took a tenth
// of a millisecond per run).
func AppendValue(b []byte, v cty.Value) ([]byte, error) {
	if !v.IsWhollyKnown() || v.ContainsMarked() {
		return nil, errors.New("value is unknown or marked")
	}
	t, err := ctyjson.MarshalType(v.Type())
	if err != nil {
		return nil, err
	}
	w := &encoder{buf: b}
	w.str(string(t))
	if err := w.value(v, v.Type()); err != nil {
		return nil, err
	}
	return w.buf, nil
}

// Bounds on a decoded number: binary exponent and mantissa precision. HCL
// parses literals at 512 bits; an exponent of 2^16 is a 20,000-digit
// number.
const maxNumberExp, maxNumberPrec = 1 << 16, 4096

// DecodeValue decodes what AppendValue appended (all of b).
func DecodeValue(b []byte) (cty.Value, error) {
	r := &decoder{buf: b}
	t, err := ctyjson.UnmarshalType([]byte(r.str()))
	if r.err != nil {
		return cty.NilVal, r.err
	}
	if err != nil {
		return cty.NilVal, err
	}
	v := r.value(newPlan(t))
	if r.err == nil && len(r.buf) != 0 {
		r.err = errors.New("compiled: trailing bytes")
	}
	if r.err != nil {
		return cty.NilVal, r.err
	}
	return v, nil
}

type encoder struct {
	buf      []byte
	types    map[string]int
	typeList []string
}

func (w *encoder) uvarint(n int) { w.buf = bin.AppendUvarint(w.buf, uint64(n)) }
func (w *encoder) str(s string) {
	w.uvarint(len(s))
	w.buf = append(w.buf, s...)
}

func (w *encoder) rng(r hcl.Range) {
	w.str(r.Filename)
	for _, n := range []int{r.Start.Line, r.Start.Column, r.Start.Byte, r.End.Line, r.End.Column, r.End.Byte} {
		w.uvarint(n)
	}
}

func (w *encoder) typ(t cty.Type) error {
	j, err := ctyjson.MarshalType(t)
	if err != nil {
		return err
	}
	i, ok := w.types[string(j)]
	if !ok {
		i = len(w.typeList)
		w.types[string(j)] = i
		w.typeList = append(w.typeList, string(j))
	}
	w.uvarint(i)
	return nil
}

// value writes v, of type t (known, unmarked): a null flag, then the
// content; the type itself is known to the reader.
func (w *encoder) value(v cty.Value, t cty.Type) error {
	if v.IsNull() {
		w.buf = append(w.buf, 0)
		return nil
	}
	w.buf = append(w.buf, 1)
	switch {
	case t == cty.String:
		w.str(v.AsString())
	case t == cty.Bool:
		b := byte(0)
		if v.True() {
			b = 1
		}
		w.buf = append(w.buf, b)
	case t == cty.Number:
		g, err := v.AsBigFloat().GobEncode() // exact: precision and mode too
		if err != nil {
			return err
		}
		w.str(string(g))
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		w.uvarint(v.LengthInt())
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if t.IsMapType() {
				w.str(k.AsString())
			}
			if err := w.value(e, t.ElementType()); err != nil {
				return err
			}
		}
	case t.IsTupleType():
		for i, et := range t.TupleElementTypes() {
			if err := w.value(v.Index(cty.NumberIntVal(int64(i))), et); err != nil {
				return err
			}
		}
	case t.IsObjectType():
		ats := t.AttributeTypes()
		for _, name := range sortedKeys(ats) {
			if err := w.value(v.GetAttr(name), ats[name]); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("cannot encode a value of type %s", t.FriendlyName())
	}
	return nil
}

func sortedKeys(m map[string]cty.Type) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

type decoder struct {
	buf   []byte
	plans []*plan // per entry of the type table
	err   error
}

// plan is a type prepared for decoding: object attribute names sorted
// and nested types prepared once per type, not once per value.
type plan struct {
	t     cty.Type
	names []string // object: attribute names in encoding order
	sub   []*plan  // object: per name; tuple: per element; collection: [element]
}

func newPlan(t cty.Type) *plan {
	p := &plan{t: t}
	switch {
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		p.sub = []*plan{newPlan(t.ElementType())}
	case t.IsTupleType():
		for _, et := range t.TupleElementTypes() {
			p.sub = append(p.sub, newPlan(et))
		}
	case t.IsObjectType():
		ats := t.AttributeTypes()
		p.names = sortedKeys(ats)
		for _, n := range p.names {
			p.sub = append(p.sub, newPlan(ats[n]))
		}
	}
	return p
}

func (r *decoder) fail() {
	if r.err == nil {
		r.err = errors.New("compiled: truncated or malformed")
	}
	r.buf = nil
}

func (r *decoder) uvarint() int {
	n, k := bin.Uvarint(r.buf)
	if k <= 0 || n > 1<<31 {
		r.fail()
		return 0
	}
	r.buf = r.buf[k:]
	return int(n)
}

func (r *decoder) bytes(n int) []byte {
	if n > len(r.buf) {
		r.fail()
		return nil
	}
	b := r.buf[:n]
	r.buf = r.buf[n:]
	return b
}

func (r *decoder) str() string { return string(r.bytes(r.uvarint())) }

func (r *decoder) rng() hcl.Range {
	rg := hcl.Range{Filename: r.str()}
	rg.Start = hcl.Pos{Line: r.uvarint(), Column: r.uvarint(), Byte: r.uvarint()}
	rg.End = hcl.Pos{Line: r.uvarint(), Column: r.uvarint(), Byte: r.uvarint()}
	return rg
}

func (r *decoder) value(p *plan) cty.Value {
	t := p.t
	flag := r.bytes(1)
	if r.err != nil {
		return cty.NilVal
	}
	if flag[0] == 0 {
		return cty.NullVal(t)
	}
	switch {
	case t == cty.String:
		return cty.StringVal(r.str())
	case t == cty.Bool:
		b := r.bytes(1)
		if r.err != nil {
			return cty.NilVal
		}
		return cty.BoolVal(b[0] == 1)
	case t == cty.Number:
		bf := new(big.Float)
		if err := bf.GobDecode(r.bytes(r.uvarint())); err != nil || r.err != nil {
			r.fail()
			return cty.NilVal
		}
		// Bound what a damaged file can ask of later formatting (set
		// hashing prints numbers): an exponent of millions of digits
		// spins for minutes. Refused, the cache is re-made from source.
		if e := bf.MantExp(nil); e > maxNumberExp || e < -maxNumberExp || bf.Prec() > maxNumberPrec {
			r.fail()
			return cty.NilVal
		}
		return cty.NumberVal(bf)
	case t.IsListType() || t.IsSetType() || t.IsMapType():
		n := r.uvarint()
		if n > len(r.buf) {
			r.fail()
			return cty.NilVal
		}
		et := t.ElementType()
		if n == 0 {
			switch {
			case t.IsListType():
				return cty.ListValEmpty(et)
			case t.IsSetType():
				return cty.SetValEmpty(et)
			default:
				return cty.MapValEmpty(et)
			}
		}
		if t.IsMapType() {
			m := make(map[string]cty.Value, n)
			for i := 0; i < n && r.err == nil; i++ {
				k := r.str()
				m[k] = r.value(p.sub[0])
			}
			if r.err != nil {
				return cty.NilVal
			}
			return cty.MapVal(m)
		}
		es := make([]cty.Value, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			es = append(es, r.value(p.sub[0]))
		}
		if r.err != nil {
			return cty.NilVal
		}
		if t.IsListType() {
			return cty.ListVal(es)
		}
		return cty.SetVal(es)
	case t.IsTupleType():
		if len(p.sub) == 0 {
			return cty.EmptyTupleVal
		}
		es := make([]cty.Value, len(p.sub))
		for i, sp := range p.sub {
			es[i] = r.value(sp)
		}
		if r.err != nil {
			return cty.NilVal
		}
		return cty.TupleVal(es)
	case t.IsObjectType():
		if len(p.names) == 0 {
			return cty.EmptyObjectVal
		}
		m := make(map[string]cty.Value, len(p.names))
		for i, name := range p.names {
			m[name] = r.value(p.sub[i])
		}
		if r.err != nil {
			return cty.NilVal
		}
		return cty.ObjectVal(m)
	}
	r.fail()
	return cty.NilVal
}
