package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ConfigPath is where the agent configuration lives on a machine, relative to
// the node's root ("/" on real machines, <node-dir>/root on local nodes).
const ConfigPath = "/etc/hactl/agent.json"

// Config is the agent's configuration: the JSON file /etc/hactl/agent.json
// that user-data writes on every node. It says where the cluster's
// configuration comes from and whom to trust; it says nothing about the
// node's role (that is the node's identity) nor about what the role runs
// (that is the HCL in the repository).
//
// The zero value is not valid: Cluster, at least one remote and at least one
// trusted key are required (Validate). WithDefaults fills the rest.
type Config struct {
	// Cluster is the cluster name; it must match the cluster block of the HCL.
	Cluster string `json:"cluster"`
	// Remotes are git URLs of the configuration repository, tried in order
	// on every pull: the cluster's repo nodes first, then external origins.
	Remotes []string `json:"remotes"`
	// Branch is the branch whose tip is converged. Default "main".
	Branch string `json:"branch,omitempty"`
	// Path is the subdirectory of the repository that holds the HCL.
	// Default ".".
	Path string `json:"path,omitempty"`
	// TrustedKeys are the keys a commit must be signed with: SSH public keys
	// in authorized_keys format ("ssh-ed25519 AAAA... comment") and/or
	// ASCII-armored OpenPGP public keys. A commit that no key verifies is
	// refused.
	TrustedKeys []string `json:"trusted_keys"`
	// Interval between converge runs. Default 30s.
	Interval Duration `json:"interval,omitempty"`
	// Splay is the upper bound of a random delay added to every interval so
	// that nodes do not pull in lockstep. Default 5s.
	Splay Duration `json:"splay,omitempty"`
	// APIPort is the TCP port of the local API on the node's address.
	// Default 7480.
	APIPort int `json:"api_port,omitempty"`
	// Gossip configures membership (used by the control plane).
	Gossip GossipConfig `json:"gossip"`
	// Raft configures the cluster log (used by the control plane).
	Raft RaftConfig `json:"raft"`
	// SecretsDir holds files resources may read (tokens, keys), relative to
	// the node root. Default /etc/hactl/secrets.
	SecretsDir string `json:"secrets_dir,omitempty"`
	// FetchTimeout bounds one fetch from one remote. Default 20s.
	FetchTimeout Duration `json:"fetch_timeout,omitempty"`
	// VIPs are the virtual IPs the control plane manages: one holder per
	// VIP, chosen through the cluster log among the members of its role; the
	// holder's agent binds Address on each port and forwards TCP connections
	// to the same port on its own address.
	VIPs []VIPConfig `json:"vips,omitempty"`
	// Control is reserved for control-plane settings (cluster.Config
	// overrides); the agent passes it through untouched.
	Control json.RawMessage `json:"control,omitempty"`
	// Secrets are files (name → content) that user-data writes into
	// SecretsDir with mode 0600: the cluster token, the cluster CA
	// (ca.crt, ca.key). They are never part of agent.json and never logged;
	// RenderUserData writes them and ParseUserData reads them back.
	Secrets map[string]string `json:"-"`
}

// Secret file names the CLI delivers and the agent reads.
const (
	SecretClusterToken = "cluster.token" // built-in services' --token-file
	SecretCACert       = "ca.crt"        // cluster CA certificate (raft TLS)
	SecretCAKey        = "ca.key"        // cluster CA key: each node issues its own raft certificate at boot
)

// VIPConfig is one virtual IP of Config.VIPs.
type VIPConfig struct {
	Address string `json:"address"`
	// Role whose members may hold the VIP.
	Role string `json:"role"`
	// Ports the holder forwards from Address to its own address.
	Ports []int `json:"ports,omitempty"`
	// Failback is never (default), immediate or delayed.
	Failback      string   `json:"failback,omitempty"`
	FailbackDelay Duration `json:"failback_delay,omitempty"`
}

// GossipConfig is the membership part of Config.
type GossipConfig struct {
	// Port for memberlist (TCP and UDP). Default 7946.
	Port int `json:"port,omitempty"`
	// Keys is the keyring, base64-encoded AES keys (16, 24 or 32 bytes);
	// the first encrypts, all decrypt.
	Keys []string `json:"keys,omitempty"`
	// Join lists addresses (host or host:port) to join at start.
	Join []string `json:"join,omitempty"`
}

// RaftConfig is the cluster-log part of Config.
type RaftConfig struct {
	// Port for raft over TLS. Default 7947.
	Port int `json:"port,omitempty"`
	// Voter makes the node eligible for the voter set (cluster.Config.Voter);
	// nil leaves the choice to the control plane.
	Voter *bool `json:"voter,omitempty"`
	// BootstrapExpect is cluster.Config.BootstrapExpect (0 = join an
	// existing cluster only). With Voters set and BootstrapExpect 0, a
	// listed node bootstraps with all of Voters.
	BootstrapExpect int `json:"bootstrap_expect,omitempty"`
	// Voters names the voter slots ("lb-1", "mail-1", ...). When set, a node
	// is voter-eligible exactly when its name is listed (a rebuilt slot keeps
	// its vote), and the voter set never grows beyond the list. The CLI
	// chooses them with cluster.VoterSlots. Empty leaves Voter in charge.
	Voters []string `json:"voters,omitempty"`
}

