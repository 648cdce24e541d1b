package chaos

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/lab"
)

// nftTables lists the nftables tables in the namespace of machine id.
func nftTables(t *testing.T, p *lab.Provider, id providers.MachineID) string {
	t.Helper()
	ns, err := p.Namespace(id)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, "--", "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v: %s", ns, err, out)
	}
	return string(out)
}

// TestInjector_Inject_NetFaultsOnLab: partition and packet-loss on a lab
// node install their nftables rules in its namespace, name the peers, and
// Undo removes them.
func TestInjector_Inject_NetFaultsOnLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: the lab provider needs root")
	}
	if err := lab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := t.TempDir()
	p, err := lab.New(lab.Config{StateDir: dir, Command: func(string) []string { return []string{"sleep", "300"} }})
	if err != nil {
		t.Fatal(err)
	}
	cl := "chaosnet"
	var ms []providers.Machine
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, m := range ms {
			if err := p.Destroy(ctx, m.ID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for slot := 1; slot <= 2; slot++ {
		m, err := p.Create(t.Context(), providers.CreateRequest{Cluster: cl, Role: "web", Slot: slot, Generation: 1})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	in := &Injector{Providers: map[string]providers.Provider{"lab": p}}
	n := Node{Name: "web-1", ClusterName: cl, Provider: "lab", ProviderType: "lab", Machine: ms[0].ID}

	inj, err := in.Inject(t.Context(), FaultPartition, n)
	if err != nil {
		t.Fatalf("Inject(partition): %v", err)
	}
	if !strings.Contains(inj.Detail, "web-2") || inj.Undo == nil {
		t.Errorf("partition: detail %q, undo %v; want web-2 named and an undo", inj.Detail, inj.Undo != nil)
	}
	if got := nftTables(t, p, ms[0].ID); !strings.Contains(got, "hactl_cut") {
		t.Errorf("partition: no cut table in the node's namespace:\n%s", got)
	}
	if err := inj.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := nftTables(t, p, ms[0].ID); strings.Contains(got, "hactl_cut") {
		t.Errorf("cut table left after undo:\n%s", got)
	}

	inj, err = in.Inject(t.Context(), FaultPacketLoss, n)
	if err != nil {
		t.Fatalf("Inject(packet-loss): %v", err)
	}
	if got := nftTables(t, p, ms[0].ID); !strings.Contains(got, "hactl_loss") {
		t.Errorf("packet-loss: no loss table in the node's namespace:\n%s", got)
	}
	if err := inj.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := nftTables(t, p, ms[0].ID); strings.Contains(got, "hactl_loss") {
		t.Errorf("loss table left after undo:\n%s", got)
	}
}
