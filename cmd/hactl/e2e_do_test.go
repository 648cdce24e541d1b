package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
	"github.com/hactl/hactl/providers/digitalocean/doemu/localbackend"
	"github.com/hactl/hactl/providers/local"
)

// doE2E is examples/digitalocean applied on an in-process DigitalOcean
// emulator whose droplets are local nodes running the real agent. The
// endpoint, token and reserved IP reach the CLI through its environment
// only (HACTL_VAR_*, DIGITALOCEAN_TOKEN): the nodes, started by the emulator
// in this process, never see them and must use what user-data gave them.
type doE2E struct {
	*e2e
	url, token, rip string
	emuState        string                 // the emulator's local nodes
	api             *digitalocean.Provider // the test's own view of the API
}

func newDOE2E(t *testing.T) *doE2E {
	t.Helper()
	if hactlBin == "" {
		t.Skip("end-to-end tests need the hactl binary (not built with -short)")
	}
	// The emulator outlives the e2e cleanup (registered later, run earlier),
	// whose hactl destroy deletes the droplets through the API.
	d := &doE2E{token: "e2e-do-" + strconv.FormatInt(time.Now().UnixNano(), 36), emuState: t.TempDir()}
	lp, err := local.New(local.Config{StateDir: d.emuState, Logger: slog.New(slog.DiscardHandler),
		Command: func(dir string) []string { return []string{hactlBin, "agent", "--node-dir", dir} }})
	if err != nil {
		t.Fatal(err)
	}
	be := localbackend.New(lp)
	emu := doemu.New(doemu.Config{Token: d.token, Backend: be, ReservedIPBase: localbackend.ReservedIPBase})
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := be.Close(ctx); err != nil {
			t.Logf("destroy emulated droplets: %v", err)
		}
		for _, pid := range procsUnder(d.emuState) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		srv.Close()
	})
	e := newE2E(t, "digitalocean")
	d.e2e = e
	d.url = srv.URL + "/"
	e.extraEnv = []string{"DIGITALOCEAN_TOKEN=" + d.token, "HACTL_VAR_endpoint=" + d.url}
	if d.api, err = digitalocean.NewProvider(digitalocean.Config{Token: d.token, Endpoint: d.url, Region: "ams3",
		Size: "s-1vcpu-1gb", Image: "debian-12-x64", PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.rip, err = d.api.CreateReservedIP(ctx, "ams3"); err != nil {
		t.Fatal(err)
	}
	e.extraEnv = append(e.extraEnv, "HACTL_VAR_reserved_ip="+d.rip)
	return d
}

func (d *doE2E) status() (statusReport, string) {
	out, code := d.run("status", "-json", d.config)
	var rep statusReport
	if code != 0 {
		return rep, fmt.Sprintf("hactl status exited %d", code)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return rep, "status -json: " + err.Error()
	}
	return rep, ""
}

// droplets lists the cluster's droplets as the API shows them, by name.
func (d *doE2E) droplets() (map[string]providers.Machine, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms, err := d.api.List(ctx, "site")
	if err != nil {
		return nil, err
	}
	out := map[string]providers.Machine{}
	for _, m := range ms {
		out[m.Name] = m
	}
	return out, nil
}

func (d *doE2E) vipHolder() (providers.MachineID, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return d.api.VIPHolder(ctx, d.rip)
}

// deleteDroplet destroys a droplet behind the cluster's back, the way a
// person in the control panel would: DELETE /v2/droplets/ID.
func (d *doE2E) deleteDroplet(id providers.MachineID) {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodDelete, d.url+"v2/droplets/"+string(id), nil)
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		d.t.Fatalf("DELETE /v2/droplets/%s: %s", id, resp.Status)
	}
}

// logNodes logs the end of every emulated node's agent log.
func (d *doE2E) logNodes() {
	logs, _ := filepath.Glob(filepath.Join(d.emuState, "site", "nodes", "*", "agent.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		d.t.Logf("%s:\n%s", l, b)
	}
}

// getSite fetches the front page through addr and returns which web node
// served it.
func getSite(addr string) (bool, string) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "served by web-") {
		return false, "status " + resp.Status + ": " + strings.TrimSpace(string(b))
	}
	return true, strings.TrimSpace(string(b))
}

