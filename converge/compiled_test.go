package converge

import (
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hactl/hactl/lang"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// valueKind accepts attributes of many types and keeps nothing: the test
// is about the decoded values.
func valueKind() Kind {
	return Kind{
		Name: "value",
		Spec: hcldec.ObjectSpec{
			"any":  &hcldec.AttrSpec{Name: "any", Type: cty.DynamicPseudoType},
			"str":  &hcldec.AttrSpec{Name: "str", Type: cty.String},
			"num":  &hcldec.AttrSpec{Name: "num", Type: cty.Number},
			"list": &hcldec.AttrSpec{Name: "list", Type: cty.List(cty.String)},
			"set":  &hcldec.AttrSpec{Name: "set", Type: cty.Set(cty.Number)},
			"map":  &hcldec.AttrSpec{Name: "map", Type: cty.Map(cty.Bool)},
			"def":  &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: "def", Type: cty.String}, Default: &hcldec.LiteralSpec{Value: cty.StringVal("d")}},
		},
		New: func(env Env, v cty.Value) (Resource, error) { return &probe{r: newRecorder()}, nil },
	}
}

const compiledSrc = `
resource "value" "a" {
  any  = { name = "svc-1", port = 8080, on = true, nested = { x = [1, "two", null] }, e = {}, t = [] }
  str  = "héllo\n${"x"}"
  num  = 123456789012345678901234567890.5
  list = ["a", "b"]
  set  = [3, 1, 2]
  map  = { yes = true, no = false }
}
resource "value" "b" {
  num        = -0.001
  list       = []
  map        = {}
  depends_on = [value.a]
  notify     = [value.c]
}
resource "value" "c" {
  any       = "plain"
  subscribe = [value.a]
}
`

func TestCompiled_MarshalBinary_RoundTrip(t *testing.T) {
	reg := NewRegistry(valueKind())
	e := NewEngine(reg, Env{Root: t.TempDir()})
	c := e.Compile(parse(t, compiledSrc), nil)
	if !c.OK() {
		t.Fatalf("compile: %v", c.errs)
	}
	got := roundTrip(t, c)
	if diff := cmp.Diff(c.Decls, got.Decls, cmpopts.IgnoreFields(lang.ResourceDecl{}, "Body")); diff != "" {
		t.Errorf("declarations differ (-compiled +decoded):\n%s", diff)
	}
	for i, v := range c.Values {
		if !got.Values[i].RawEquals(v) {
			t.Errorf("%s: decoded %#v, compiled %#v", c.Decls[i].Addr, got.Values[i], v)
		}
	}
	// The decoded form runs like the original.
	r1, err := e.RunCompiled(context.Background(), c, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := e.RunCompiled(context.Background(), got, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(statuses(r1), statuses(r2)); diff != "" {
		t.Errorf("statuses differ:\n%s", diff)
	}
}

func TestUnmarshalCompiled_Damaged(t *testing.T) {
	e := NewEngine(NewRegistry(valueKind()), Env{Root: t.TempDir()})
	data, err := e.Compile(parse(t, compiledSrc), nil).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": data[:len(data)/2],
		"flipped":   append(append([]byte{}, data[:40]...), append([]byte{data[40] ^ 1}, data[41:]...)...),
		"not ours":  []byte(strings.Repeat("x", 100)),
	}
	for name, d := range cases {
		if _, err := UnmarshalCompiled(d); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

func TestCompiled_MarshalBinary_RefusesFailedDecode(t *testing.T) {
	e := NewEngine(NewRegistry(valueKind()), Env{Root: t.TempDir()})
	c := e.Compile(parse(t, `resource "value" "a" { num = "not a number" }`+"\n"+`resource "nosuch" "b" {}`), nil)
	if c.OK() {
		t.Fatal("OK() with a failed decode")
	}
	if _, err := c.MarshalBinary(); err == nil {
		t.Fatal("MarshalBinary encoded a failed compilation")
	}
}

// TestUnmarshalCompiled_ManyDeclarations: enough declarations for the
// values to be decoded by several goroutines; each lands at its index.
func TestUnmarshalCompiled_ManyDeclarations(t *testing.T) {
	var src strings.Builder
	for i := range 150 {
		fmt.Fprintf(&src, "resource \"value\" \"v%d\" {\n  str = \"s%d\"\n  num = %d\n  any = { i = %d, l = [%q] }\n}\n", i, i, i, i, strconv.Itoa(i))
	}
	e := NewEngine(NewRegistry(valueKind()), Env{Root: t.TempDir()})
	c := e.Compile(parse(t, src.String()), nil)
	got := roundTrip(t, c)
	if len(got.Values) != len(c.Values) {
		t.Fatalf("%d values, want %d", len(got.Values), len(c.Values))
	}
	for i, v := range c.Values {
		if got.Decls[i].Addr != c.Decls[i].Addr || !got.Values[i].RawEquals(v) {
			t.Fatalf("%d: decoded %s %#v, compiled %s %#v", i, got.Decls[i].Addr, got.Values[i], c.Decls[i].Addr, v)
		}
	}
}

// TestAppendValue: equal values encode alike, different ones (types
// included) differently.
func TestAppendValue(t *testing.T) {
	obj := func(name string, slot cty.Value, members cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"node": cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name), "slot": slot}), "members": members})
	}
	ms := cty.MapVal(map[string]cty.Value{"web": cty.ListVal([]cty.Value{cty.StringVal("web-1")})})
	vals := []cty.Value{
		obj("web-1", cty.NumberIntVal(1), ms),
		obj("web-2", cty.NumberIntVal(1), ms),
		obj("web-1", cty.NumberIntVal(2), ms),
		obj("web-1", cty.StringVal("1"), ms),
		obj("web-1", cty.NullVal(cty.Number), ms),
		obj("web-1", cty.NumberIntVal(1), cty.MapValEmpty(cty.List(cty.String))),
		obj("web-1", cty.NumberIntVal(1), cty.MapVal(map[string]cty.Value{"web": cty.ListVal([]cty.Value{cty.StringVal("web-2")})})),
		obj("web-1", cty.NumberIntVal(1), cty.MapVal(map[string]cty.Value{"lb": cty.ListVal([]cty.Value{cty.StringVal("web-1")})})),
		cty.StringVal("x"), cty.StringVal("y"), cty.True, cty.NumberFloatVal(1.5),
	}
	seen := map[string]int{}
	for i, v := range vals {
		a, err := AppendValue(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := DecodeValue(a); err != nil || !d.RawEquals(v) {
			t.Errorf("%d: decoded %#v, %v", i, d, err)
		}
		if _, err := DecodeValue(a[:len(a)-1]); err == nil {
			t.Errorf("%d: truncated encoding decoded", i)
		}
		b, err := AppendValue([]byte("prefix"), v)
		if err != nil || string(b) != "prefix"+string(a) {
			t.Fatalf("%d: not appended: %q %v", i, b, err)
		}
		if j, dup := seen[string(a)]; dup {
			t.Errorf("values %d and %d encode alike: %#v, %#v", j, i, vals[j], v)
		}
		seen[string(a)] = i
		// An equal value built anew encodes alike.
		if i == 0 {
			c, _ := AppendValue(nil, obj("web-1", cty.NumberIntVal(1), cty.MapVal(map[string]cty.Value{"web": cty.ListVal([]cty.Value{cty.StringVal("web-1")})})))
			if string(c) != string(a) {
				t.Error("equal values encode differently")
			}
		}
	}
	if _, err := AppendValue(nil, cty.UnknownVal(cty.String)); err == nil {
		t.Error("unknown value encoded")
	}
}

