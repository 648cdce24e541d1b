package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/hactl/hactl/lang"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Fingerprint hashes what a plan was made from: the configuration, in a
// canonical form (every decoded setting, plus the bytes of every loaded
// file), and the observed inventory (machine ids, tags, power states, VIP
// holders, membership health; not timestamps or addresses). A saved plan
// records it, and apply refuses the plan when the fingerprint of the world
// it is about to change differs. Now, FailureTimeout and Capabilities are
// not part of it.
func Fingerprint(in Input) string {
	h := sha256.New()
	f := func(format string, a ...any) { fmt.Fprintf(h, format, a...) }
	if c := in.Config; c != nil {
		if cl := c.Cluster; cl != nil {
			f("cluster %q %q %d %q %d %d %v\n", cl.Name, cl.Provider, cl.Voters, cl.Witness,
				cl.Objectives.RTO, cl.Objectives.RPO, cl.Objectives.Availability)
		}
		for _, name := range sortedNames(c.Providers) {
			pr := c.Providers[name]
			f("provider %q %q %s\n", name, pr.Type, ctyString(pr.Config))
		}
		roles := slices.Clone(c.Roles)
		slices.SortFunc(roles, func(a, b *lang.Role) int { return cmp.Compare(a.Name, b.Name) })
		for _, r := range roles {
			pl := r.Placement
			f("role %q %d %q %q %q %q %v %q\n", r.Name, r.Count, r.Provider, pl.Regions, pl.Size, pl.Image, pl.Spread, r.Source)
			f(" fencing %q %d %s\n", r.Fencing.Method, r.Fencing.Delay, ctyString(r.Fencing.Settings))
			if v := r.VIP; v != nil {
				f(" vip %q %d %q %d %q\n", v.Address, v.Port, v.Failback, v.FailbackDelay, v.Note)
			}
			for _, hc := range r.Health {
				f(" health %q %q %d %q %q %d %d %d\n", hc.Name, hc.Type, hc.Port, hc.Path, hc.Command, hc.Interval, hc.Timeout, hc.Threshold)
			}
			for _, d := range r.Data {
				f(" data %q %q %q %d\n", d.Name, d.Path, d.Mode, d.Interval)
				for _, b := range d.Backups {
					f("  backup %q %q %q %d %d %q\n", b.Name, b.Target, b.Schedule, b.KeepLast, b.KeepDaily, b.HostKey)
				}
			}
			for _, rd := range r.Resources {
				f(" resource %q\n", rd.Addr.String())
			}
		}
		for _, name := range sortedNames(c.Variables) {
			f("var %q %s\n", name, ctyString(c.Variables[name]))
		}
		for _, name := range sortedNames(c.Files) {
			sum := sha256.Sum256(c.Files[name])
			f("file %q %x\n", name, sum)
		}
	}
	obs := slices.Clone(in.Observed)
	slices.SortFunc(obs, func(a, b Observed) int {
		return cmp.Or(cmp.Compare(a.Provider, b.Provider), cmp.Compare(a.Machine.ID, b.Machine.ID))
	})
	for _, o := range obs {
		m := o.Machine
		vips := slices.Clone(o.VIPs)
		slices.Sort(vips)
		f("machine %q %q %q %q %d %d %q %q %v %q %q\n", o.Provider, m.ID, m.Cluster, m.Role, m.Slot, m.Generation,
			m.Name, m.State, o.Member, o.Health, vips)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// ctyString renders a cty value canonically (JSON when it is wholly known).
func ctyString(v cty.Value) string {
	if v == cty.NilVal {
		return "nil"
	}
	if v.IsWhollyKnown() {
		if b, err := ctyjson.Marshal(v, v.Type()); err == nil {
			return string(b)
		}
	}
	return v.GoString()
}

func sortedNames[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Saved is a plan read back from a file written by Save.
type Saved struct {
	// Fingerprint of the input the plan was made from.
	Fingerprint string
	Result      Result
}

// ErrStale is returned (wrapped) by Saved.Check when the world changed.
var ErrStale = errors.New("saved plan is stale")

type savedFile struct {
	Kind        string     `json:"kind"`
	Fingerprint string     `json:"fingerprint"`
	Plan        jsonResult `json:"plan"`
}

const savedKind = "hactl-plan"

// Save writes r and the fingerprint of its input to w (JSON; the same
// stable shape as Result.JSON, wrapped with a kind and the fingerprint).
func Save(w io.Writer, r Result, fingerprint string) error {
	f := savedFile{
		Kind:        savedKind,
		Fingerprint: fingerprint,
		Plan: jsonResult{
			FormatVersion: FormatVersion,
			Steps:         nonNil(r.Steps),
			Tolerance:     nonNil(r.Tolerance),
			Quorum:        r.Quorum,
			Warnings:      nonNil(r.Warnings),
			Summary:       r.Counts(),
		},
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode saved plan: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write saved plan: %w", err)
	}
	return nil
}

// Load reads a plan written by Save. It checks the kind and format version
// and that the steps are well formed (ids in order, After pointing back).
func Load(r io.Reader) (Saved, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f savedFile
	if err := dec.Decode(&f); err != nil {
		return Saved{}, fmt.Errorf("read saved plan: %w", err)
	}
	if f.Kind != savedKind {
		return Saved{}, fmt.Errorf("read saved plan: not a hactl plan file (kind %q)", f.Kind)
	}
	if f.Plan.FormatVersion != FormatVersion {
		return Saved{}, fmt.Errorf("read saved plan: format version %q, this hactl reads %q", f.Plan.FormatVersion, FormatVersion)
	}
	if f.Fingerprint == "" {
		return Saved{}, errors.New("read saved plan: no fingerprint")
	}
	for i, s := range f.Plan.Steps {
		if s.ID != i {
			return Saved{}, fmt.Errorf("read saved plan: step %d has id %d", i, s.ID)
		}
		for _, a := range s.After {
			if a < 0 || a >= i {
				return Saved{}, fmt.Errorf("read saved plan: step %d (%s) waits for step %d, which does not come before it", i, s, a)
			}
		}
	}
	return Saved{
		Fingerprint: f.Fingerprint,
		Result: Result{
			Steps:     f.Plan.Steps,
			Tolerance: f.Plan.Tolerance,
			Quorum:    f.Plan.Quorum,
			Warnings:  f.Plan.Warnings,
		},
	}, nil
}

// Check returns an error wrapping ErrStale when in, the world as it is now,
// is not the world the plan was made from.
func (s Saved) Check(in Input) error {
	if now := Fingerprint(in); now != s.Fingerprint {
		return fmt.Errorf("%w: the configuration or the machines changed since the plan was made (plan %s, now %s); run hactl plan again",
			ErrStale, short(s.Fingerprint), short(now))
	}
	return nil
}

func short(fp string) string {
	if len(fp) > 19 {
		return fp[:19]
	}
	return fp
}
