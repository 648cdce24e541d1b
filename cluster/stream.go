package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tlsStream is a raft.StreamLayer over mutual TLS: Accept hands out server
// side connections of a tls.Listener, Dial opens client connections verified
// against the cluster CA.
type tlsStream struct {
	net.Listener
	client *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

// listenTLS binds addr and returns the stream layer.
func listenTLS(addr string, server, client *tls.Config) (*tlsStream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", addr, err)
	}
	return &tlsStream{Listener: tls.NewListener(ln, server), client: client}, nil
}

// Dial opens a TLS connection and completes the handshake within timeout, so
// a peer without a cluster certificate fails here rather than mid-RPC.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), s.client)
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	return c, nil
}
