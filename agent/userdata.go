package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Paths user-data writes on a machine.
const (
	UnitPath   = "/etc/systemd/system/hactl-agent.service"
	BinaryPath = "/usr/local/bin/hactl"
)

// CloudConfig is the subset of cloud-init's #cloud-config that hactl writes
// and reads.
type CloudConfig struct {
	WriteFiles []WriteFile `yaml:"write_files,omitempty"`
	RunCmd     [][]string  `yaml:"runcmd,omitempty"`
}

// WriteFile is one cloud-init write_files entry.
type WriteFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Encoding    string `yaml:"encoding,omitempty"` // "", "b64" or "base64"
	Permissions string `yaml:"permissions,omitempty"`
	Owner       string `yaml:"owner,omitempty"`
}

const agentUnit = `[Unit]
Description=hactl node agent
Documentation=https://github.com/hactl/hactl/blob/main/docs/agent.md
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/bin/hactl agent
Restart=always
RestartSec=2
KillMode=process
Environment=HACTL_LOG_LEVEL=info

[Install]
WantedBy=multi-user.target
`

// RenderUserData renders the #cloud-config user-data that boots a node: it
// writes /etc/hactl/agent.json (base64, mode 0600) and the systemd unit
// hactl-agent.service (ExecStart=/usr/local/bin/hactl agent, Restart=always),
// then runcmd enables and starts the unit. When binaryURL is not "", runcmd
// first downloads the binary to /usr/local/bin/hactl (and checks it when the
// URL carries a "#sha256=HEX" fragment); else the snapshot must hold it.
//
// KillMode=process: stopping or restarting the agent leaves the services it
// supervises running (they are systemd units of their own on machines).
func RenderUserData(cfg Config, binaryURL string) ([]byte, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	cc := CloudConfig{
		WriteFiles: []WriteFile{
			{Path: ConfigPath, Content: base64.StdEncoding.EncodeToString(append(js, '\n')), Encoding: "b64", Permissions: "0600", Owner: "root:root"},
			{Path: UnitPath, Content: agentUnit, Permissions: "0644", Owner: "root:root"},
		},
	}
	names := make([]string, 0, len(cfg.Secrets))
	for name := range cfg.Secrets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cc.WriteFiles = append(cc.WriteFiles, WriteFile{Path: path.Join(cfg.SecretsDir, name),
			Content: base64.StdEncoding.EncodeToString([]byte(cfg.Secrets[name])), Encoding: "b64", Permissions: "0600", Owner: "root:root"})
	}
	if binaryURL != "" {
		u, err := url.Parse(binaryURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, fmt.Errorf("render user-data: binary URL %q must be http(s)", binaryURL)
		}
		sum := ""
		if f, ok := strings.CutPrefix(u.Fragment, "sha256="); ok {
			if len(f) != 64 || strings.Trim(strings.ToLower(f), "0123456789abcdef") != "" {
				return nil, fmt.Errorf("render user-data: binary URL fragment sha256=%q is not a hex SHA-256", f)
			}
			sum = strings.ToLower(f)
		}
		u.Fragment = ""
		tmp := BinaryPath + ".download"
		cc.RunCmd = append(cc.RunCmd, []string{"curl", "-fsSL", "--retry", "5", "-o", tmp, u.String()})
		if sum != "" {
			cc.RunCmd = append(cc.RunCmd, []string{"sh", "-c", fmt.Sprintf("echo '%s  %s' | sha256sum -c -", sum, tmp)})
		}
		cc.RunCmd = append(cc.RunCmd,
			[]string{"chmod", "0755", tmp},
			[]string{"mv", "-f", tmp, BinaryPath})
	}
	cc.RunCmd = append(cc.RunCmd,
		[]string{"systemctl", "daemon-reload"},
		[]string{"systemctl", "enable", "--now", "hactl-agent.service"})
	body, err := yaml.Marshal(cc)
	if err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	return append([]byte("#cloud-config\n"), body...), nil
}

// parseCloudConfig decodes #cloud-config user-data.
func parseCloudConfig(data []byte) (CloudConfig, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("#cloud-config")) {
		return CloudConfig{}, errors.New("user-data is not #cloud-config")
	}
	var cc CloudConfig
	if err := yaml.Unmarshal(data, &cc); err != nil {
		return CloudConfig{}, fmt.Errorf("user-data: %w", err)
	}
	return cc, nil
}

