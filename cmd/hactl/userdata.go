package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/converge/resources"
	"github.com/spf13/cobra"
)

func newUserdataCmd(g *globals) *cobra.Command {
	var (
		configDir, binaryURL, branch, path  string
		remotes, keyFiles, gossipKeys, join []string
	)
	cmd := &cobra.Command{
		Use:   "userdata ROLE --config DIR --remote URL",
		Short: "Print the cloud-init user-data that boots a node of ROLE",
		Long: `userdata prints the #cloud-config user-data a machine boots with: it writes
/etc/hactl/agent.json and the hactl-agent systemd unit, and starts the agent.
The node learns its role from its hostname (ROLE-SLOT); ROLE is checked
against the configuration in DIR, whose cluster name goes into agent.json.

Trusted keys default to the public half of the publish signing key
($XDG_CONFIG_HOME/hactl/signing_key.pub) when it exists.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			lc, err := agent.LangLoader(resources.Builtin())(configDir)
			if err != nil {
				return err
			}
			if lc.Role(role) == nil {
				var names []string
				for _, r := range lc.Roles {
					names = append(names, r.Name)
				}
				return fmt.Errorf("role %q is not declared in %s (roles: %s)", role, configDir, strings.Join(names, ", "))
			}
			if len(remotes) == 0 {
				return errors.New("--remote is required: the git URL(s) agents pull the configuration from")
			}
			if len(keyFiles) == 0 {
				def := defaultSigningKey() + ".pub"
				if _, err := os.Stat(def); err != nil {
					return fmt.Errorf("--trusted-key is required (no %s yet; run hactl publish once to create it)", def)
				}
				keyFiles = []string{def}
			}
			var keys []string
			for _, f := range keyFiles {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("trusted key: %w", err)
				}
				keys = append(keys, strings.TrimSpace(string(b)))
			}
			cfg := agent.Config{
				Cluster: lc.Cluster.Name, Remotes: remotes, Branch: branch, Path: path, TrustedKeys: keys,
				Gossip: agent.GossipConfig{Keys: gossipKeys, Join: join},
			}
			ud, err := agent.RenderUserData(cfg, binaryURL)
			if err != nil {
				return err
			}
			if g.jsonOut {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"role": role, "user_data": string(ud)})
			}
			_, err = g.stdout.Write(ud)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configDir, "config", ".", "configuration directory (HCL)")
	f.StringSliceVar(&remotes, "remote", nil, "git URL of the configuration repository, in order of preference (repeatable)")
	f.StringSliceVar(&keyFiles, "trusted-key", nil, "file holding a trusted SSH public key or armored OpenPGP key (repeatable)")
	f.StringVar(&binaryURL, "binary-url", "", "download the hactl binary from this http(s) URL at boot (append #sha256=HEX to check it); default: the snapshot holds it")
	f.StringVar(&branch, "branch", "", "branch to converge (default main)")
	f.StringVar(&path, "path", "", "subdirectory of the repository holding the HCL (default .)")
	f.StringSliceVar(&gossipKeys, "gossip-key", nil, "base64 gossip encryption key (repeatable; first encrypts)")
	f.StringSliceVar(&join, "join", nil, "gossip address to join at start (repeatable)")
	return cmd
}
