package data

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCA issues node certificates the way cluster.CA does (ECDSA P-256,
// server+client usage).
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) tls(t *testing.T, name string) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	s, c, err := MutualTLS(ca.certPEM,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// replica is a data directory served over mutual TLS on 127.0.0.1.
type replica struct {
	deleted atomic.Pointer[func(string) (time.Time, bool)]
	dir     string
	addr    string
	client  *tls.Config
	stop    func()
}

func startReplica(t *testing.T, ca *testCA, name, addr string) *replica {
	t.Helper()
	st, ct := ca.tls(t, name)
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	rp := &replica{dir: dir, client: ct}
	rp.serve(t, st, addr)
	return rp
}

// serveTLS serves h over TLS on a loopback port until the test ends and
// returns its address: a peer wrapped to count or refuse requests.
func serveTLS(t *testing.T, h http.Handler, st *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, TLSConfig: st}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func (rp *replica) serve(t *testing.T, st *tls.Config, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	rp.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv := NewServer(rp.dir, nil)
		srv.Deleted = func(rel string) (time.Time, bool) {
			f := rp.deleted.Load()
			if f == nil {
				return time.Time{}, false
			}
			return (*f)(rel)
		}
		srv.Serve(ctx, ln, st)
	}()
	stopped := false
	rp.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(rp.stop)
}

func TestReplicator_SyncWrite_AckedOnPeer(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "mail-1", "127.0.0.1:0")
	b := startReplica(t, ca, "mail-2", "127.0.0.1:0")
	r := NewReplicator(ReplicatorOptions{Dir: a.dir, Mode: "sync", TLS: a.client, Peers: func() []string { return []string{"mail-2=" + b.addr} }})
	t.Cleanup(r.Close)
	ctx := context.Background()
	if err := r.Write(ctx, "new/msg-1", []byte("acked mail")); err != nil {
		t.Fatal(err)
	}
	// Acknowledged means: already on the peer, not eventually.
	if got, err := os.ReadFile(filepath.Join(b.dir, "new/msg-1")); err != nil || string(got) != "acked mail" {
		t.Fatalf("peer copy after ack = %q, %v", got, err)
	}
	if got, _ := os.ReadFile(filepath.Join(a.dir, "new/msg-1")); string(got) != "acked mail" {
		t.Fatalf("local copy after ack = %q", got)
	}

	b.stop()
	err := r.Write(ctx, "new/msg-2", []byte("nobody to ack"))
	if !errors.Is(err, ErrNoReplica) {
		t.Fatalf("write with the peer down: err = %v, want ErrNoReplica", err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "new/msg-2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused write left a local file: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"new/msg-1": "acked mail"}, readTree(t, a.dir)); diff != "" {
		t.Errorf("local tree after refused write (-want +got):\n%s", diff)
	}
}

func TestReplicator_SyncWrite_NoPeers(t *testing.T) {
	r := NewReplicator(ReplicatorOptions{Dir: t.TempDir(), Mode: "sync"})
	if err := r.Write(context.Background(), "x", []byte("x")); !errors.Is(err, ErrNoReplica) {
		t.Fatalf("err = %v, want ErrNoReplica", err)
	}
}

func TestReplicator_Untrusted_Refused(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	b := startReplica(t, ca, "mail-2", "127.0.0.1:0")
	_, stranger := other.tls(t, "intruder")
	r := NewReplicator(ReplicatorOptions{Dir: t.TempDir(), TLS: stranger, Peers: func() []string { return []string{b.addr} }})
	t.Cleanup(r.Close)
	if err := r.Write(context.Background(), "x", []byte("x")); err == nil {
		t.Fatal("a client with a certificate from another CA could write")
	}
	if _, err := os.Stat(filepath.Join(b.dir, "x")); err == nil {
		t.Fatal("the stranger's write reached the peer")
	}
}

func TestReplicator_Async_Converges(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "repo-1", "127.0.0.1:0")
	b := startReplica(t, ca, "repo-2", "127.0.0.1:0")
	writeTree(t, a.dir, map[string]string{"x/1": "one", "x/2": "two", "same-as-1": "one", "gone": "soon deleted"})
	writeTree(t, b.dir, map[string]string{"stale": "only on b"})
	big := strings.Repeat("0123456789abcdef", (resumeThreshold/16)+1)
	writeTree(t, a.dir, map[string]string{"big": big})
	ra := NewReplicator(ReplicatorOptions{Dir: a.dir, Mode: "async", Interval: 50 * time.Millisecond, TLS: a.client, Peers: func() []string { return []string{b.addr} }})
	rb := NewReplicator(ReplicatorOptions{Dir: b.dir, Mode: "async", Interval: 50 * time.Millisecond, TLS: b.client, Peers: func() []string { return []string{a.addr} }})
	t.Cleanup(ra.Close)
	t.Cleanup(rb.Close)
	da, db := ra.Deleted, rb.Deleted
	a.deleted.Store(&da)
	b.deleted.Store(&db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { ra.Run(ctx); done <- struct{}{} }()
	go func() { rb.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	want := map[string]string{"x/1": "one", "x/2": "two", "same-as-1": "one", "gone": "soon deleted", "stale": "only on b", "big": big}
	waitFor(t, "both replicas to hold the union", func() bool {
		return cmp.Equal(want, readTree(t, a.dir)) && cmp.Equal(want, readTree(t, b.dir))
	})
	// A later write and a deletion on a propagate too.
	time.Sleep(10 * time.Millisecond) // let mtimes move past the copies'
	writeTree(t, a.dir, map[string]string{"x/2": "two, edited"})
	os.Remove(filepath.Join(a.dir, "gone"))
	want["x/2"] = "two, edited"
	delete(want, "gone")
	waitFor(t, "the edit and the deletion to reach b", func() bool {
		return cmp.Equal(want, readTree(t, b.dir)) && cmp.Equal(want, readTree(t, a.dir))
	})
}

func TestPush_ResumesPartialUpload(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "a", "127.0.0.1:0")
	b := startReplica(t, ca, "b", "127.0.0.1:0")
	content := strings.Repeat("resumable ", resumeThreshold/10+100)
	writeTree(t, a.dir, map[string]string{"big": content})
	m, err := Snapshot(context.Background(), a.dir)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := m.Lookup("big")
	// Half of the file already arrived in an earlier, interrupted upload.
	half := len(content) / 2
	if err := os.MkdirAll(filepath.Join(b.dir, partialDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, partialDir, e.Sum), []byte(content[:half]), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewReplicator(ReplicatorOptions{Dir: a.dir, TLS: a.client})
	t.Cleanup(r.Close)
	ps, err := r.Push(context.Background(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	if ps.SentBytes != int64(len(content)-half) {
		t.Errorf("sent %d bytes, want only the missing %d", ps.SentBytes, len(content)-half)
	}
	if got := readTree(t, b.dir)["big"]; got != content {
		t.Errorf("resumed file differs (%d bytes, want %d)", len(got), len(content))
	}
}

func TestServer_Get_RefusesSymlinkEscape(t *testing.T) {
	ca := newTestCA(t)
	a := startReplica(t, ca, "a", "127.0.0.1:0")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not data"), 0o600)
	if err := os.Symlink(secret, filepath.Join(a.dir, "escape")); err != nil {
		t.Fatal(err)
	}
	hc := newHTTPClient(a.client, 10*time.Second)
	t.Cleanup(hc.CloseIdleConnections)
	resp, err := hc.Get(fileURL(a.addr, "/v1/file/", "escape"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("server followed a symlink out of the data directory")
	}
}
