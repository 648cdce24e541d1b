package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hactl/hactl/plan"

	"github.com/hactl/hactl/providers"
)

// leaderTick runs on the leader with quorum: barrier once per term, then
// voters, fencing, VIPs and the reconciler.
func (n *Node) leaderTick(ctx context.Context, r *raft.Raft) {
	term := r.CurrentTerm()
	n.mu.Lock()
	needBarrier := n.barrier != term
	n.mu.Unlock()
	if needBarrier {
		// Apply everything earlier leaders committed before acting on it.
		if err := r.Barrier(5 * time.Second).Error(); err != nil {
			n.log.Warn("leader barrier", "err", err)
			return
		}
		n.mu.Lock()
		n.barrier = term
		n.mu.Unlock()
		n.note("leader", fmt.Sprintf("leader for term %d", term))
	}
	now := time.Now()
	_, f := n.raft()
	st := f.state()
	members := map[string]Member{}
	for _, m := range n.ms.Members() {
		members[m.Name] = m
	}
	n.manageVoters(r, members, now)
	n.manageNonvoters(r, members, now)
	n.fenceDead(ctx, r, st, members, now)
	n.assignVIPs(r, st, members, now)
	n.reconcile(ctx, r, st, members, now)
	n.shedLeadership(r, st, members, now)
}

// shedLeadership hands leadership to a live voter that holds no VIP when
// this leader holds one (Config.LeaderAvoidsVIPs): when a VIP holder dies,
// its VIP can move as soon as the leader fences it, but when the holder was
// also the leader the move waits for an election first. It runs at most once
// per 10 s, never while a rebuild is in flight, and only to a voter that is
// alive, healthy and named as no VIP's holder (witnesses first).
func (n *Node) shedLeadership(r *raft.Raft, st State, members map[string]Member, now time.Time) {
	if !n.cfg.LeaderAvoidsVIPs || n.busy("shed") {
		return
	}
	n.mu.Lock()
	held, last := len(n.held) > 0, n.lastShed
	n.mu.Unlock()
	if !held || now.Sub(last) < 10*time.Second {
		return
	}
	for _, rb := range st.Rebuilds {
		if active(rb) {
			return
		}
	}
	vs, err := voters(r)
	if err != nil {
		return
	}
	var best *raft.Server
	bestWitness := false
	for i, s := range vs {
		name, gen := parseServerID(s.ID)
		m, ok := members[name]
		if name == n.cfg.Name || !ok || m.Generation != gen || m.State != StateAlive || m.Health == plan.HealthFailing || len(m.VIPs) > 0 || holdsVIP(st, m) {
			continue
		}
		if best == nil || (m.Witness && !bestWitness) || (m.Witness == bestWitness && string(s.ID) < string(best.ID)) {
			best, bestWitness = &vs[i], m.Witness
		}
	}
	if best == nil {
		return
	}
	n.mu.Lock()
	n.lastShed = now
	n.tasks["shed"] = true
	n.mu.Unlock()
	id, addr := best.ID, best.Address
	n.note("leader", fmt.Sprintf("handing leadership to %s: this leader holds a VIP, and a VIP holder that also leads fails over only after an election", id))
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			n.mu.Lock()
			delete(n.tasks, "shed")
			n.mu.Unlock()
		}()
		if err := r.LeadershipTransferToServer(id, addr).Error(); err != nil {
			n.log.Warn("leadership transfer", "to", id, "err", err)
		}
	}()
}

// voters returns the current raft configuration's voters.
func voters(r *raft.Raft) ([]raft.Server, error) {
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	var out []raft.Server
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, s)
		}
	}
	return out, nil
}

