package cluster

import (
	"testing"
	"time"
)

// TestNode_Apply_FollowersLearnCommitAtOnce: with a commit timeout of ten
// minutes (an idle leader tells followers the commit index only that often),
// a record the leader applies still reaches every follower's applied state
// at once, because the leader follows it with a commit marker.
func TestNode_Apply_FollowersLearnCommitAtOnce(t *testing.T) {
	e := newEnv(t)
	nodes := e.startCluster("web", 3, func(c *Config) { c.CommitTimeout = 10 * time.Minute })
	leader := waitLeader(t, nodes)
	// Let bootstrap's own entries settle, so that what follows is the
	// only news the followers can get.
	eventually(t, "every node applied the bootstrap entries", func() bool {
		for _, n := range nodes {
			if !n.Status().Quorum {
				return false
			}
		}
		return true
	})
	if err := leader.Record("test", "web-1", "marker-7f3a"); err != nil {
		t.Fatal(err)
	}
	if err := leader.SetPrimary("maildir", "web-2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every follower applied the event and the primary", func() bool {
		for _, n := range nodes {
			if n == leader {
				continue
			}
			_, f := n.raft()
			if !hasEvent(n.Events(), "marker-7f3a") || f.state().Primaries["maildir"] != "web-2" {
				return false
			}
		}
		return true
	})
}
