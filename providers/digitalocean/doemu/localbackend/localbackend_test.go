package localbackend_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
	"github.com/hactl/hactl/providers/digitalocean/doemu/localbackend"
	"github.com/hactl/hactl/providers/local"
)

// The test binary doubles as the node program: "<bin> lb-node <port>" with
// HACTL_NODE_DIR set binds the node's local-ipv4 and serves its user-data.
func TestMain(m *testing.M) {
	if dir := os.Getenv("HACTL_NODE_DIR"); dir != "" && len(os.Args) == 3 && os.Args[1] == "lb-node" {
		md, err := local.ReadMetaData(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		http.HandleFunc("/user-data", func(w http.ResponseWriter, _ *http.Request) {
			b, _ := os.ReadFile(filepath.Join(dir, "user-data"))
			w.Write(b)
		})
		fmt.Fprintln(os.Stderr, http.ListenAndServe(net.JoinHostPort(md.LocalIPv4, os.Args[2]), nil))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestBackend_DropletIsALocalNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	lp, err := local.New(local.Config{StateDir: stateDir, Logger: slog.New(slog.DiscardHandler),
		Command: func(nodeDir string) []string { return []string{exe, "lb-node", port} }})
	if err != nil {
		t.Fatal(err)
	}
	be := localbackend.New(lp)
	t.Cleanup(func() { be.Close(context.Background()) })
	emu := doemu.New(doemu.Config{Token: "t", Backend: be})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	p, err := digitalocean.NewProvider(digitalocean.Config{Token: "t", Endpoint: srv.URL, Size: "s-1vcpu-1gb",
		Image: "ubuntu-24-04-x64", PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var rnd [5]byte
	rand.Read(rnd[:])
	cluster := "lb" + hex.EncodeToString(rnd[:])
	ud := "#cloud-config\nhactl:\n  role: web\n"
	m, err := p.Create(ctx, providers.CreateRequest{Cluster: cluster, Role: "web", Slot: 2, Generation: 3, UserData: ud})
	if err != nil {
		t.Fatal(err)
	}
	var on providers.Machine
	poll(t, "droplet active", func() bool {
		ms, err := p.List(ctx, cluster)
		if err == nil && len(ms) == 1 && ms[0].State == providers.PowerOn {
			on = ms[0]
			return true
		}
		return false
	})
	// the local node carries the droplet's identity
	lms, err := lp.List(ctx, cluster)
	if err != nil || len(lms) != 1 || lms[0].Name != "web-2" || lms[0].Generation != 3 || lms[0].Address != on.Address {
		t.Fatalf("local nodes = %+v, %v; want web-2 gen 3 at the droplet's address %s", lms, err, on.Address)
	}
	get := func() (string, error) {
		resp, err := http.Get("http://" + net.JoinHostPort(on.Address, port) + "/user-data")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	poll(t, "node answers", func() bool { _, err := get(); return err == nil })
	if got, _ := get(); got != ud {
		t.Fatalf("node user-data = %q, want %q", got, ud)
	}
	if err := p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err == nil {
		t.Fatal("node answers right after the droplet was fenced")
	}
	if err := p.PowerOn(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	poll(t, "node answers after power on", func() bool { _, err := get(); return err == nil })
	if err := p.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := get(); err == nil {
		t.Fatal("node answers after the droplet was destroyed")
	}
	if lms, _ := lp.List(ctx, cluster); len(lms) != 0 {
		t.Fatalf("local nodes after destroy = %+v", lms)
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
