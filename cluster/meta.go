package cluster

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hactl/hactl/plan"
)

// metaLimit is memberlist's MetaMaxSize.
const metaLimit = 512

// nodeMeta is what a node gossips about itself. Short JSON keys keep it
// well under 512 bytes.
type nodeMeta struct {
	Role       string      `json:"r,omitempty"`
	Slot       int         `json:"s,omitempty"`
	Generation int         `json:"g,omitempty"`
	Revision   string      `json:"c,omitempty"`
	Health     plan.Health `json:"h,omitempty"`
	RaftAddr   string      `json:"a,omitempty"`
	Voter      bool        `json:"v,omitempty"`
	Witness    bool        `json:"w,omitempty"`
	// Formed is true once the node belongs to a raft cluster (it has raft
	// state); a fresh node never bootstraps while a formed member is alive.
	Formed bool `json:"f,omitempty"`
	// VIPs this node has bound right now.
	VIPs []string `json:"p,omitempty"`
}

func (m nodeMeta) encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode node meta: %w", err)
	}
	if len(b) > metaLimit {
		return nil, fmt.Errorf("node meta is %d bytes, limit %d", len(b), metaLimit)
	}
	return b, nil
}

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode node meta: %w", err)
	}
	return m, nil
}

func (m nodeMeta) equal(o nodeMeta) bool {
	return m.Role == o.Role && m.Slot == o.Slot && m.Generation == o.Generation && m.Revision == o.Revision &&
		m.Health == o.Health && m.RaftAddr == o.RaftAddr && m.Voter == o.Voter && m.Witness == o.Witness &&
		m.Formed == o.Formed && slices.Equal(m.VIPs, o.VIPs)
}