// manageVoters makes at most one membership change per tick:
//   - a voter whose slot came back with a higher generation is replaced by it
//     (the old generation is dead and fenced by the rebuild);
//   - voter-eligible live members are added while there are fewer than MaxVoters;
//   - a voter dead for FailureTimeout is swapped for a live eligible
//     member (added first, then removed).
//
// A removal never leaves fewer live voters than the new configuration's quorum.
func (n *Node) manageVoters(r *raft.Raft, members map[string]Member, now time.Time) {
	vs, err := voters(r)
	if err != nil {
		n.log.Warn("voters", "err", err)
		return
	}
	isVoter := map[raft.ServerID]bool{}
	alive := 0
	var dead []raft.Server
	type swap struct {
		old raft.ServerID
		m   Member
	}
	var replaced []swap
	for _, s := range vs {
		isVoter[s.ID] = true
		name, gen := parseServerID(s.ID)
		m, ok := members[name]
		switch {
		case ok && m.Generation == gen && (m.State == StateAlive || m.State == StateSuspect):
			alive++
			if m.State == StateAlive && m.RaftAddr != "" && m.RaftAddr != string(s.Address) {
				// Same node, new raft address (restarted elsewhere): AddVoter
				// with an existing id updates the address.
				if err := r.AddVoter(s.ID, raft.ServerAddress(m.RaftAddr), 0, 5*time.Second).Error(); err != nil {
					n.log.Warn("update voter address", "voter", s.ID, "err", err)
				}
				return
			}
		case ok && m.Generation > gen && m.State == StateAlive && m.Voter && m.RaftAddr != "":
			replaced = append(replaced, swap{s.ID, m})
		case !ok || now.Sub(m.Since) >= n.cfg.FailureTimeout:
			dead = append(dead, s)
		}
	}
	// Removing one voter leaves len(vs)-1; the live ones must still be a majority.
	canRemove := alive >= (len(vs)-1)/2+1
	for _, sw := range replaced {
		if !canRemove {
			break
		}
		newID := serverID(sw.m.Name, sw.m.Generation)
		if isVoter[newID] {
			n.removeVoter(r, sw.old, fmt.Sprintf("slot %s now runs generation %d", sw.m.Name, sw.m.Generation))
		} else {
			n.changeVoters(r, sw.old, sw.m, fmt.Sprintf("slot %s rebuilt as generation %d", sw.m.Name, sw.m.Generation))
		}
		return
	}
	var cands []Member
	for _, m := range members {
		if m.State == StateAlive && m.Voter && m.RaftAddr != "" && !isVoter[serverID(m.Name, m.Generation)] {
			cands = append(cands, m)
		}
	}
	// Spread voters over roles: prefer candidates whose role has the fewest voters.
	perRole := map[string]int{}
	for _, s := range vs {
		name, _ := parseServerID(s.ID)
		if m, ok := members[name]; ok {
			perRole[m.Role]++
		}
	}
	slices.SortFunc(cands, func(a, b Member) int {
		if d := perRole[a.Role] - perRole[b.Role]; d != 0 {
			return d
		}
		return cmpStr(a.Name, b.Name)
	})
	if len(cands) == 0 {
		return
	}
	if len(vs) < n.cfg.MaxVoters {
		n.changeVoters(r, "", cands[0], "voter-eligible member joined")
		return
	}
	if len(dead) > 0 {
		n.changeVoters(r, dead[0].ID, cands[0], fmt.Sprintf("voter %s is dead", dead[0].ID))
	}
}

// manageNonvoters keeps every live member that is not a voter in the raft
// configuration as a non-voter, so that it applies the log (VIP owners,
// fences, rebuilds) like the voters do: a VIP holder that is not a voter
// learns from its own applied log that it holds the VIP. A non-voter whose
// member is dead for FailureTimeout, or whose slot came back with a higher
// generation, is removed. One change per tick.
func (n *Node) manageNonvoters(r *raft.Raft, members map[string]Member, now time.Time) {
	cf := r.GetConfiguration()
	if err := cf.Error(); err != nil {
		n.log.Warn("raft configuration", "err", err)
		return
	}
	inConf := map[raft.ServerID]bool{}
	nonvoters := map[raft.ServerID]bool{}
	for _, s := range cf.Configuration().Servers {
		inConf[s.ID] = true
		if s.Suffrage == raft.Nonvoter {
			nonvoters[s.ID] = true
		}
	}
	n.pacer().setNonvoters(nonvoters)
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		name, gen := parseServerID(s.ID)
		m, ok := members[name]
		gone := !ok || m.Generation > gen ||
			(m.Generation == gen && (m.State == StateDead || m.State == StateLeft) && now.Sub(m.Since) >= n.cfg.FailureTimeout)
		if gone {
			if err := r.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("remove non-voter", "server", s.ID, "err", err)
			}
			return
		}
		if m.Generation == gen && m.State == StateAlive && m.RaftAddr != "" && m.RaftAddr != string(s.Address) {
			if err := r.AddNonvoter(s.ID, raft.ServerAddress(m.RaftAddr), 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("update non-voter address", "server", s.ID, "err", err)
			}
			return
		}
	}
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		m := members[name]
		id := serverID(m.Name, m.Generation)
		if m.State != StateAlive || m.RaftAddr == "" || inConf[id] {
			continue
		}
		if err := r.AddNonvoter(id, raft.ServerAddress(m.RaftAddr), 0, 5*time.Second).Error(); err != nil {
			n.log.Warn("add non-voter", "server", id, "err", err)
		} else {
			n.log.Info("non-voter added", "server", id)
		}
		return
	}
}

