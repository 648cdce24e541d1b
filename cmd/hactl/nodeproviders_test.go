package main

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

// The CLI's evaluated provider settings and variables reach a node through
// user-data secrets; the node builds a working provider and evaluates the
// configuration with the same variable values.
func TestNodeProviders_SecretRoundTrip(t *testing.T) {
	srv := httptest.NewServer(doemu.New(doemu.Config{Token: "tok-123"}))
	t.Cleanup(srv.Close)
	t.Setenv("DIGITALOCEAN_TOKEN", "tok-123")
	t.Setenv("DIGITALOCEAN_ACCESS_TOKEN", "")
	g := &globals{stdout: io.Discard, stderr: io.Discard, stateDir: t.TempDir(), logger: slog.New(slog.DiscardHandler)}
	w, err := openWorkspace(g, filepath.Join("..", "..", "examples", "digitalocean"),
		map[string]string{"endpoint": srv.URL + "/", "reserved_ip": "127.15.0.10"})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := w.providerSecret()
	if err != nil {
		t.Fatal(err)
	}
	vars, err := w.variablesSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prov, `"token":"tok-123"`) || !strings.Contains(prov, srv.URL) {
		t.Fatalf("provider secret lacks the environment's token or the -var endpoint: %s", prov)
	}

	// a node: its secrets under <root>/etc/hactl/secrets
	root := t.TempDir()
	id := agent.Identity{Name: "lb-1", Role: "lb", Slot: 1, Generation: 1, Root: root}
	sec := filepath.Join(root, agent.DefaultSecretsDir)
	if err := os.MkdirAll(sec, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{secretProviders: prov, secretVariables: vars} {
		if err := os.WriteFile(filepath.Join(sec, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DIGITALOCEAN_TOKEN", "") // the node has no environment token
	ps, cp, err := nodeProviders(agent.Config{Cluster: "site"}, id, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if cp != "do" || len(ps) != 1 {
		t.Fatalf("node providers = %v, cluster provider %q; want do", ps, cp)
	}
	if _, ok := ps["do"].(*digitalocean.Provider); !ok {
		t.Fatalf("provider do is %T", ps["do"])
	}
	if _, err := ps["do"].List(t.Context(), "site"); err != nil {
		t.Fatalf("list through the node's provider (token from the secret): %v", err)
	}
	load, err := nodeLoader(resourceSchemas, agent.Config{Cluster: "site"}, id)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := load(filepath.Join("..", "..", "examples", "digitalocean"))
	if err != nil {
		t.Fatalf("node evaluates the configuration: %v", err)
	}
	if got := lc.Role("lb").VIP.Address; got != "127.15.0.10" {
		t.Fatalf("node's lb VIP address = %q, want the CLI's -var value", got)
	}
}

// Without the secrets (a local cluster) nothing is built and every variable
// takes its default.
func TestNodeProviders_NoSecret(t *testing.T) {
	id := agent.Identity{Name: "web-1", Root: t.TempDir()}
	ps, cp, err := nodeProviders(agent.Config{Cluster: "blog"}, id, slog.New(slog.DiscardHandler))
	if err != nil || ps != nil || cp != "" {
		t.Fatalf("nodeProviders = %v, %q, %v; want nothing", ps, cp, err)
	}
}

func TestBindable(t *testing.T) {
	got := map[string]bool{}
	for _, a := range []string{"127.15.0.10", "127.0.0.1", "203.0.113.7", "10.0.0.5", "lb", ""} {
		got[a] = bindable(a)
	}
	want := map[string]bool{"127.15.0.10": true, "127.0.0.1": true, "203.0.113.7": false, "10.0.0.5": false, "lb": false, "": false}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("bindable (-want +got):\n%s", d)
	}
}