// Defaults used by WithDefaults.
const (
	DefaultBranch       = "main"
	DefaultInterval     = 30 * time.Second
	DefaultSplay        = 5 * time.Second
	DefaultAPIPort      = 7480
	DefaultGossipPort   = 7946
	DefaultRaftPort     = 7947
	DefaultSecretsDir   = "/etc/hactl/secrets"
	DefaultFetchTimeout = 20 * time.Second
)

// WithDefaults returns a copy of c with every unset field at its default.
// It never modifies c.
func (c Config) WithDefaults() Config {
	if c.Branch == "" {
		c.Branch = DefaultBranch // converge the tip of main
	}
	if c.Path == "" {
		c.Path = "." // HCL at the top of the repository
	}
	if c.Interval == 0 {
		c.Interval = Duration(DefaultInterval) // a Puppet-like half minute
	}
	if c.Splay == 0 {
		c.Splay = Duration(DefaultSplay) // spread pulls over 5s
	}
	if c.APIPort == 0 {
		c.APIPort = DefaultAPIPort
	}
	if c.Gossip.Port == 0 {
		c.Gossip.Port = DefaultGossipPort // memberlist's usual port
	}
	if c.Raft.Port == 0 {
		c.Raft.Port = DefaultRaftPort
	}
	if c.SecretsDir == "" {
		c.SecretsDir = DefaultSecretsDir
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = Duration(DefaultFetchTimeout) // one slow remote must not stall the node
	}
	c.Remotes = append([]string(nil), c.Remotes...)
	c.TrustedKeys = append([]string(nil), c.TrustedKeys...)
	c.VIPs = append([]VIPConfig(nil), c.VIPs...)
	c.Raft.Voters = append([]string(nil), c.Raft.Voters...)
	if c.Secrets != nil {
		m := make(map[string]string, len(c.Secrets))
		for k, v := range c.Secrets {
			m[k] = v
		}
		c.Secrets = m
	}
	return c
}

// Validate reports every problem with c (after WithDefaults) at once.
func (c Config) Validate() error {
	var errs []error
	if c.Cluster == "" {
		errs = append(errs, errors.New("cluster is required"))
	}
	if len(c.Remotes) == 0 {
		errs = append(errs, errors.New("remotes: at least one git URL is required"))
	}
	for i, r := range c.Remotes {
		if strings.TrimSpace(r) == "" {
			errs = append(errs, fmt.Errorf("remotes[%d] is empty", i))
		}
	}
	if len(c.TrustedKeys) == 0 {
		errs = append(errs, errors.New("trusted_keys: at least one key is required; the agent never converges unsigned configuration"))
	} else if _, err := ParseTrustedKeys(c.TrustedKeys); err != nil {
		errs = append(errs, err)
	}
	if c.Interval < 0 || c.Splay < 0 || c.FetchTimeout < 0 {
		errs = append(errs, errors.New("interval, splay and fetch_timeout must not be negative"))
	}
	if c.APIPort < 0 || c.APIPort > 65535 {
		errs = append(errs, fmt.Errorf("api_port %d is out of range", c.APIPort))
	}
	for i, k := range c.Gossip.Keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			errs = append(errs, fmt.Errorf("gossip.keys[%d]: want base64 of 16, 24 or 32 bytes", i))
		}
	}
	for name := range c.Secrets {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\") {
			errs = append(errs, fmt.Errorf("secrets: %q is not a plain file name", name))
		}
	}
	for i, v := range c.VIPs {
		if v.Address == "" || v.Role == "" {
			errs = append(errs, fmt.Errorf("vips[%d]: address and role are required", i))
		}
		for _, p := range v.Ports {
			if p <= 0 || p > 65535 {
				errs = append(errs, fmt.Errorf("vips[%d]: port %d is out of range", i, p))
			}
		}
	}
	if strings.HasPrefix(c.Path, "/") || hasDotDot(c.Path) {
		errs = append(errs, fmt.Errorf("path %q must be relative and stay inside the repository", c.Path))
	}
	return errors.Join(errs...)
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

// ParseConfig decodes an agent.json document strictly (unknown fields are
// an error, so a typo does not silently fall back to a default), applies
// defaults and validates it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("decode agent config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid agent config: %w", err)
	}
	return c, nil
}

// LoadConfig reads and parses an agent.json file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read agent config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("30s"); a JSON number is taken as seconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: want a string like \"30s\" or seconds: %w", err)
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
