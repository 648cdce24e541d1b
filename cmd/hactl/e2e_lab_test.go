package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/lab"
)

// labConfig is a three-node web role on the lab provider behind a VIP; each
// node serves its own name at /whoami.txt, so the test sees who answers.
const labConfig = `
cluster "labha" {
  provider = "lab"
  voters   = 3
}

provider "lab" {}

role "web" {
  count = 3

  vip {
    port     = 8080
    failback = "never"
  }

  health "http" {
    type      = "http"
    port      = 8080
    path      = "/healthz"
    interval  = "2s"
    timeout   = "1s"
    threshold = 2
  }

  fencing {
    method = "provider"
    delay  = "2s"
  }

  resource "directory" "www" {
    path = "/srv/www"
    mode = "0755"
  }

  resource "file" "whoami" {
    path       = "/srv/www/whoami.txt"
    content    = node.name
    mode       = "0644"
    depends_on = [directory.www]
  }

  resource "service" "web" {
    name       = "hactl-web"
    command    = ["hactl", "serve", "web", "--root", "${node.dir}/srv/www", "--listen", "${node.address}:8080"]
    depends_on = [file.whoami]
  }
}
`

// newLabE2E is newE2E for a lab cluster from labConfig. It skips unless
// this is root with ip, nft, nsenter and arping (installing them with
// apt-get where missing), and its cleanup also removes every namespace and
// the bridge of the cluster, whatever the test left.
func newLabE2E(t *testing.T) (*e2e, *lab.Provider) {
	t.Helper()
	if hactlBin == "" {
		t.Skip("end-to-end tests need the hactl binary (not built with -short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: the lab provider needs root (network namespaces)")
	}
	if lab.Check() != nil {
		if _, err := exec.LookPath("apt-get"); err == nil {
			if out, err := exec.Command("apt-get", "install", "-y", "-q", "iproute2", "nftables", "iputils-arping", "util-linux").CombinedOutput(); err != nil {
				t.Logf("apt-get install: %v\n%s", err, out)
			}
		}
	}
	if err := lab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	e := &e2e{t: t, state: t.TempDir(), config: filepath.Join(t.TempDir(), "config")}
	if err := os.MkdirAll(e.config, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.config, "cluster.hcl"), []byte(labConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { labCleanup(t, e.state, "labha") })
	t.Cleanup(e.cleanup)
	p, err := lab.New(lab.Config{StateDir: e.state})
	if err != nil {
		t.Fatal(err)
	}
	return e, p
}

// labCleanup removes the namespaces and bridge of cluster that destroy left.
func labCleanup(t *testing.T, state, cluster string) {
	b, err := os.ReadFile(filepath.Join(state, cluster, "net.json"))
	if err != nil {
		return
	}
	var v struct{ A, B int }
	if json.Unmarshal(b, &v) != nil {
		return
	}
	tag := fmt.Sprintf("%02x%02x", v.A, v.B)
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), lab.Prefix+"n-"+tag+"-") || e.Name() == lab.Prefix+"h-"+tag {
			t.Logf("cleanup: removing stray namespace %s", e.Name())
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
	if _, err := os.Stat("/sys/class/net/" + lab.Prefix + "b-" + tag); err == nil {
		t.Logf("cleanup: removing stray bridge %sb-%s", lab.Prefix, tag)
		_ = exec.Command("ip", "link", "del", lab.Prefix+"b-"+tag).Run()
	}
}

// whoami asks the VIP who answers.
func whoami(vip string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + vip + ":8080/whoami.txt")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET whoami.txt through %s: %s", vip, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// vipHolders returns the machines whose namespace has vip on its interface.
func vipHolders(t *testing.T, p *lab.Provider, vip string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms, err := p.List(ctx, "labha")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var out []string
	for _, m := range ms {
		if ok, err := p.VIPHeld(ctx, m.ID, vip); err == nil && ok {
			out = append(out, string(m.ID))
		}
	}
	return out
}