// TestE2E_DigitalOcean_DeletedVIPHolder_RebuiltAndVIPMoved is issue #9 end
// to end: hactl apply builds examples/digitalocean through the emulated DO
// API (droplets are local nodes running the agent); the lb droplet holding
// the reserved IP is deleted through the API behind the cluster's back; the
// leader, with the provider settings user-data gave it, rebuilds the slot
// through the API as a new generation, and the new VIP holder moves the
// reserved IP to its droplet, so the site answers on it again.
// up applies the example and waits until the log names a VIP holder, the
// API shows the reserved IP on that holder's droplet, and the site answers
// on the reserved IP; it returns the holder's droplet.
func (d *doE2E) up() providers.Machine {
	t := d.t
	t.Helper()
	if _, code := d.run("apply", "-auto-approve", d.config); code != 0 {
		d.logNodes()
		t.Fatalf("apply on the emulator: exit %d", code)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.run("events", d.config)
			t.Logf("hactl events:\n%s", out)
			d.logNodes()
		}
	})
	ds, err := d.droplets()
	if err != nil || len(ds) != 4 {
		t.Fatalf("droplets after apply = %v, %v; want web-1, web-2, lb-1, lb-2", ds, err)
	}
	addr := d.rip + ":8000"
	var holderName string
	waitFor(t, 90*time.Second, "a VIP holder in the log whose droplet holds the reserved IP", func() (bool, string) {
		rep, why := d.status()
		if why != "" {
			return false, why
		}
		c := rep.Control
		if c == nil || !c.Quorum || c.Leader == "" {
			return false, "no node reports quorum and a leader"
		}
		holderName = c.VIPs[d.rip]
		if holderName == "" {
			return false, "VIP unassigned in the log"
		}
		ds, err := d.droplets()
		if err != nil {
			return false, err.Error()
		}
		h, err := d.vipHolder()
		if err != nil {
			return false, err.Error()
		}
		if h == "" || h != ds[holderName].ID {
			return false, fmt.Sprintf("log says %s (droplet %s), API says droplet %q", holderName, ds[holderName].ID, h)
		}
		return true, ""
	})
	waitFor(t, 60*time.Second, "the site through the reserved IP "+addr, func() (bool, string) { return getSite(addr) })
	ds, _ = d.droplets()
	return ds[holderName]
}

// vipMovedOff waits until the API shows the reserved IP on a live droplet
// other than old and the site answers on it.
func (d *doE2E) vipMovedOff(old providers.Machine) {
	d.t.Helper()
	waitFor(d.t, 90*time.Second, "reserved IP moved to a live lb droplet and answering", func() (bool, string) {
		h, err := d.vipHolder()
		if err != nil {
			return false, err.Error()
		}
		if h == "" {
			return false, "reserved IP unassigned"
		}
		if h == old.ID {
			return false, "reserved IP still on droplet " + string(old.ID)
		}
		ds, err := d.droplets()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ds {
			if m.ID == h && m.Role == "lb" && m.State == providers.PowerOn {
				return getSite(d.rip + ":8000")
			}
		}
		return false, fmt.Sprintf("reserved IP on droplet %s, not a running lb", h)
	})
}

// slotRebuilt waits until old's slot is a running droplet of a newer
// generation whose agent answers, with 4 droplets in all.
func (d *doE2E) slotRebuilt(old providers.Machine) {
	d.t.Helper()
	waitFor(d.t, 90*time.Second, "slot "+old.Name+" rebuilt through the API as a new generation", func() (bool, string) {
		ds, err := d.droplets()
		if err != nil {
			return false, err.Error()
		}
		n, ok := ds[old.Name]
		if !ok {
			return false, old.Name + " has no droplet"
		}
		if n.ID == old.ID || n.Generation <= old.Generation {
			return false, fmt.Sprintf("%s is droplet %s generation %d", old.Name, n.ID, n.Generation)
		}
		if n.State != providers.PowerOn || len(ds) != 4 {
			return false, fmt.Sprintf("%d droplets; %s is %s", len(ds), old.Name, n.State)
		}
		// its agent answers: it booted from the user-data the leader gave it
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + netJoin(n.Address, agent.DefaultAPIPort) + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, old.Name + " agent: " + resp.Status
		}
		return true, ""
	})
}

