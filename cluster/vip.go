package cluster

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/lang"
	"github.com/hactl/hactl/plan"
)

// VIP ownership is two-phase so that no two nodes ever hold a VIP at once:
//
//  1. The leader records the holder in the log. A node binds a VIP only when
//     its applied log names it as holder and it has quorum.
//  2. To move a VIP away from a live holder the leader first records "no
//     holder"; the old holder unbinds and gossips that it no longer holds it;
//     only then does the leader record the new holder. A holder that is dead
//     must be fenced (a confirmed fence record for its generation) or dead
//     for longer than its self-fence watchdog guarantees before the VIP moves.

// claimVIPs binds and unbinds VIPs according to the applied log. A held VIP
// is kept through short quorum losses (elections); the watchdog releases it
// after SelfFenceTimeout.
func (n *Node) claimVIPs(quorum bool) {
	_, f := n.raft()
	st := f.state()
	n.mu.Lock()
	fenced := n.fenced
	n.mu.Unlock()
	for _, v := range n.cfg.VIPs {
		own := st.VIPs[v.Address]
		mine := own.Holder == n.cfg.Name && own.Generation == n.cfg.Generation && !n.cfg.Witness
		held := n.isHeld(v.Address)
		switch {
		case mine && !held && quorum && !fenced:
			n.setHeld(v.Address, true, "assigned through the log")
		case !mine && held:
			n.setHeld(v.Address, false, "no longer the holder in the log")
		}
	}
}

func (n *Node) isHeld(vip string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held[vip]
}

// setHeld calls the VIP callback and publishes the result in gossip. Only
// the control goroutine (or Run after it stopped) calls it.
func (n *Node) setHeld(vip string, held bool, why string) {
	if n.cfg.VIPChanged != nil {
		if err := n.cfg.VIPChanged(vip, held); err != nil {
			n.log.Error("vip callback failed", "vip", vip, "held", held, "err", err)
			if held {
				return // not bound: do not claim it
			}
		}
	}
	n.mu.Lock()
	if held {
		n.held[vip] = true
	} else {
		delete(n.held, vip)
	}
	var vips []string
	for k := range n.held {
		vips = append(vips, k)
	}
	n.mu.Unlock()
	slices.Sort(vips)
	verb := "released"
	if held {
		verb = "bound"
	}
	n.note("vip", fmt.Sprintf("%s %s: %s", verb, vip, why))
	n.updateMeta(func(m *nodeMeta) { m.VIPs = vips })
}

func (n *Node) releaseAll(why string) {
	n.mu.Lock()
	var vips []string
	for k := range n.held {
		vips = append(vips, k)
	}
	n.mu.Unlock()
	slices.Sort(vips)
	for _, v := range vips {
		n.setHeld(v, false, why)
	}
}

// assignVIPs is the leader's per-tick VIP decision.
func (n *Node) assignVIPs(r *raft.Raft, st State, members map[string]Member, now time.Time) {
	gone := func(name string, gen int, since time.Time) bool { return n.safelyGone(st, name, gen, since, now) }
	for _, v := range n.cfg.VIPs {
		if next, why, ok := decideVIP(v, st.VIPs[v.Address], members, now, gone); ok {
			n.applyVIP(r, next, why)
		}
	}
}