func (w WriteFile) decoded() ([]byte, error) {
	switch w.Encoding {
	case "":
		return []byte(w.Content), nil
	case "b64", "base64":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(w.Content))
		if err != nil {
			return nil, fmt.Errorf("user-data write_files %s: %w", w.Path, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("user-data write_files %s: unsupported encoding %q", w.Path, w.Encoding)
}

// ParseUserData reads the agent configuration back out of user-data made by
// RenderUserData, with the secrets it writes into the configuration's
// SecretsDir.
func ParseUserData(data []byte) (Config, error) {
	cc, err := parseCloudConfig(data)
	if err != nil {
		return Config{}, err
	}
	for _, w := range cc.WriteFiles {
		if w.Path != ConfigPath {
			continue
		}
		b, err := w.decoded()
		if err != nil {
			return Config{}, err
		}
		cfg, err := ParseConfig(b)
		if err != nil {
			return Config{}, err
		}
		for _, sw := range cc.WriteFiles {
			if path.Dir(sw.Path) != path.Clean(cfg.SecretsDir) {
				continue
			}
			b, err := sw.decoded()
			if err != nil {
				return Config{}, err
			}
			if cfg.Secrets == nil {
				cfg.Secrets = map[string]string{}
			}
			cfg.Secrets[path.Base(sw.Path)] = string(b)
		}
		return cfg, nil
	}
	return Config{}, fmt.Errorf("user-data has no write_files entry for %s", ConfigPath)
}

// ApplyWriteFiles does what cloud-init does with write_files, under root:
// each file is written atomically at root+path with its permissions. root "/"
// writes the real paths. Paths that would leave root are refused. Ownership
// is not changed (local nodes run unprivileged).
func ApplyWriteFiles(data []byte, root string) error {
	cc, err := parseCloudConfig(data)
	if err != nil {
		return err
	}
	for _, w := range cc.WriteFiles {
		dst, err := underRoot(root, w.Path)
		if err != nil {
			return fmt.Errorf("user-data write_files: %w", err)
		}
		b, err := w.decoded()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if w.Permissions != "" {
			m, err := strconv.ParseUint(w.Permissions, 8, 32)
			if err != nil {
				return fmt.Errorf("user-data write_files %s: permissions %q: %w", w.Path, w.Permissions, err)
			}
			mode = os.FileMode(m) & os.ModePerm
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("user-data write_files %s: %w", w.Path, err)
		}
		if err := writeFileAtomic(dst, b, mode); err != nil {
			return fmt.Errorf("user-data write_files %s: %w", w.Path, err)
		}
	}
	return nil
}

// BootNodeDir is the local provider's boot path: it reads DIR/meta-data.json
// and DIR/user-data, applies write_files under DIR/root (so the agent config
// lands at DIR/root/etc/hactl/agent.json) and returns the node's identity and
// agent configuration. runcmd is not run on local nodes: the binary is the
// one that is running, and there is no systemd to enable.
func BootNodeDir(dir string) (Identity, Config, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return Identity{}, Config{}, fmt.Errorf("node dir: %w", err)
	}
	id, err := readNodeMeta(dir)
	if err != nil {
		return Identity{}, Config{}, err
	}
	ud, err := os.ReadFile(filepath.Join(dir, "user-data"))
	if err != nil {
		return Identity{}, Config{}, fmt.Errorf("node dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(id.Root, 0o755); err != nil {
		return Identity{}, Config{}, fmt.Errorf("node dir %s: %w", dir, err)
	}
	if err := ApplyWriteFiles(ud, id.Root); err != nil {
		return Identity{}, Config{}, fmt.Errorf("node dir %s: %w", dir, err)
	}
	cfgPath, _ := underRoot(id.Root, ConfigPath)
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return Identity{}, Config{}, err
	}
	if id.Cluster != "" && id.Cluster != cfg.Cluster {
		return Identity{}, Config{}, fmt.Errorf("node dir %s: meta-data cluster %q does not match agent config cluster %q", dir, id.Cluster, cfg.Cluster)
	}
	id.Cluster = cfg.Cluster
	return id, cfg, nil
}

// LinkBinary makes the running hactl binary available as
// <root>/usr/local/bin/hactl on a local node (a symlink to os.Executable()),
// where a machine's snapshot has /usr/local/bin/hactl, and returns that
// directory so the caller can put it first in PATH: role files then run
// `command = ["hactl", "serve", "web", ...]` the same way on both.
func LinkBinary(root string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("link hactl binary: %w", err)
	}
	dir, err := underRoot(root, "/usr/local/bin")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("link hactl binary: %w", err)
	}
	link := filepath.Join(dir, "hactl")
	if cur, err := os.Readlink(link); err == nil && cur == exe {
		return dir, nil
	}
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(exe, tmp); err != nil {
		return "", fmt.Errorf("link hactl binary: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return "", fmt.Errorf("link hactl binary: %w", err)
	}
	return dir, nil
}