func TestE2E_DigitalOcean_DeletedVIPHolder_RebuiltAndVIPMoved(t *testing.T) {
	d := newDOE2E(t)
	old := d.up()
	t.Logf("deleting droplet %s (%s generation %d), the VIP holder", old.ID, old.Name, old.Generation)
	d.deleteDroplet(old.ID)
	deleted := time.Now()
	d.vipMovedOff(old)
	moved := time.Since(deleted)
	d.slotRebuilt(old)
	t.Logf("reserved IP answered %s after its holder was deleted; slot rebuilt %s after", moved.Round(time.Millisecond), time.Since(deleted).Round(time.Millisecond))
	if out, code := d.run("events", d.config); code == 0 {
		t.Logf("hactl events:\n%s", out)
	}

	// The token travelled in user-data secrets, mode 0600, and no node
	// logged it.
	nodes, _ := filepath.Glob(filepath.Join(d.emuState, "site", "nodes", "*"))
	if len(nodes) == 0 {
		t.Fatal("no emulated node directories")
	}
	for _, dir := range nodes {
		sec := filepath.Join(dir, "root", strings.TrimPrefix(agent.DefaultSecretsDir, "/"), secretProviders)
		fi, err := os.Stat(sec)
		if err != nil {
			t.Fatalf("node %s: provider secret: %v", filepath.Base(dir), err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("node %s: %s mode %v, want 0600", filepath.Base(dir), sec, fi.Mode().Perm())
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); bytes.Contains(b, []byte(d.token)) {
				t.Errorf("node %s: %s contains the API token", filepath.Base(dir), l)
			}
		}
	}
}

// powerOff powers a droplet off behind the cluster's back (a crash DO still
// lists): POST /v2/droplets/ID/actions {"type":"power_off"}.
func (d *doE2E) powerOff(id providers.MachineID) {
	d.t.Helper()
	req, err := http.NewRequest(http.MethodPost, d.url+"v2/droplets/"+string(id)+"/actions", strings.NewReader(`{"type":"power_off"}`))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		d.t.Fatalf("power_off droplet %s: %s", id, resp.Status)
	}
}

// TestE2E_DigitalOcean_PoweredOffVIPHolder_Replaced: the VIP holder's
// droplet is powered off through the API (still listed, status "off"); the
// leader replaces it through the API (confirmed fence, delete, create of the
// next generation), the fence is in the log, and the reserved IP moves to a
// running lb.
func TestE2E_DigitalOcean_PoweredOffVIPHolder_Replaced(t *testing.T) {
	d := newDOE2E(t)
	old := d.up()
	t.Logf("powering off droplet %s (%s generation %d), the VIP holder", old.ID, old.Name, old.Generation)
	d.powerOff(old.ID)
	off := time.Now()
	d.vipMovedOff(old)
	moved := time.Since(off)
	d.slotRebuilt(old)
	ds, err := d.droplets()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ds {
		if m.ID == old.ID {
			t.Fatalf("the powered-off droplet %s is still there after its slot was replaced", old.ID)
		}
	}
	out, code := d.run("events", d.config)
	if code != 0 {
		t.Fatal("hactl events failed")
	}
	t.Logf("reserved IP answered %s after its holder was powered off; slot replaced %s after\nhactl events:\n%s",
		moved.Round(time.Millisecond), time.Since(off).Round(time.Millisecond), out)
	if want := fmt.Sprintf("fenced %s generation %d (%s)", old.Name, old.Generation, old.ID); !strings.Contains(out, want) {
		t.Errorf("the history lacks %q", want)
	}
}
