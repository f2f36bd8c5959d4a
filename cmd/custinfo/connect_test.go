package main

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/faultproxy"
	"github.com/custinfo/custinfo/internal/pgtest"
)

// TestConnectWaiting shows that a one-shot command outlives a database that
// refuses connections for a while (as a container does while it starts), and
// that it gives up once --connect-wait has passed.
func TestConnectWaiting(t *testing.T) {
	t.Parallel()
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(server.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	viaProxy := *server
	viaProxy.Host = proxy.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("database comes up", func(t *testing.T) {
		proxy.Down()
		time.AfterFunc(time.Second, proxy.Up)
		pool, err := connectWaiting(ctx, 20*time.Second, viaProxy.String(), 1)
		if err != nil {
			t.Fatalf("connectWaiting = %v, want a pool once the database accepts connections", err)
		}
		pool.Close()
		if proxy.Refused() == 0 {
			t.Errorf("proxy refused no connection; the test did not exercise a retry")
		}
	})

	t.Run("database stays down", func(t *testing.T) {
		proxy.Down()
		start := time.Now()
		pool, err := connectWaiting(ctx, 1500*time.Millisecond, viaProxy.String(), 1)
		if err == nil {
			pool.Close()
			t.Fatal("connectWaiting = nil error, want the connection error after the wait")
		}
		if d := time.Since(start); d < time.Second || d > 30*time.Second {
			t.Errorf("connectWaiting gave up after %v, want about the 1.5 s wait", d)
		}
	})

	t.Run("bad url fails at once", func(t *testing.T) {
		start := time.Now()
		if _, err := connectWaiting(ctx, time.Minute, "postgres://%zz", 1); err == nil {
			t.Fatal("connectWaiting(bad url) = nil error")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("connectWaiting(bad url) took %v, want an immediate error", d)
		}
	})
}
