package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

func TestKeygen_ReusesCAAndIssuesNodeCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	if _, err := keygen(dir, "blog", []string{"web-1"}, nil); err != nil {
		t.Fatal(err)
	}
	ca1, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key1, _ := os.ReadFile(filepath.Join(dir, "gossip.key"))
	written, err := keygen(dir, "blog", []string{"web-2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 {
		t.Fatalf("second run wrote %v; want only web-2's cert and key", written)
	}
	ca2, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	key2, _ := os.ReadFile(filepath.Join(dir, "gossip.key"))
	if !bytes.Equal(ca1, ca2) || !bytes.Equal(key1, key2) {
		t.Fatal("second run replaced the CA or the gossip key")
	}
	for _, f := range []string{"gossip.key", "ca.key", "web-1.key", "web-2.key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", f, fi.Mode().Perm())
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca1)
	b, _ := os.ReadFile(filepath.Join(dir, "web-2.crt"))
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("web-2.crt: no pem")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("web-2.crt does not chain to the reused CA: %v", err)
	}
}
