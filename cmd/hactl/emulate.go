package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hactl/hactl/providers/digitalocean/doemu"
	"github.com/hactl/hactl/providers/digitalocean/doemu/localbackend"
	"github.com/hactl/hactl/providers/local"
)

// newEmulateCmd serves API emulators so hactl's cloud providers can be used
// without an account.
func newEmulateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "emulate",
		Short: "Run a local emulator of a cloud provider's API",
	}
	cmd.AddCommand(newEmulateDOCmd(g))
	return cmd
}

func newEmulateDOCmd(g *globals) *cobra.Command {
	var (
		listen, token, backend string
		bootDelay, actionDelay time.Duration
		hideNewFor             time.Duration
		dropletLimit           int
	)
	cmd := &cobra.Command{
		Use:   "digitalocean",
		Short: "Serve an emulator of the DigitalOcean API whose droplets are local hactl nodes",
		Long: `Serve the part of the DigitalOcean API v2 that hactl uses (droplets, actions,
reserved IPs, snapshots, tags, SSH keys, account) on --listen. With the
default "local" backend every droplet is booted as a local hactl node (under
--state-dir, default <state dir>/doemu) that receives the droplet's user_data;
power_off and destroy stop it. Point the digitalocean provider at it with
  endpoint = "http://ADDR/"   and   DIGITALOCEAN_TOKEN=<token>.
Faults can be programmed over HTTP (same token):
  POST /_emu/faults {"method":"POST","path":"/v2/droplets","status":503,"after_commit":true}
  POST /_emu/knobs  {"fail_actions":{"power_off":1},"stick_new":1,"hide_new_for":"10s"}
  GET  /_emu/requests
State is in memory: when the emulator stops, it destroys the nodes it booted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if token == "" {
				var b [16]byte
				rand.Read(b[:])
				token = "doemu_" + hex.EncodeToString(b[:])
			}
			cfg := doemu.Config{Token: token, BootDelay: bootDelay, HideNewFor: hideNewFor,
				DropletLimit: dropletLimit, Logger: g.logger}
			if actionDelay > 0 {
				cfg.ActionDelay = map[string]time.Duration{}
				for _, t := range []string{"power_off", "power_on", "shutdown", "reboot", "power_cycle", "snapshot", "assign_ip", "unassign_ip"} {
					cfg.ActionDelay[t] = actionDelay
				}
			}
			var lb *localbackend.Backend
			switch backend {
			case "none":
			case "local":
				dir := g.stateDir
				if dir == "" {
					dir = filepath.Join(local.DefaultStateDir(), "doemu")
				}
				bin, err := local.InstallBinary(dir)
				if err != nil {
					return fmt.Errorf("emulate digitalocean: install node binary: %w", err)
				}
				lp, err := local.New(local.Config{StateDir: dir, Logger: g.logger,
					Command: func(nodeDir string) []string { return []string{bin, "agent", "--node-dir", nodeDir} }})
				if err != nil {
					return fmt.Errorf("emulate digitalocean: %w", err)
				}
				lb = localbackend.New(lp)
				cfg.Backend = lb
				cfg.ReservedIPBase = localbackend.ReservedIPBase
			default:
				return fmt.Errorf("emulate digitalocean: --backend %q: want local or none", backend)
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("emulate digitalocean: %w", err)
			}
			srv := &http.Server{Handler: doemu.New(cfg), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(g.stdout, "DigitalOcean API emulator on http://%s/\n", ln.Addr())
			fmt.Fprintf(g.stdout, "  export DIGITALOCEAN_TOKEN=%s\n", token)
			fmt.Fprintf(g.stdout, "  provider setting: endpoint = \"http://%s/\"\n", ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err = <-errc:
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			if lb != nil {
				if cerr := lb.Close(sctx); cerr != nil {
					g.logger.Warn("emulate digitalocean: destroying nodes", "err", cerr)
				}
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("emulate digitalocean: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8089", "address to serve the API on")
	f.StringVar(&token, "token", "", "bearer token to accept (default: a random one, printed)")
	f.StringVar(&backend, "backend", "local", "what a droplet is: local (a local hactl node) or none (API only)")
	f.DurationVar(&bootDelay, "boot-delay", 0, "how long droplets stay \"new\"")
	f.DurationVar(&actionDelay, "action-delay", 0, "how long droplet and reserved-IP actions stay in-progress")
	f.DurationVar(&hideNewFor, "hide-new-for", 0, "keep new droplets out of lists this long (eventual consistency)")
	f.IntVar(&dropletLimit, "droplet-limit", 25, "account droplet limit")
	return cmd
}