// TestE2E_Lab_PartitionedVIPHolder: three web nodes on the lab provider,
// each in its own network namespace. The VIP holder is cut off from the
// two others with nftables (it still hears the host). After its
// self-fence timeout (10 s) the minority never has the VIP on its
// interface again, the majority moves the VIP and it answers from the host
// through the bridge (gratuitous ARP). After the heal exactly one node
// holds it.
func TestE2E_Lab_PartitionedVIPHolder(t *testing.T) {
	e, p := newLabE2E(t)
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, rep := e.controlReady()
	if !strings.HasPrefix(vip, "10.") {
		t.Fatalf("VIP %s is not on the lab network", vip)
	}
	holder := rep.Control.VIPs[vip]
	h, ok := nodeOf(rep, holder)
	if !ok {
		t.Fatalf("VIP holder %q is not a machine of the cluster", holder)
	}
	waitFor(t, 30*time.Second, "the VIP answers from its holder "+holder, func() (bool, string) {
		who, err := whoami(vip)
		if err != nil {
			return false, err.Error()
		}
		return who == holder, "answered by " + who
	})
	var peers []providers.MachineID
	for _, n := range rep.Nodes {
		if n.Machine != h.Machine {
			peers = append(peers, providers.MachineID(n.Machine))
		}
	}
	if err := p.Partition(t.Context(), providers.MachineID(h.Machine), peers); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("partitioned %s (%s) from %v", holder, h.Machine, peers)

	// Sample until the VIP answers from the majority and for a while
	// after: past the self-fence timeout (10 s) plus a margin for the
	// release, the minority must never have the VIP.
	const selfFence = 10*time.Second + 3*time.Second
	var movedTo string
	var movedAt time.Time
	var prevHeld []string
	deadline := cut.Add(90 * time.Second)
	for {
		now := time.Now()
		held := vipHolders(t, p, vip)
		// Two interfaces with the VIP in two samples in a row (the
		// namespaces are read one after the other, so a move between
		// two reads may show both once).
		if len(held) > 1 && len(prevHeld) > 1 {
			t.Fatalf("%s after the partition the VIP is on %v", now.Sub(cut).Round(time.Millisecond), held)
		}
		prevHeld = held
		if now.After(cut.Add(selfFence)) {
			for _, m := range held {
				if m == h.Machine {
					t.Fatalf("%s after the partition the minority %s still has the VIP on its interface (holders %v)", now.Sub(cut).Round(time.Millisecond), holder, held)
				}
			}
		}
		if movedTo == "" {
			if who, err := whoami(vip); err == nil && who != holder {
				movedTo, movedAt = who, now
				t.Logf("the VIP answered from %s %s after the partition", who, now.Sub(cut).Round(time.Millisecond))
			}
		}
		if movedTo != "" && now.After(cut.Add(selfFence)) && now.After(movedAt.Add(5*time.Second)) {
			break
		}
		if now.After(deadline) {
			t.Fatalf("the VIP did not move to the majority within %s (holders %v)", deadline.Sub(cut), held)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Heal (the minority may have been fenced by the majority meanwhile:
	// then its namespace is gone and there is nothing to heal).
	if err := p.Heal(t.Context(), providers.MachineID(h.Machine)); err != nil {
		t.Errorf("heal %s: %v", h.Machine, err)
	}
	healed := time.Now()
	waitFor(t, 30*time.Second, "one VIP holder after the heal", func() (bool, string) {
		held := vipHolders(t, p, vip)
		return len(held) == 1, fmt.Sprintf("holders %v", held)
	})
	// And it stays one, answering, for a few seconds.
	for time.Since(healed) < 8*time.Second {
		if held := vipHolders(t, p, vip); len(held) != 1 {
			t.Fatalf("%s after the heal the VIP is on %d interfaces: %v", time.Since(healed).Round(time.Millisecond), len(held), held)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := whoami(vip); err != nil {
		t.Errorf("after the heal the VIP does not answer: %v", err)
	}
}

// TestE2E_Lab_ChaosPartition: "hactl chaos run --fault partition" on a lab
// cluster cuts one node off from its peers with nftables, the cluster
// detects it, recovers, and the partition is healed without errors.
func TestE2E_Lab_ChaosPartition(t *testing.T) {
	e, _ := newLabE2E(t)
	e.mustRun("apply", "-auto-approve", e.config)
	t.Cleanup(e.logEvents)
	vip, _ := e.controlReady()
	report := t.TempDir()
	// Exit 1 is expected: no data marker, so the data objective is not
	// measured. The report says what happened.
	e.run("chaos", "run", "-fault", "partition", "-rounds", "1", "-baseline", "2s", "-pause-for", "5s",
		"-round-timeout", "90s", "-probe", "http=http://"+vip+":8080/whoami.txt", "-report", report, e.config)
	b, err := os.ReadFile(filepath.Join(report, "report.json"))
	if err != nil {
		t.Fatalf("chaos report: %v", err)
	}
	var rep struct {
		Rounds []struct {
			Fault     string   `json:"fault"`
			Recovered bool     `json:"recovered"`
			Detection *float64 `json:"detection_seconds"`
			Errors    []string `json:"errors"`
			Victims   []struct {
				Name   string `json:"name"`
				Detail string `json:"detail"`
			} `json:"victims"`
		} `json:"rounds"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("chaos report: %v", err)
	}
	if len(rep.Rounds) != 1 || len(rep.Rounds[0].Victims) != 1 {
		t.Fatalf("chaos report: want one round with one victim:\n%s", b)
	}
	rd := rep.Rounds[0]
	v := rd.Victims[0]
	if rd.Fault != "partition" || !strings.HasPrefix(v.Detail, "partitioned ") {
		t.Errorf("round fault %q, victim detail %q; want a partition", rd.Fault, v.Detail)
	}
	if rd.Detection == nil || !rd.Recovered || len(rd.Errors) > 0 {
		t.Errorf("partition of %s: detected %v, recovered %t, errors %v", v.Name, rd.Detection, rd.Recovered, rd.Errors)
	}
	t.Logf("partition of %s: %s, detected after %.1fs", v.Name, v.Detail, *rd.Detection)
}
