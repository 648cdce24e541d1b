package local

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDiscover_ListsSiblingNodes: the gossip addresses of every node
// directory of the cluster, from meta-data.json; half-written directories
// and other clusters are left out.
func TestDiscover_ListsSiblingNodes(t *testing.T) {
	state := t.TempDir()
	write := func(cluster, id, addr string) {
		dir := filepath.Join(state, cluster, "nodes", id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(MetaData{InstanceID: id, Cluster: cluster, Role: "web", LocalIPv4: addr})
		if err := os.WriteFile(filepath.Join(dir, MetaDataFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("blog", "web-1.g1", "127.40.0.11")
	write("blog", "web-2.g3", "127.40.0.12")
	write("other", "web-1.g1", "127.41.0.11")
	if err := os.MkdirAll(filepath.Join(state, "blog", "nodes", ".tmp-web-3.g1-x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "blog", "nodes", "web-4.g1"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Discover(state, "blog", 7946)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"127.40.0.11:7946", "127.40.0.12:7946"}, got); diff != "" {
		t.Errorf("Discover (-want +got):\n%s", diff)
	}
	none, err := Discover(state, "missing", 7946)(context.Background())
	if err != nil || len(none) != 0 {
		t.Errorf("Discover of a cluster without nodes = %v, %v; want nothing", none, err)
	}
}