func (n *Node) removeVoter(r *raft.Raft, id raft.ServerID, why string) {
	if err := r.RemoveServer(id, 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("remove voter", "voter", id, "err", err)
		return
	}
	if err := n.apply(r, command{Op: opEvent, Kind: "voters", Message: fmt.Sprintf("voter %s removed: %s", id, why)}); err != nil {
		n.log.Warn("record voter change", "err", err)
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// changeVoters adds m as a voter and removes old (if set). The removal of a
// dead voter comes after the addition so the voter count never shrinks; a
// replaced generation is removed first because it shares the slot name.
func (n *Node) changeVoters(r *raft.Raft, old raft.ServerID, m Member, why string) {
	id := serverID(m.Name, m.Generation)
	oldName, _ := parseServerID(old)
	if old != "" && oldName == m.Name {
		if err := r.RemoveServer(old, 0, 5*time.Second).Error(); err != nil {
			n.log.Warn("remove voter", "voter", old, "err", err)
			return
		}
	}
	// Its heartbeats count for the lease from the moment raft adds it; the
	// next manageNonvoters paces it again if the addition fails.
	n.pacer().unpace(id)
	if err := r.AddVoter(id, raft.ServerAddress(m.RaftAddr), 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("add voter", "voter", id, "err", err)
		return
	}
	if old != "" && oldName != m.Name {
		if err := r.RemoveServer(old, 0, 5*time.Second).Error(); err != nil {
			n.log.Warn("remove voter", "voter", old, "err", err)
		}
	}
	msg := fmt.Sprintf("voter %s added: %s", id, why)
	if old != "" {
		msg = fmt.Sprintf("voter %s replaced by %s: %s", old, id, why)
	}
	if err := n.apply(r, command{Op: opEvent, Kind: "voters", Node: m.Name, Message: msg}); err != nil {
		n.log.Warn("record voter change", "err", err)
	}
}

// fenceDead starts one fence task per dead member generation that has no
// confirmed fence record yet. Fencing runs outside the control goroutine.
func (n *Node) fenceDead(ctx context.Context, r *raft.Raft, st State, members map[string]Member, now time.Time) {
	if n.cfg.Provider == nil {
		return
	}
	for _, m := range members {
		wait := n.cfg.FailureTimeout
		if holdsVIP(st, m) {
			wait = min(wait, n.cfg.VIPFenceAfter)
		}
		if m.State != StateDead || now.Sub(m.Since) < wait {
			continue
		}
		key := fmt.Sprintf("%s@%d", m.Name, m.Generation)
		if _, ok := st.Fences[key]; ok {
			continue
		}
		n.mu.Lock()
		busy := n.tasks["fence:"+key]
		if !busy {
			n.tasks["fence:"+key] = true
		}
		n.mu.Unlock()
		if busy {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() {
				n.mu.Lock()
				delete(n.tasks, "fence:"+key)
				n.mu.Unlock()
			}()
			if err := n.fence(ctx, r, m, fmt.Sprintf("dead in gossip for %s", now.Sub(m.Since).Round(time.Second))); err != nil {
				n.log.Warn("fence", "member", key, "err", err)
			}
		}()
	}
}

// rebuiltMachine is the machine that a rebuild in the log cuts off for slot
// name at generation gen, or "" when none names one.
func rebuiltMachine(st State, name string, gen int) providers.MachineID {
	for _, rb := range st.Rebuilds {
		if rb.Name != name {
			continue
		}
		for _, sr := range rb.Steps {
			if sr.Step.Machine != "" && sr.MachineGeneration == gen {
				return sr.Step.Machine
			}
		}
	}
	return ""
}

// holdsVIP reports whether the log names member generation m as a VIP holder.
func holdsVIP(st State, m Member) bool {
	for _, o := range st.VIPs {
		if o.Holder == m.Name && o.Generation == m.Generation {
			return true
		}
	}
	return false
}

// confirmLeader returns nil only if r still leads with a quorum of voters,
// proven by committing a barrier. raft's VerifyLeader is not enough: it
// counts every replication peer's heartbeat acknowledgement, non-voters
// included (hashicorp/raft 1.7), so a stale leader cut off from the other
// voters but still reaching a non-voter passes it. The barrier commits
// only with a majority of voters; otherwise it fails when the leader
// steps down (within the lease) or at timeout.
func confirmLeader(r *raft.Raft, timeout time.Duration) error {
	return r.Barrier(timeout).Error()
}

// fence cuts member m off through the provider and records the confirmed
// fence. It waits FenceDelay×(own slot−1) first and then re-verifies that
// this node still leads, so of two would-be fencers the lower slot acts.
func (n *Node) fence(ctx context.Context, r *raft.Raft, m Member, reason string) error {
	if d := n.cfg.FenceDelay * time.Duration(max(n.cfg.Slot-1, 0)); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	if err := confirmLeader(r, 4*n.cfg.LeaderLeaseTimeout); err != nil {
		return fmt.Errorf("fence %s: not leader after fence delay: %w", m.Name, err)
	}
	vs, err := voters(r)
	if err != nil {
		return err
	}
	if len(vs) == 2 && slices.ContainsFunc(vs, func(s raft.Server) bool { return s.ID == serverID(m.Name, m.Generation) }) {
		// Two voters without a witness: the peer is half the voter set, so
		// "it is dead" and "I am cut off" look the same. Never fence it.
		n.noteOnce("fence-refused:"+m.Name, "fence-refused", fmt.Sprintf("not fencing %s: it is one of two voters and there is no witness", m.Name))
		return nil
	}
	mc, err := findMachine(ctx, n.cfg.Provider, n.cfg.Cluster, m.Name, m.Generation)
	if err != nil {
		return fmt.Errorf("fence %s: %w", m.Name, err)
	}
	rec := FenceRecord{Name: m.Name, Generation: m.Generation, By: n.cfg.Name, Reason: reason}
	if mc == nil {
		rec.Reason += "; machine is gone"
		// A rebuild of the slot may have destroyed it before this fence
		// looked: name the machine it cut off, so the history says which.
		rec.Machine = string(rebuiltMachine(n.LogState(), m.Name, m.Generation))
	} else {
		rec.Machine = string(mc.ID)
		if mc.State != providers.PowerOff {
			fc, ok := n.cfg.Provider.(providers.Fencer)
			if !ok {
				n.noteOnce("fence-refused:"+m.Name, "fence-refused", fmt.Sprintf("not fencing %s: provider cannot fence; its VIPs wait for its self-fence timeout", m.Name))
				return nil
			}
			if err := fc.Fence(ctx, mc.ID); err != nil {
				return fmt.Errorf("fence %s (%s): %w", m.Name, mc.ID, err)
			}
			// Confirm through the inventory, not only the call's success.
			again, err := findMachine(ctx, n.cfg.Provider, n.cfg.Cluster, m.Name, m.Generation)
			if err != nil {
				return fmt.Errorf("confirm fence of %s: %w", m.Name, err)
			}
			if again != nil && again.State != providers.PowerOff {
				return fmt.Errorf("fence of %s not confirmed: provider reports %s", m.Name, again.State)
			}
		} else {
			rec.Reason += "; machine already off"
		}
	}
	rec.At = time.Now().UTC()
	return n.apply(r, command{Op: opFence, Fence: &rec, Node: m.Name})
}

// findMachine returns the machine of name and generation, nil when gone.
func findMachine(ctx context.Context, p providers.Provider, cluster, name string, gen int) (*providers.Machine, error) {
	ms, err := p.List(ctx, cluster)
	if err != nil {
		return nil, fmt.Errorf("list machines of cluster %s: %w", cluster, err)
	}
	for _, m := range ms {
		nm := m.Name
		if nm == "" {
			nm = providers.NodeName(m.Role, m.Slot)
		}
		if nm == name && m.Generation == gen {
			return &m, nil
		}
	}
	return nil, nil
}

// noQuorumTick: without quorum the node changes nothing in the cluster. It
// notes dead peers it is not allowed to act on, and checks the lone-survivor
// condition.
func (n *Node) noQuorumTick(ctx context.Context, r *raft.Raft, now time.Time) {
	n.mu.Lock()
	since, last, had := n.noQuorum, n.lastLone, n.hadQuor
	n.mu.Unlock()
	if !had || n.cfg.LoneSurvivorAfter <= 0 || now.Sub(since) < n.cfg.LoneSurvivorAfter || now.Sub(last) < n.cfg.LoneSurvivorAfter {
		return
	}
	n.mu.Lock()
	n.lastLone = now
	n.mu.Unlock()
	if err := n.loneSurvivor(ctx, r); err != nil {
		n.note("lone-survivor", err.Error())
	}
}

// loneSurvivor resets the voter set to this node when the provider confirms
// every other voter is powered off or gone. Gossip silence is not proof. A
// non-voter (it applies the log too) may do so only when the provider lists
// no other machine of the cluster that is not off: it is then the one
// survivor, and no other node can be resetting the voter set as well.
func (n *Node) loneSurvivor(ctx context.Context, r *raft.Raft) error {
	vs, err := voters(r)
	if err != nil {
		return err
	}
	self := serverID(n.cfg.Name, n.cfg.Generation)
	var others []raft.Server
	for _, s := range vs {
		if s.ID != self {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return nil
	}
	if n.cfg.Provider == nil {
		return fmt.Errorf("refusing lone-survivor recovery: no provider to prove %d other voters are off", len(others))
	}
	var proof []string
	for _, s := range others {
		name, gen := parseServerID(s.ID)
		if m, ok := n.ms.member(name); ok && m.Generation == gen && m.State == StateAlive {
			return fmt.Errorf("refusing lone-survivor recovery: voter %s is alive in gossip", s.ID)
		}
		mc, err := findMachine(ctx, n.cfg.Provider, n.cfg.Cluster, name, gen)
		if err != nil {
			return fmt.Errorf("refusing lone-survivor recovery: %w", err)
		}
		switch {
		case mc == nil:
			proof = append(proof, fmt.Sprintf("%s gone", s.ID))
		case mc.State == providers.PowerOff:
			proof = append(proof, fmt.Sprintf("%s off (%s)", s.ID, mc.ID))
		default:
			return fmt.Errorf("refusing lone-survivor recovery: voter %s is %s according to the provider (%s)", s.ID, mc.State, mc.ID)
		}
	}
	if !n.cfg.Voter {
		ms, err := n.cfg.Provider.List(ctx, n.cfg.Cluster)
		if err != nil {
			return fmt.Errorf("refusing lone-survivor recovery: list machines of cluster %s: %w", n.cfg.Cluster, err)
		}
		for _, m := range ms {
			nm := m.Name
			if nm == "" {
				nm = providers.NodeName(m.Role, m.Slot)
			}
			if (nm != n.cfg.Name || m.Generation != n.cfg.Generation) && m.State != providers.PowerOff {
				return fmt.Errorf("refusing lone-survivor recovery as a non-voter: %s generation %d is %s according to the provider", nm, m.Generation, m.State)
			}
		}
		proof = append(proof, "no other machine of the cluster is running")
	}
	n.note("lone-survivor", fmt.Sprintf("resetting voters to %s; proof: %v", self, proof))
	if err := r.Shutdown().Error(); err != nil {
		return fmt.Errorf("lone survivor: raft shutdown: %w", err)
	}
	s, err := listenTLS(n.raftAddr, n.serverTLS, n.clientTLS)
	if err != nil {
		return fmt.Errorf("lone survivor: %w", err)
	}
	if err := n.startRaft(s, true); err != nil {
		s.Close()
		return err
	}
	nr, _ := n.raft()
	deadline := time.Now().Add(10 * n.cfg.ElectionTimeout)
	for nr.State() != raft.Leader && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(n.cfg.Tick / 4):
		}
	}
	return n.apply(nr, command{Op: opEvent, Kind: "lone-survivor", Node: n.cfg.Name,
		Message: fmt.Sprintf("voter set reset to %s; provider proof: %v", self, proof)})
}