// decideVIP is the pure VIP policy: given the recorded owner and the
// membership, it returns the next owner record and why, or ok=false to
// leave the record as it is. gone reports whether a member generation that
// is not alive can be treated as unable to hold anything (fenced).
func decideVIP(v VIPSpec, own VIPOwner, members map[string]Member, now time.Time, gone func(name string, gen int, since time.Time) bool) (next VIPOwner, why string, ok bool) {
	// A generation whose fence is confirmed (or whose slot was rebuilt) is
	// gone even when gossip still shows it alive: a slot rebuilt within
	// memberlist's reclaim time rejoins under the same name and refutes the
	// suspicion of its dead predecessor, whose record then looks alive.
	cut := func(name string, gen int) bool { return gone(name, gen, time.Time{}) }
	var cands []Member
	for _, m := range members {
		if m.State == StateAlive && m.Role == v.Role && !m.Witness && m.Health != plan.HealthFailing && !cut(m.Name, m.Generation) {
			cands = append(cands, m)
		}
	}
	slices.SortFunc(cands, func(a, b Member) int {
		if d := a.Slot - b.Slot; d != 0 {
			return d
		}
		return cmpStr(a.Name, b.Name)
	})
	if own.Holder == "" {
		// Phase two: assign only once nobody reports it bound, and dead
		// reporters are safely gone.
		for _, m := range members {
			if m.Holds(v.Address) && !cut(m.Name, m.Generation) && (m.State == StateAlive || m.State == StateSuspect || !gone(m.Name, m.Generation, m.Since)) {
				return VIPOwner{}, "", false
			}
		}
		if len(cands) == 0 {
			return VIPOwner{}, "", false
		}
		c := cands[0]
		return VIPOwner{VIP: v.Address, Holder: c.Name, Generation: c.Generation, Since: now}, "lowest healthy slot of role " + v.Role, true
	}
	release := VIPOwner{VIP: v.Address, Since: now} // phase one of a move
	h, known := members[own.Holder]
	same := known && h.Generation == own.Generation
	if cut(own.Holder, own.Generation) {
		if len(cands) > 0 {
			release.Holder, release.Generation = cands[0].Name, cands[0].Generation
		}
		return release, fmt.Sprintf("holder %s generation %d is fenced", own.Holder, own.Generation), true
	}
	switch {
	case same && h.State == StateAlive && h.Health != plan.HealthFailing && h.Role == v.Role:
		if len(cands) == 0 || cands[0].Name == h.Name || cands[0].Slot > h.Slot {
			return VIPOwner{}, "", false
		}
		p := cands[0]
		switch v.Failback {
		case lang.FailbackImmediate:
		case lang.FailbackDelayed:
			if now.Sub(p.Since) < v.FailbackDelay {
				return VIPOwner{}, "", false
			}
		default: // never
			return VIPOwner{}, "", false
		}
		return release, fmt.Sprintf("failback to %s (%s)", p.Name, failbackName(v.Failback)), true
	case same && h.State == StateAlive:
		return release, fmt.Sprintf("holder %s is %s", h.Name, healthName(h.Health)), true
	case same && h.State == StateSuspect:
		return VIPOwner{}, "", false // let gossip decide first
	}
	var since time.Time
	if same {
		since = h.Since
	}
	if !gone(own.Holder, own.Generation, since) {
		return VIPOwner{}, "", false
	}
	why = fmt.Sprintf("holder %s generation %d is gone", own.Holder, own.Generation)
	if len(cands) > 0 {
		release.Holder, release.Generation = cands[0].Name, cands[0].Generation
	}
	return release, why, true
}

func failbackName(s string) string {
	if s == "" {
		return lang.FailbackNever
	}
	return s
}

func healthName(h plan.Health) string {
	if h == "" {
		return "of unknown health"
	}
	return string(h)
}

// safelyGone: a member generation that is not alive may be treated as unable
// to act when its fence is confirmed in the log, when the log records its
// slot rebuilt as a newer generation, or when it has been dead for
// longer than its watchdog needs to self-fence (Config.selfFencedAfter).
func (n *Node) safelyGone(st State, name string, gen int, deadSince time.Time, now time.Time) bool {
	if _, ok := st.Fences[fmt.Sprintf("%s@%d", name, gen)]; ok {
		return true
	}
	// A newer generation of the slot has been created: the reconciler
	// creates one only after the old machine was fenced or was gone from
	// the provider's inventory (deleted behind the cluster's back), so the
	// old generation holds nothing any more.
	if rb, ok := st.Rebuilds[name]; ok && rb.Generation > gen && (rb.State == RebuildWaiting || rb.State == RebuildDone) {
		return true
	}
	if deadSince.IsZero() || n.cfg.SelfFenceTimeout <= 0 {
		return false
	}
	return now.Sub(deadSince) >= n.cfg.selfFencedAfter()
}

func (n *Node) applyVIP(r *raft.Raft, o VIPOwner, why string) {
	// apply follows the record with a commit marker: the holder binds
	// only once its applied log names it, so it must learn the commit now.
	if err := n.apply(r, command{Op: opVIP, VIP: &o, Message: why}); err != nil {
		n.log.Warn("record vip owner", "vip", o.VIP, "err", err)
	}
}
