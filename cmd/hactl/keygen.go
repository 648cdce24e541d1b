package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hactl/hactl/cluster"
)

func newKeygenCmd(g *globals) *cobra.Command {
	var (
		out, name string
		nodes     []string
		ips       []string
	)
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create the cluster's gossip key, CA and node certificates",
		Long: `Keygen writes the control plane's secrets into a directory: gossip.key
(the memberlist encryption key, base64), ca.crt and ca.key (the cluster CA that
the raft transport trusts), and NAME.crt/NAME.key for every -node. Existing
gossip.key and CA files are kept and reused, so running it again with new
-node names issues certificates for added nodes. Keys are written 0600.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var addrs []net.IP
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("keygen: -ip %q is not an IP address", s)
				}
				addrs = append(addrs, ip)
			}
			written, err := keygen(out, name, nodes, addrs)
			if g.jsonOut {
				b, _ := json.MarshalIndent(map[string]any{"dir": out, "written": written}, "", "  ")
				fmt.Fprintln(g.stdout, string(b))
			} else {
				for _, w := range written {
					fmt.Fprintln(g.stdout, "wrote", w)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "secrets", "directory to write the secrets into")
	f.StringVar(&name, "cluster", "hactl", "cluster name recorded in the CA certificate")
	f.StringArrayVar(&nodes, "node", nil, "issue a certificate for this node name (repeatable)")
	f.StringArrayVar(&ips, "ip", nil, "IP address to add to every issued certificate (repeatable)")
	return cmd
}

// keygen writes missing secrets into dir and returns the files it wrote.
func keygen(dir, clusterName string, nodes []string, ips []net.IP) ([]string, error) {
	var written []string
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keygen: %w", err)
	}
	write := func(name string, b []byte, mode os.FileMode) error {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		written = append(written, p)
		return nil
	}
	keyPath := filepath.Join(dir, "gossip.key")
	if _, err := os.Stat(keyPath); errors.Is(err, fs.ErrNotExist) {
		kr, err := cluster.GenerateKeyring()
		if err != nil {
			return written, err
		}
		if err := write("gossip.key", []byte(base64.StdEncoding.EncodeToString(kr[0])+"\n"), 0o600); err != nil {
			return written, err
		}
	}
	var ca *cluster.CA
	certPEM, cerr := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, "ca.key"))
	switch {
	case cerr == nil && kerr == nil:
		var err error
		if ca, err = cluster.LoadCA(certPEM, keyPEM); err != nil {
			return written, fmt.Errorf("keygen: %s: %w", dir, err)
		}
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		var err error
		if ca, err = cluster.GenerateCA(clusterName); err != nil {
			return written, err
		}
		if err := write("ca.crt", ca.CertPEM, 0o644); err != nil {
			return written, err
		}
		if err := write("ca.key", ca.KeyPEM, 0o600); err != nil {
			return written, err
		}
	default:
		return written, fmt.Errorf("keygen: %s holds only half of the CA (ca.crt, ca.key): %v", dir, errors.Join(cerr, kerr))
	}
	for _, n := range nodes {
		if n == "" || strings.ContainsAny(n, `/\`) {
			return written, fmt.Errorf("keygen: bad node name %q", n)
		}
		tf, err := ca.Issue(n, ips...)
		if err != nil {
			return written, err
		}
		if err := write(n+".crt", tf.Cert, 0o644); err != nil {
			return written, err
		}
		if err := write(n+".key", tf.Key, 0o600); err != nil {
			return written, err
		}
	}
	return written, nil
}
