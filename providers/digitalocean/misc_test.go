package digitalocean_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/hactl/hactl/providers/digitalocean/doemu"
)

type godoKeyReq = godo.KeyCreateRequest

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func newServer(t *testing.T, emu *doemu.Server) string {
	t.Helper()
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return srv.URL
}
