package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/converge/resources"
	"github.com/hactl/hactl/lang"
	"github.com/spf13/cobra"
)

// userdataFlags are the overrides of hactl userdata: each one set replaces
// the matching part of the user-data apply would give.
type userdataFlags struct {
	configDir, binaryURL, branch, path  string
	remotes, keyFiles, gossipKeys, join []string
	vars                                []string
	standalone                          bool
}

func newUserdataCmd(g *globals) *cobra.Command {
	var f userdataFlags
	cmd := &cobra.Command{
		Use:   "userdata ROLE [DIR]",
		Short: "Print the cloud-init user-data that boots a node of ROLE",
		Long: `userdata prints the #cloud-config user-data a machine boots with: it writes
/etc/hactl/agent.json, the cluster's secrets and the hactl-agent systemd unit,
and starts the agent. It is the user-data apply gives the machines it creates:
the remotes to pull from, the cluster's signing key to trust, the gossip key
and the addresses to join, the raft voters, the VIPs, and the cluster token
and CA. The node learns its role from its hostname (ROLE-SLOT); ROLE is
checked against the configuration in DIR (default ".", or --config).

The output holds the cluster's secrets: keep it as private as the secrets
directory (a warning says so on stderr). The secrets are those apply created
under the state directory; when they do not exist yet, run apply first.

--remote, --trusted-key, --gossip-key, --join, --branch, --path and
--binary-url replace the matching part (a machine elsewhere cannot pull from
this machine's origin repository, for one).

--standalone renders an agent without the control plane instead (no secrets,
voters or VIPs; --remote and --trusted-key required, the trusted key
defaulting to $XDG_CONFIG_HOME/hactl/signing_key.pub from hactl publish): the
node converges its role but does not join a cluster.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				if cmd.Flags().Changed("config") && f.configDir != args[1] {
					return fmt.Errorf("userdata: the configuration is given twice (--config %s and %s)", f.configDir, args[1])
				}
				f.configDir = args[1]
			}
			var ud []byte
			var err error
			if f.standalone {
				ud, err = standaloneUserData(args[0], &f)
			} else {
				ud, err = clusterUserData(g, cmd, args[0], &f)
			}
			if err != nil {
				return err
			}
			if g.jsonOut {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"role": args[0], "user_data": string(ud)})
			}
			_, err = g.stdout.Write(ud)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configDir, "config", ".", "configuration directory (HCL); also the optional DIR argument")
	fl.StringArrayVar(&f.vars, "var", nil, "set an input variable, NAME=VALUE (repeatable)")
	fl.StringSliceVar(&f.remotes, "remote", nil, "git URL of the configuration repository, in order of preference (repeatable; replaces the cluster's)")
	fl.StringSliceVar(&f.keyFiles, "trusted-key", nil, "file holding a trusted SSH public key or armored OpenPGP key (repeatable; replaces the cluster's signing key)")
	fl.StringVar(&f.binaryURL, "binary-url", "", "download the hactl binary from this http(s) URL at boot (append #sha256=HEX to check it); default: the snapshot holds it")
	fl.StringVar(&f.branch, "branch", "", "branch to converge (default main)")
	fl.StringVar(&f.path, "path", "", "subdirectory of the repository holding the HCL (default .)")
	fl.StringSliceVar(&f.gossipKeys, "gossip-key", nil, "base64 gossip encryption key (repeatable; first encrypts; replaces the cluster's)")
	fl.StringSliceVar(&f.join, "join", nil, "gossip address to join at start (repeatable; replaces the cluster's current members)")
	fl.BoolVar(&f.standalone, "standalone", false, "render an agent without the control plane (no secrets, voters or VIPs)")
	return cmd
}

// clusterUserData renders what apply gives a new machine of role: the
// workspace's user-data with the cluster's secrets, the current members to
// join, the voters and the VIPs; then the flags' overrides.
func clusterUserData(g *globals, cmd *cobra.Command, role string, f *userdataFlags) ([]byte, error) {
	vm, err := validateParseVars(f.vars)
	if err != nil {
		return nil, err
	}
	w, err := openWorkspace(g, f.configDir, vm)
	if err != nil {
		return nil, err
	}
	if w.cfg.Role(role) == nil {
		return nil, undeclaredRole(role, f.configDir, w.cfg.Roles)
	}
	if err := w.secretsExist(); err != nil {
		return nil, err
	}
	sec, err := w.loadSecrets(false)
	if err != nil {
		return nil, fmt.Errorf("userdata: %w", err)
	}
	obs, err := w.observe(cmd.Context())
	if err != nil {
		return nil, err
	}
	s, err := w.userData(sec, obs)(role, 0, 0)
	if err != nil {
		return nil, err
	}
	ud := []byte(s)
	fl := cmd.Flags()
	overridden := false
	for _, n := range []string{"remote", "trusted-key", "binary-url", "branch", "path", "gossip-key", "join"} {
		overridden = overridden || fl.Changed(n)
	}
	if overridden {
		cfg, err := agent.ParseUserData(ud)
		if err != nil {
			return nil, fmt.Errorf("userdata: read back the rendered user-data: %w", err)
		}
		if fl.Changed("remote") {
			cfg.Remotes = f.remotes
		}
		if fl.Changed("trusted-key") {
			if cfg.TrustedKeys, err = readKeys(f.keyFiles); err != nil {
				return nil, err
			}
		}
		if fl.Changed("gossip-key") {
			cfg.Gossip.Keys = f.gossipKeys
		}
		if fl.Changed("join") {
			cfg.Gossip.Join = f.join
		}
		if f.branch != "" {
			cfg.Branch = f.branch
		}
		if f.path != "" {
			cfg.Path = f.path
		}
		if ud, err = agent.RenderUserData(cfg, f.binaryURL); err != nil {
			return nil, err
		}
	}
	cfg, err := agent.ParseUserData(ud)
	if err != nil {
		return nil, fmt.Errorf("userdata: read back the rendered user-data: %w", err)
	}
	held := []string{"the gossip key"}
	for _, n := range slices.Sorted(maps.Keys(cfg.Secrets)) {
		held = append(held, n)
	}
	fmt.Fprintf(g.stderr, "warning: this user-data holds the secrets of cluster %s (%s): anyone who reads it can join the cluster; keep it private\n",
		w.cfg.Cluster.Name, strings.Join(held, ", "))
	return ud, nil
}

// secretsExist says which of the cluster's secrets are missing and how to
// create them, before loadSecrets (which does not create them here) fails on
// the first.
func (w *workspace) secretsExist() error {
	dir := filepath.Join(w.clusterDir(), "secrets")
	var missing []string
	onlyKeygen := true // every missing file is one hactl keygen writes
	for _, n := range []string{"signing_key", "gossip.key", agent.SecretClusterToken, agent.SecretCACert, agent.SecretCAKey} {
		if _, err := os.Stat(filepath.Join(dir, n)); errors.Is(err, os.ErrNotExist) {
			missing = append(missing, n)
			if n == "signing_key" || n == agent.SecretClusterToken {
				onlyKeygen = false
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	how := fmt.Sprintf("run `hactl apply %s` first, which creates them", w.dir)
	if onlyKeygen {
		how += fmt.Sprintf(", or `hactl keygen -out %s -cluster %s`", dir, w.cfg.Cluster.Name)
	}
	return fmt.Errorf("userdata: cluster %s has no secrets yet in %s (missing %s): %s; --standalone renders an agent without the control plane",
		w.cfg.Cluster.Name, dir, strings.Join(missing, ", "), how)
}

// standaloneUserData renders an agent that pulls and converges its role
// but runs no control plane: what hactl userdata gave before the cluster had
// one.
func standaloneUserData(role string, f *userdataFlags) ([]byte, error) {
	lc, err := agent.LangLoader(resources.Builtin())(f.configDir)
	if err != nil {
		return nil, err
	}
	if lc.Role(role) == nil {
		return nil, undeclaredRole(role, f.configDir, lc.Roles)
	}
	if len(f.remotes) == 0 {
		return nil, errors.New("--remote is required with --standalone: the git URL(s) agents pull the configuration from")
	}
	files := f.keyFiles
	if len(files) == 0 {
		def := defaultSigningKey() + ".pub"
		if _, err := os.Stat(def); err != nil {
			return nil, fmt.Errorf("--trusted-key is required (no %s yet; run hactl publish once to create it)", def)
		}
		files = []string{def}
	}
	keys, err := readKeys(files)
	if err != nil {
		return nil, err
	}
	cfg := agent.Config{
		Cluster: lc.Cluster.Name, Remotes: f.remotes, Branch: f.branch, Path: f.path, TrustedKeys: keys,
		Gossip: agent.GossipConfig{Keys: f.gossipKeys, Join: f.join},
	}
	return agent.RenderUserData(cfg, f.binaryURL)
}

func undeclaredRole(role, dir string, declared []*lang.Role) error {
	var names []string
	for _, r := range declared {
		names = append(names, r.Name)
	}
	return fmt.Errorf("role %q is not declared in %s (roles: %s)", role, dir, strings.Join(names, ", "))
}

func readKeys(files []string) ([]string, error) {
	var keys []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("trusted key: %w", err)
		}
		keys = append(keys, strings.TrimSpace(string(b)))
	}
	return keys, nil
}
