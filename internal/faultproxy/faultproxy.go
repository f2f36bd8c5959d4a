// Package faultproxy is a TCP proxy for tests that stands between a client
// and a server (PostgreSQL) and breaks the network on demand: it cuts the
// open connections, refuses new ones, delays traffic or stalls it.
//
// A Proxy listens on a loopback port and forwards every connection to its
// target. Every goroutine it starts is stopped by Close.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DialTimeout bounds the connection to the target made for each accepted client.
const DialTimeout = 5 * time.Second

// Proxy forwards TCP connections from a loopback port to a target address
// and injects faults into them.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu      sync.Mutex
	links   map[*link]struct{}
	down    bool
	latency time.Duration
	stall   chan struct{} // non-nil while stalled; closed by Resume

	closeOnce sync.Once
	accepted  atomic.Int64
	refused   atomic.Int64
	held      atomic.Int64
}

// link is one proxied connection: the client's side and the target's side.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed when the link is torn down
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// New starts a proxy on 127.0.0.1 with a free port that forwards to target
// (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listening address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection, both sides, and returns how many there
// were. New connections are still accepted.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Down cuts every open connection and refuses new ones (accepted, then reset
// at once) until Up: the database looks unreachable.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.Cut()
}

// Up accepts and forwards new connections again after Down.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// SetLatency delays every chunk of data, in both directions, by d before it
// is forwarded; zero forwards at once. Chunks already waiting keep their delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = max(d, 0)
	p.mu.Unlock()
}

// Stall holds every chunk of data, in both directions and on new
// connections too, until Resume: connections stay open but nothing moves.
func (p *Proxy) Stall() {
	p.mu.Lock()
	if p.stall == nil {
		p.stall = make(chan struct{})
	}
	p.mu.Unlock()
}

// Resume forwards the held data and everything after it again.
func (p *Proxy) Resume() {
	p.mu.Lock()
	if p.stall != nil {
		close(p.stall)
		p.stall = nil
	}
	p.mu.Unlock()
}

// Conns returns the number of open proxied connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Held returns the number of chunks currently held back by Stall.
func (p *Proxy) Held() int { return int(p.held.Load()) }

// Accepted returns the number of connections accepted and forwarded so far.
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// Refused returns the number of connections refused so far (while down, or
// when the target could not be reached).
func (p *Proxy) Refused() int { return int(p.refused.Load()) }

// Close stops listening, closes every connection and waits for all of the
// proxy's goroutines to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.cancel()
		err = p.ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("faultproxy: close: %w", err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of file descriptors): back off briefly.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle connects c to the target and forwards both ways until either side
// closes, the link is cut or the proxy closes.
func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	if p.isDown() {
		p.refuse(c)
		return
	}
	d := net.Dialer{Timeout: DialTimeout}
	s, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		p.refuse(c)
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	if p.down || p.ctx.Err() != nil {
		p.mu.Unlock()
		_ = s.Close()
		p.refuse(c)
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	p.accepted.Add(1)

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(l, s, c)
	}()
	p.pipe(l, c, s)
	<-l.done
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *Proxy) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// refuse resets c: the client sees its connection reset, as from a host
// where nothing listens.
func (p *Proxy) refuse(c net.Conn) {
	p.refused.Add(1)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// pipe copies src to dst chunk by chunk, applying the current faults to
// each chunk, and tears the link down when either side fails.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.hold(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hold waits while the proxy is stalled and for the current latency. It
// reports false when the link or the proxy closed meanwhile.
func (p *Proxy) hold(l *link) bool {
	for {
		p.mu.Lock()
		stall, latency := p.stall, p.latency
		p.mu.Unlock()
		if stall != nil {
			p.held.Add(1)
			select {
			case <-stall:
				p.held.Add(-1)
				continue // latency applies after a stall too
			case <-l.done:
				p.held.Add(-1)
				return false
			case <-p.ctx.Done():
				p.held.Add(-1)
				return false
			}
		}
		if latency == 0 {
			return true
		}
		t := time.NewTimer(latency)
		select {
		case <-t.C:
			return true
		case <-l.done:
			t.Stop()
			return false
		case <-p.ctx.Done():
			t.Stop()
			return false
		}
	}
}
