package faultproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/custinfo/custinfo/internal/faultproxy"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer answers every line with the same line until the client
// closes; it stops when the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatalf("faultproxy.New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// client is one line-oriented connection through the proxy.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and returns what came back within wait.
func (c *client) roundTrip(line string, wait time.Duration) (string, error) {
	if err := c.c.SetDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return got, err
	}
	return got[:len(got)-1], nil
}

func (c *client) mustRoundTrip(line string) {
	c.t.Helper()
	got, err := c.roundTrip(line, 5*time.Second)
	if err != nil || got != line {
		c.t.Fatalf("round trip %q = %q, %v, want %q, nil", line, got, err, line)
	}
}

func TestForwards(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	for _, line := range []string{"hello", "안녕하세요", string(make([]byte, 100_000))} {
		a.mustRoundTrip(line)
		b.mustRoundTrip(line)
	}
	if got := p.Conns(); got != 2 {
		t.Errorf("Conns() = %d, want 2", got)
	}
	if got := p.Accepted(); got != 2 {
		t.Errorf("Accepted() = %d, want 2", got)
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	a := dial(t, p.Addr())
	a.mustRoundTrip("before")
	if got := p.Cut(); got != 1 {
		t.Errorf("Cut() = %d, want 1", got)
	}
	if got, err := a.roundTrip("after", 5*time.Second); err == nil {
		t.Errorf("round trip after Cut = %q, nil, want an error", got)
	} else if isTimeout(err) {
		t.Errorf("round trip after Cut = %v, want the connection closed, not a timeout", err)
	}
	testwait.Until(t, "cut connection forgotten", 5*time.Second, func() bool { return p.Conns() == 0 })
	dial(t, p.Addr()).mustRoundTrip("new connection")
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	a := dial(t, p.Addr())
	a.mustRoundTrip("before")
	p.Down()
	if got, err := a.roundTrip("open during down", 5*time.Second); err == nil || isTimeout(err) {
		t.Errorf("round trip on an open connection after Down = %q, %v, want closed", got, err)
	}
	if err := refused(p.Addr()); err != nil {
		t.Errorf("new connection while down: %v", err)
	}
	if p.Refused() < 1 {
		t.Errorf("Refused() = %d, want at least 1", p.Refused())
	}
	p.Up()
	dial(t, p.Addr()).mustRoundTrip("after up")
}

func TestLatency(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	a := dial(t, p.Addr())
	a.mustRoundTrip("warm")
	const latency = 100 * time.Millisecond
	p.SetLatency(latency)
	start := time.Now()
	a.mustRoundTrip("slow")
	// One chunk each way: at least twice the latency, whatever the machine.
	if got := time.Since(start); got < 2*latency {
		t.Errorf("round trip with latency %v took %v, want at least %v", latency, got, 2*latency)
	}
	p.SetLatency(0)
	a.mustRoundTrip("fast again")
}

func TestStallResume(t *testing.T) {
	t.Parallel()
	p := newProxy(t, echoServer(t))
	a := dial(t, p.Addr())
	a.mustRoundTrip("before")
	p.Stall()
	if _, err := io.WriteString(a.c, "held\n"); err != nil {
		t.Fatalf("write while stalled: %v", err)
	}
	b := dial(t, p.Addr()) // new connections stall too
	if _, err := io.WriteString(b.c, "held too\n"); err != nil {
		t.Fatalf("write on new connection while stalled: %v", err)
	}
	testwait.Until(t, "both chunks held", 5*time.Second, func() bool { return p.Held() == 2 })
	if p.Conns() != 2 {
		t.Errorf("Conns() while stalled = %d, want 2 (connections stay open)", p.Conns())
	}
	p.Resume()
	for _, c := range []struct {
		cl   *client
		want string
	}{{a, "held\n"}, {b, "held too\n"}} {
		_ = c.cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := c.cl.r.ReadString('\n')
		if err != nil || got != c.want {
			t.Errorf("read after Resume = %q, %v, want %q", got, err, c.want)
		}
	}
	if got := p.Held(); got != 0 {
		t.Errorf("Held() after Resume = %d, want 0", got)
	}
}

// TestCloseEndsEverything closes a proxy with connections that are idle,
// stalled and delayed; TestMain's goleak check proves nothing is left.
func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.New(echoServer(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	idle := dial(t, p.Addr())
	idle.mustRoundTrip("idle")
	p.SetLatency(time.Hour)
	delayed := dial(t, p.Addr())
	if _, err := io.WriteString(delayed.c, "delayed\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	p.Stall()
	stalled := dial(t, p.Addr())
	if _, err := io.WriteString(stalled.c, "stalled\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	testwait.Until(t, "stalled chunk held", 5*time.Second, func() bool { return p.Held() >= 1 })

	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10s")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	for _, c := range []*client{idle, delayed, stalled} {
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadString('\n'); err == nil || isTimeout(err) {
			t.Errorf("read after Close = %v, want the connection closed", err)
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Errorf("dial after Close succeeded, want refused")
	}
}

func TestUnreachableTarget(t *testing.T) {
	t.Parallel()
	var p *faultproxy.Proxy
	for p == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		target := ln.Addr().String()
		_ = ln.Close() // nothing listens there now
		p = newProxy(t, target)
		if p.Addr() == target { // the kernel gave the proxy that very port
			p = nil
		}
	}
	if err := refused(p.Addr()); err != nil {
		t.Errorf("connection to an unreachable target: %v", err)
	}
	testwait.Until(t, "refusal counted", 5*time.Second, func() bool { return p.Refused() == 1 })
}

// TestPostgres runs the proxy in front of the real PostgreSQL: a cut
// connection fails its next query, a new one works.
func TestPostgres(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatalf("parse server url: %v", err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.Addr()
	ctx := context.Background()
	connect := func() *pgx.Conn {
		t.Helper()
		conn, err := pgx.Connect(ctx, u.String())
		if err != nil {
			t.Fatalf("connect through proxy: %v", err)
		}
		t.Cleanup(func() { _ = conn.Close(ctx) })
		return conn
	}
	conn := connect()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v, want 1", one, err)
	}
	p.Cut()
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Errorf("SELECT 1 after Cut succeeded, want an error")
	}
	p.Down()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(cctx, u.String()); err == nil {
		_ = c.Close(ctx)
		t.Errorf("connect while down succeeded, want an error")
	}
	p.Up()
	if err := connect().QueryRow(ctx, "SELECT 2").Scan(&one); err != nil || one != 2 {
		t.Errorf("SELECT 2 on a new connection = %d, %v, want 2", one, err)
	}
}

// refused dials addr and sends a line; it returns nil when the connection
// is reset or closed (at connect or at the first read), an error otherwise.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		if isTimeout(err) {
			return fmt.Errorf("dial timed out, want reset: %w", err)
		}
		return nil // reset before connect returned
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "x\n")
	got, err := bufio.NewReader(c).ReadString('\n')
	switch {
	case err == nil:
		return fmt.Errorf("read %q, want the connection reset", got)
	case isTimeout(err):
		return fmt.Errorf("read timed out, want the connection reset: %w", err)
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
