package digitalocean_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
	"github.com/hactl/hactl/providers/digitalocean/doemu"
	"github.com/hactl/hactl/providers/providertest"
)

// TestMain doubles as the droplet program: ProcessBackend runs this test
// binary as "<bin> doemu-node <port>" with DOEMU_DROPLET_DIR set. The node
// binds the droplet's public IPv4 and serves /healthz and /user-data.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DOEMU_DROPLET_DIR"); dir != "" && len(os.Args) == 3 && os.Args[1] == "doemu-node" {
		os.Exit(runNode(dir, os.Args[2]))
	}
	os.Exit(m.Run())
}

func runNode(dir, port string) int {
	var md struct {
		IPv4 string `json:"ipv4"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "meta-data.json"))
	if err == nil {
		err = json.Unmarshal(b, &md)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/user-data", func(w http.ResponseWriter, _ *http.Request) {
		ud, _ := os.ReadFile(filepath.Join(dir, "user-data"))
		w.Write(ud)
	})
	if err := http.ListenAndServe(net.JoinHostPort(md.IPv4, port), mux); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		return 1
	}
	return 0
}

// procEnv is an emulator whose droplets are real processes on 127.3.X.0/24
// (the local provider never uses 127.A.x.x with A < 16).
type procEnv struct {
	*env
	port    string
	backend *doemu.ProcessBackend
}

func newProcEnv(t *testing.T, emuCfg doemu.Config) *procEnv {
	t.Helper()
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
	be := &doemu.ProcessBackend{Dir: t.TempDir(), Command: func(dir string, d doemu.Droplet) []string {
		return []string{exe, "doemu-node", port}
	}}
	t.Cleanup(func() { be.Close() })
	emuCfg.Backend = be
	emuCfg.IPv4Base = netip.AddrFrom4([4]byte{127, 3, byte(1 + rand.IntN(250)), 10})
	e := newEnv(t, emuCfg, nil)
	return &procEnv{env: e, port: port, backend: be}
}

func (pe *procEnv) probe(ctx context.Context, m providers.Machine) error {
	if m.Address == "" {
		// A droplet has no address until it is active; a cloud user would
		// look it up, and so does the probe.
		ms, err := pe.p.List(ctx, m.Cluster)
		if err != nil {
			return err
		}
		for _, x := range ms {
			if x.ID == m.ID {
				m = x
			}
		}
		if m.Address == "" {
			return errors.New("no address yet")
		}
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+net.JoinHostPort(m.Address, pe.port)+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

func TestProvider_RealProcesses(t *testing.T) {
	pe := newProcEnv(t, doemu.Config{BootDelay: 50 * time.Millisecond})
	ctx := ctxT(t)
	r := req("web", 1, 1)
	r.UserData = "#cloud-config\nwrite_files:\n- path: /etc/hactl/role\n  content: web\n"
	m, err := pe.p.Create(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	var on providers.Machine
	eventually(t, "droplet active with an address", func() bool {
		ms, err := pe.p.List(ctx, "blog")
		if err == nil && len(ms) == 1 && ms[0].State == providers.PowerOn {
			on = ms[0]
			return true
		}
		return false
	})
	eventually(t, "node answers", func() bool { return pe.probe(ctx, on) == nil })
	resp, err := http.Get("http://" + net.JoinHostPort(on.Address, pe.port) + "/user-data")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != r.UserData {
		t.Fatalf("the node received user-data %q, want %q", got, r.UserData)
	}

	if err := pe.p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := pe.probe(ctx, on); err == nil {
		t.Fatal("node still answers right after Fence returned")
	}
	if err := pe.p.PowerOn(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node answers after power on", func() bool { return pe.probe(ctx, on) == nil })

	dir := filepath.Join(pe.backend.Dir, "droplet-"+string(m.ID))
	if err := pe.p.Destroy(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := pe.probe(ctx, on); err == nil {
		t.Fatal("node still answers after Destroy")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("droplet directory %s still exists after Destroy (err %v)", dir, err)
	}
}

func TestProvider_Conformance(t *testing.T) {
	var pe *procEnv
	providertest.RunConformance(t, func(t *testing.T) providers.Provider {
		pe = newProcEnv(t, doemu.Config{
			BootDelay: 50 * time.Millisecond, HideNewFor: 200 * time.Millisecond,
			ActionDelay: map[string]time.Duration{"power_off": 50 * time.Millisecond, "assign_ip": 50 * time.Millisecond},
		})
		return pe.p
	}, providertest.Options{
		Probe: func(ctx context.Context, m providers.Machine) error { return pe.probe(ctx, m) },
		VIP: func(t *testing.T, p providers.Provider, cluster string) string {
			ip, err := p.(*digitalocean.Provider).CreateReservedIP(ctxT(t), "nyc3")
			if err != nil {
				t.Fatal(err)
			}
			return ip
		},
		Timeout: 30 * time.Second,
		Poll:    20 * time.Millisecond,
	})
}
