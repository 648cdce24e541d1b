package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hactl/hactl/agent"
	"github.com/hactl/hactl/converge/resources"
	"github.com/spf13/cobra"
)

// defaultSigningKey is the operator's signing key: $XDG_CONFIG_HOME/hactl/signing_key.
func defaultSigningKey() string {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "signing_key"
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "hactl", "signing_key")
}

func newPublishCmd(g *globals) *cobra.Command {
	var (
		repo, keyPath, msg string
		notify             []string
		noValidate         bool
	)
	cmd := &cobra.Command{
		Use:   "publish DIR --repo PATH",
		Short: "Commit a configuration directory, signed, to the repository the agents pull",
		Long: `publish validates the configuration in DIR, then commits DIR's contents (the
HCL and every file it references) as a new SSH-signed commit on main of the
bare repository PATH (created when missing). Agents trust the key's public
half (trusted_keys in agent.json; "hactl userdata" puts it there).

The signing key defaults to $XDG_CONFIG_HOME/hactl/signing_key and is
generated on first use. --notify URL posts to agents' /v1/notify so they
pull at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if repo == "" {
				return errors.New("--repo is required")
			}
			if !noValidate {
				if _, err := agent.LangLoader(resources.Builtin())(dir); err != nil {
					return fmt.Errorf("refusing to publish: %w", err)
				}
			}
			key, err := agent.LoadSigningKey(keyPath)
			if errors.Is(err, os.ErrNotExist) {
				key, err = agent.GenerateSigningKey(keyPath)
				if err == nil {
					fmt.Fprintf(g.stderr, "Generated signing key %s; agents must trust:\n  %s\n", keyPath, key.PublicKey())
				}
			}
			if err != nil {
				return err
			}
			commit, err := agent.Publish(cmd.Context(), dir, repo, key, msg)
			if err != nil {
				return err
			}
			var notified []string
			var errs []error
			for _, u := range notify {
				if err := postNotify(u); err != nil {
					errs = append(errs, err)
					continue
				}
				notified = append(notified, u)
			}
			if g.jsonOut {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				_ = enc.Encode(map[string]any{"commit": commit, "repo": repo, "signing_key": key.PublicKey(), "notified": notified})
			} else {
				fmt.Fprintf(g.stdout, "Published %s to %s\n", commit, repo)
			}
			if len(errs) > 0 {
				return fmt.Errorf("published, but notifying failed: %w", errors.Join(errs...))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&repo, "repo", "", "bare git repository to commit to (created when missing)")
	f.StringVar(&keyPath, "key", defaultSigningKey(), "SSH ed25519 signing key (generated when missing)")
	f.StringVarP(&msg, "message", "m", "hactl publish", "commit message")
	f.StringSliceVar(&notify, "notify", nil, "agent API base URL to notify (http://ADDR:7480), repeatable")
	f.BoolVar(&noValidate, "no-validate", false, "publish without validating the configuration first")
	return cmd
}

func postNotify(base string) error {
	u := strings.TrimRight(base, "/")
	if !strings.HasSuffix(u, "/v1/notify") {
		u += "/v1/notify"
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(u, "application/json", nil)
	if err != nil {
		return fmt.Errorf("notify %s: %w", base, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify %s: status %s", base, resp.Status)
	}
	return nil
}
