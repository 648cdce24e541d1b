package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hactl/hactl/providers"
)

// LossPercent is the share of packets, in each direction, that the
// packet-loss fault drops.
const LossPercent = 30

// injectNet injects a network fault through a providers.NetFaulter (the lab
// provider): partition cuts the node off from every other running machine of
// its cluster (the host, where chaos probes from, still reaches it), and
// packet-loss drops LossPercent of its packets. Both are in force when
// injectNet returns (the provider installed the rules); Undo heals, and the
// runner calls it after PauseFor, like a pause.
func (in *Injector) injectNet(ctx context.Context, k FaultKind, n Node, p providers.Provider, inj *Injected) (*Injected, error) {
	nf, ok := p.(providers.NetFaulter)
	if !ok {
		return nil, fmt.Errorf("fault %s on %s: provider type %s has no network faults", k, n.Name, n.ProviderType)
	}
	switch k {
	case FaultPartition:
		ms, err := p.List(ctx, n.Cluster())
		if err != nil {
			return nil, fmt.Errorf("partition %s: list peers: %w", n.Name, err)
		}
		var peers []providers.MachineID
		var names []string
		for _, m := range ms {
			if m.ID != n.Machine && m.State == providers.PowerOn {
				peers = append(peers, m.ID)
				names = append(names, m.Name)
			}
		}
		if len(peers) == 0 {
			return nil, fmt.Errorf("partition %s: no running peer to cut it off from", n.Name)
		}
		if err := nf.Partition(ctx, n.Machine, peers); err != nil {
			return nil, fmt.Errorf("partition %s (%s): %w", n.Name, n.Machine, err)
		}
		inj.Detail = fmt.Sprintf("partitioned %s from %s", n.Machine, strings.Join(names, ","))
	case FaultPacketLoss:
		if err := nf.DropShare(ctx, n.Machine, LossPercent); err != nil {
			return nil, fmt.Errorf("packet loss on %s (%s): %w", n.Name, n.Machine, err)
		}
		inj.Detail = fmt.Sprintf("dropping %d%% of the packets of %s", LossPercent, n.Machine)
	default:
		return nil, fmt.Errorf("fault %s is not a network fault", k)
	}
	id := n.Machine
	inj.Undo = func() error {
		// The runner heals after the round's context may be gone.
		ctx, cancel := context.WithTimeout(context.Background(), in.confirmTimeout())
		defer cancel()
		if err := nf.Heal(ctx, id); err != nil {
			return fmt.Errorf("heal %s after %s: %w", n.Name, k, err)
		}
		return nil
	}
	return inj, nil
}

func (in *Injector) confirmTimeout() time.Duration {
	if in.ConfirmTimeout > 0 {
		return in.ConfirmTimeout
	}
	return 30 * time.Second
}
