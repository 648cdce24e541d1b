package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestConfirmLeader_StaleLeaderWithNonvoterRefused: a leader cut off from
// the other voters but still reaching a non-voter must not pass the check
// that guards fencing. raft's VerifyLeader counts the non-voter's heartbeat
// acknowledgement towards the quorum and passes here.
func TestConfirmLeader_StaleLeaderWithNonvoterRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	voters := e.startCluster("db", 3, func(c *Config) { c.FailureTimeout = time.Hour })
	c := e.fastConfig("web-1", "web", 1, 1)
	c.Voter, c.FailureTimeout = false, time.Hour
	nv := e.start(c)
	l := waitLeader(t, append(slices.Clone(voters), nv))
	r, _ := l.raft()
	eventually(t, "web-1 to be a non-voter with the log", func() bool {
		cf := r.GetConfiguration()
		if cf.Error() != nil {
			return false
		}
		for _, s := range cf.Configuration().Servers {
			if s.ID == serverID("web-1", 1) {
				return s.Suffrage == raft.Nonvoter && nv.Status().Leader != ""
			}
		}
		return false
	})
	if err := confirmLeader(r, 5*time.Second); err != nil {
		t.Fatalf("leader with its voters: %v", err)
	}
	var rest []string
	for _, v := range voters {
		if v != l {
			rest = append(rest, v.Name())
		}
	}
	e.net.Partition([]string{l.Name(), nv.Name()}, rest)
	start := time.Now()
	err := confirmLeader(r, 5*time.Second)
	if err == nil {
		t.Fatalf("a leader cut off from every other voter, reaching only a non-voter, was confirmed")
	}
	t.Logf("refused after %s: %v", time.Since(start).Round(time.Millisecond), err)
}
