package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseNodeName(t *testing.T) {
	cases := []struct {
		in   string
		role string
		slot int
		bad  bool
	}{
		{in: "web-2", role: "web", slot: 2},
		{in: "db-replica-3", role: "db-replica", slot: 3},
		{in: "lb-10.example.com", role: "lb", slot: 10},
		{in: "web", bad: true},
		{in: "web-", bad: true},
		{in: "-2", bad: true},
		{in: "web-0", bad: true},
		{in: "web-02", bad: true},
		{in: "web-x", bad: true},
		{in: "Web-1", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			role, slot, err := ParseNodeName(tc.in)
			if tc.bad {
				if err == nil {
					t.Errorf("ParseNodeName(%q) = %q, %d; want an error", tc.in, role, slot)
				}
				return
			}
			if err != nil || role != tc.role || slot != tc.slot {
				t.Errorf("ParseNodeName(%q) = %q, %d, %v; want %q, %d", tc.in, role, slot, err, tc.role, tc.slot)
			}
		})
	}
}

func testAgentConfig(t *testing.T) Config {
	t.Helper()
	key, err := GenerateSigningKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Cluster: "demo", Remotes: []string{"http://127.0.0.1:9/config.git", "https://example.com/cfg.git"},
		TrustedKeys: []string{key.PublicKey()}, Interval: Duration(10 * time.Second),
		Gossip: GossipConfig{Keys: []string{"AAAAAAAAAAAAAAAAAAAAAA=="}, Join: []string{"127.0.0.1"}},
	}
}

func TestRenderUserData_RoundTrip(t *testing.T) {
	cfg := testAgentConfig(t)
	ud, err := RenderUserData(cfg, "https://example.com/hactl#sha256="+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	s := string(ud)
	for _, want := range []string{"#cloud-config\n", "path: /etc/hactl/agent.json", "encoding: b64", "permissions: \"0600\"",
		"ExecStart=/usr/local/bin/hactl agent", "Restart=always", "- curl", "sha256sum -c", "- enable"} {
		if !strings.Contains(s, want) {
			t.Errorf("user-data lacks %q:\n%s", want, s)
		}
	}
	got, err := ParseUserData(ud)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cfg.WithDefaults(), got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// Without a binary URL the snapshot is assumed to hold the binary.
	ud, _ = RenderUserData(cfg, "")
	if strings.Contains(string(ud), "curl") {
		t.Errorf("user-data without binary URL downloads something:\n%s", ud)
	}
	if _, err := RenderUserData(Config{Cluster: "x"}, ""); err == nil {
		t.Errorf("RenderUserData accepted a config without remotes and keys")
	}
}

func TestBootNodeDir(t *testing.T) {
	cfg := testAgentConfig(t)
	dir := t.TempDir()
	ud, err := RenderUserData(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]any{"instance-id": "web-2.g3", "local-hostname": "web-2", "local-ipv4": "127.20.30.11",
		"cluster": "demo", "role": "web", "slot": 2, "generation": 3, "provider": "local"}
	mb, _ := json.Marshal(meta)
	os.WriteFile(filepath.Join(dir, "meta-data.json"), mb, 0o644)
	os.WriteFile(filepath.Join(dir, "user-data"), ud, 0o644)

	id, got, err := BootNodeDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Name: "web-2", Role: "web", Slot: 2, Generation: 3, Address: "127.20.30.11",
		Root: filepath.Join(dir, "root"), Cluster: "demo", InstanceID: "web-2.g3"}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(cfg.WithDefaults(), got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(filepath.Join(dir, "root/etc/hactl/agent.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent.json under root: %v, mode %v; want 0600", err, fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "root", UnitPath)); err != nil {
		t.Errorf("unit under root: %v", err)
	}

	// A path escaping the root is refused.
	evil := []byte("#cloud-config\nwrite_files:\n  - path: /../../escape\n    content: x\n")
	if err := ApplyWriteFiles(evil, filepath.Join(dir, "root")); err == nil {
		t.Errorf("ApplyWriteFiles accepted a path leaving the root")
	}
}

func TestParseConfig_Strict(t *testing.T) {
	cfg := testAgentConfig(t)
	b, _ := json.Marshal(cfg)
	if _, err := ParseConfig(b); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	typo := strings.Replace(string(b), `"remotes"`, `"remote"`, 1)
	if _, err := ParseConfig([]byte(typo)); err == nil {
		t.Errorf("config with an unknown field accepted")
	}
	c, err := ParseConfig([]byte(`{"cluster":"d","remotes":["x"],"trusted_keys":["` + cfg.TrustedKeys[0] + `"],"interval":5}`))
	if err != nil || c.Interval.D() != 5*time.Second || c.APIPort != 7480 || c.Branch != "main" || c.Gossip.Port != 7946 || c.Raft.Port != 7947 {
		t.Errorf("defaults/numeric interval: %+v, %v", c, err)
	}
	if _, err := ParseConfig([]byte(`{"cluster":"d","remotes":["x"],"trusted_keys":[]}`)); err == nil {
		t.Errorf("config without trusted keys accepted")
	}
}

func TestDefaultRouteInterface(t *testing.T) {
	p := filepath.Join(t.TempDir(), "route")
	os.WriteFile(p, []byte("Iface\tDestination\tGateway \tFlags\n"+
		"eth1\t0010A8C0\t00000000\t0001\n"+
		"eth0\t00000000\t0100A8C0\t0003\n"), 0o644)
	got, err := defaultRouteInterface(p)
	if err != nil || got != "eth0" {
		t.Errorf("defaultRouteInterface = %q, %v; want eth0", got, err)
	}
	os.WriteFile(p, []byte("Iface\tDestination\n"), 0o644)
	if _, err := defaultRouteInterface(p); err == nil {
		t.Errorf("no default route: want an error")
	}
}

func TestFindGenTag(t *testing.T) {
	var doc any
	json.Unmarshal([]byte(`{"v1":{"local_hostname":"web-2"},"ds":{"meta_data":{"tags":["hactl-cluster:blog","hactl-gen:7"]}}}`), &doc)
	if got := findGenTag(doc); got != 7 {
		t.Errorf("findGenTag = %d, want 7", got)
	}
	json.Unmarshal([]byte(`{"tags":["hactl-gen=x"]}`), &doc)
	if got := findGenTag(doc); got != 0 {
		t.Errorf("findGenTag(bad) = %d, want 0", got)
	}
}