// flatKind has a flat form that records which way its resources were built.
func flatKind(built *[]string) Kind {
	k := valueKind()
	k.Name = "flat"
	k.New = func(env Env, v cty.Value) (Resource, error) {
		s := "-"
		if a := v.GetAttr("str"); !a.IsNull() {
			s = a.AsString()
		}
		*built = append(*built, "new:"+s)
		return &probe{r: newRecorder()}, nil
	}
	k.Flatten = func(v cty.Value) ([]byte, error) {
		if v.GetAttr("str").IsNull() {
			return nil, fmt.Errorf("no str")
		}
		return []byte(v.GetAttr("str").AsString()), nil
	}
	k.Unflatten = func(env Env, flat []byte) (Resource, error) {
		*built = append(*built, "flat:"+string(flat))
		return &probe{r: newRecorder()}, nil
	}
	return k
}

// TestCompileFlat_RoundTrip: a kept compilation carries the flat forms,
// and runs, before and after the binary round trip, build from them; a
// value without a flat form keeps the value; Compile makes none.
func TestCompileFlat_RoundTrip(t *testing.T) {
	var built []string
	e := NewEngine(NewRegistry(valueKind(), flatKind(&built)), Env{Root: t.TempDir()})
	decls := parse(t, `resource "flat" "a" { str = "one" }
resource "flat" "b" {}
resource "value" "c" { str = "three" }
`)
	run := func(c *Compiled) []string {
		t.Helper()
		built = nil
		rep, err := e.RunCompiled(t.Context(), c, nil, Options{})
		if err != nil || rep.Failed() {
			t.Fatalf("run: %v %+v", err, rep)
		}
		return built
	}
	if got := run(e.Compile(decls, nil)); strings.Join(got, " ") != "new:one new:-" {
		t.Errorf("Compile: built %v", got)
	}
	c := e.CompileFlat(decls, nil)
	if got := run(c); strings.Join(got, " ") != "flat:one new:-" {
		t.Errorf("CompileFlat: built %v", got)
	}
	d := roundTrip(t, c)
	if d.Values[0] != cty.NilVal || d.Values[1].IsNull() || !d.Values[2].RawEquals(c.Values[2]) {
		t.Errorf("decoded values %#v", d.Values)
	}
	if got := run(d); strings.Join(got, " ") != "flat:one new:-" {
		t.Errorf("decoded: built %v", got)
	}
}

// A number whose exponent no configuration could hold (a damaged or forged
// cache) is refused instead of decoded; a large one HCL could hold is not.
func TestDecodeValue_NumberBounds(t *testing.T) {
	enc := func(f *big.Float) []byte {
		b, err := AppendValue(nil, cty.NumberVal(f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ok := new(big.Float).SetPrec(512).SetMantExp(big.NewFloat(1), 3000) // ~1e903
	if v, err := DecodeValue(enc(ok)); err != nil || v.AsBigFloat().Cmp(ok) != 0 {
		t.Errorf("2^3000: %v, %v", v, err)
	}
	for _, f := range []*big.Float{
		new(big.Float).SetPrec(512).SetMantExp(big.NewFloat(1), 1<<24),
		new(big.Float).SetPrec(512).SetMantExp(big.NewFloat(1), -(1 << 24)),
		new(big.Float).SetPrec(1 << 16).SetInt64(3),
	} {
		if _, err := DecodeValue(enc(f)); err == nil {
			t.Errorf("exponent %d, precision %d: decoded", f.MantExp(nil), f.Prec())
		}
	}
}

// roundTrip encodes c and decodes it again.
func roundTrip(t *testing.T, c *Compiled) *Compiled {
	t.Helper()
	data, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalCompiled(data)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
