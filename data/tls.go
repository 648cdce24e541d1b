package data

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// MutualTLS builds the server and client TLS configurations of the
// replication protocol from PEM files issued by the cluster CA (see
// cluster.CA.Issue): TLS 1.3 only, both sides present a certificate, and
// each side accepts only a certificate chaining to caPEM. Peer names are
// not checked (a rebuilt slot keeps its name but may change address); the
// CA is the trust boundary.
func MutualTLS(caPEM, certPEM, keyPEM []byte) (server, client *tls.Config, err error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("replication certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("replication ca certificate: no certificate in pem")
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		// The chain is verified below against the cluster CA only.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("replication peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return fmt.Errorf("replication peer certificate: %w", err)
			}
			return nil
		},
	}
	return server, client, nil
}
