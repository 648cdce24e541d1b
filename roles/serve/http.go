package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownGrace bounds how long Serve waits for in-flight requests after its
// context is done; connections still open after that are closed.
const ShutdownGrace = 10 * time.Second

// Serve runs srv on ln until ctx is done, then shuts it down gracefully
// (in-flight requests finish, for at most ShutdownGrace) and returns nil. It
// returns an error only when the server fails for another reason. Serve owns
// ln: it is closed when Serve returns.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	if srv.ErrorLog == nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		log.Warn("graceful shutdown incomplete, closing connections", "addr", ln.Addr().String(), "err", err)
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), serr)
	}
	return nil
}

// Listen opens a TCP listener on addr ("127.0.0.5:8080", ":0").
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Logger returns l, or a logger that discards everything when l is nil.
func Logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
