package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hactl/hactl/providers"
	"github.com/hactl/hactl/providers/digitalocean"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var emuURLRE = regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/)`)

func waitEmuURL(t *testing.T, out func() string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := emuURLRE.FindStringSubmatch(out()); m != nil {
			return m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("emulator never printed its address; output:\n%s", out())
	return ""
}

func TestEmulateCmd_DigitalOcean_API(t *testing.T) {
	out := &lockedBuffer{}
	g := &globals{stdout: out, stderr: io.Discard, stdin: strings.NewReader("")}
	root := newRootCmd(g)
	root.SetArgs([]string{"emulate", "digitalocean", "--backend", "none", "--listen", "127.0.0.1:0", "--token", "tok"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	url := waitEmuURL(t, out.String)
	if !strings.Contains(out.String(), "DIGITALOCEAN_TOKEN=tok") {
		t.Errorf("output does not tell the token:\n%s", out)
	}
	p, err := digitalocean.NewProvider(digitalocean.Config{Token: "tok", Endpoint: url, Size: "s-1vcpu-1gb",
		Image: "debian-12-x64", PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Create(ctx, providers.CreateRequest{Cluster: "c", Role: "web", Slot: 1, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Fence(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("emulate after cancel = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("emulate did not stop after its context ended")
	}
}

// The real binary with the local backend: a droplet becomes a local node
// with the droplet's user_data; stopping the emulator destroys it.
func TestEmulateCmd_DigitalOcean_LocalNodes(t *testing.T) {
	if hactlBin == "" {
		t.Skip("needs the hactl binary (not built with -short)")
	}
	state := t.TempDir()
	cmd := exec.Command(hactlBin, "emulate", "digitalocean", "--listen", "127.0.0.1:0", "--token", "tok", "--state-dir", state)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	out := &lockedBuffer{}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
		}
	}()
	url := waitEmuURL(t, out.String)
	p, err := digitalocean.NewProvider(digitalocean.Config{Token: "tok", Endpoint: url, Size: "s-1vcpu-1gb",
		Image: "debian-12-x64", PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ud := "#cloud-config\n# emulate test\n"
	if _, err := p.Create(ctx, providers.CreateRequest{Cluster: "emu", Role: "web", Slot: 1, Generation: 2, UserData: ud}); err != nil {
		t.Fatal(err)
	}
	nodeDir := filepath.Join(state, "emu", "nodes", "web-1.g2")
	got, err := os.ReadFile(filepath.Join(nodeDir, "user-data"))
	if err != nil || string(got) != ud {
		t.Fatalf("node user-data = %q, %v; want the droplet's %q", got, err, ud)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("emulate exited with %v", err)
	}
	if _, err := os.Stat(nodeDir); !os.IsNotExist(err) {
		t.Fatalf("node directory %s survives the emulator (err %v)", nodeDir, err)
	}
}
