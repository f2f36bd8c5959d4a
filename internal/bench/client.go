package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
)

// requestTimeout bounds one request of the load generator.
const requestTimeout = 10 * time.Second

// client is one keep-alive HTTP/1.1 connection that sends signed lookups the
// way the helpdesk does. It is written against the wire, not net/http, so the
// load generator spends little of the CPU it shares with the server.
type client struct {
	addr string
	path string
	key  []byte
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	resp []byte
}

func newClient(addr, path string, key []byte) *client {
	return &client{addr: addr, path: path, key: key, req: make([]byte, 0, 1024), resp: make([]byte, 0, 512)}
}

func (c *client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// do sends body signed with a fresh timestamp and returns the status and the
// response body (valid until the next call).
func (c *client) do(ctx context.Context, body []byte) (int, []byte, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, nil, fmt.Errorf("dial: %w", err)
		}
		c.conn = conn
		c.br = bufio.NewReaderSize(conn, 4096)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	sig := signature.Sign(c.key, signature.SchemeBody, c.path, body, ts)
	r := c.req[:0]
	r = append(r, "POST "...)
	r = append(r, c.path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.addr...)
	r = append(r, "\r\nUser-Agent: custinfo-bench\r\nContent-Type: application/json; charset=utf-8\r\nX-TC-Timestamp: "...)
	r = append(r, ts...)
	r = append(r, "\r\nAuthorization: "...)
	r = append(r, sig...)
	r = append(r, "\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	c.req = r

	deadline := time.Now().Add(requestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.conn.SetDeadline(deadline)
	if _, err := c.conn.Write(r); err != nil {
		c.close()
		return 0, nil, fmt.Errorf("write request: %w", err)
	}
	status, err := c.readResponse()
	if err != nil {
		c.close()
		return 0, nil, err
	}
	return status, c.resp, nil
}

// readResponse reads one response with a Content-Length body into c.resp.
func (c *client) readResponse() (int, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, fmt.Errorf("read status line: %w", err)
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("read header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "Connection"):
			keep = !asciiEqualFold(value, "close")
		case asciiEqualFold(name, "Transfer-Encoding"):
			return 0, errors.New("response is not sent with a Content-Length")
		}
	}
	if length < 0 {
		return 0, errors.New("response has no Content-Length")
	}
	if length > 1<<20 {
		return 0, fmt.Errorf("response of %d bytes", length)
	}
	if cap(c.resp) < length {
		c.resp = make([]byte, length)
	}
	c.resp = c.resp[:length]
	if _, err := io.ReadFull(c.br, c.resp); err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	if !keep {
		c.close()
	}
	return status, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// httpStep returns a worker's step against a custinfo server: each call
// picks a request of the workload, signs and sends it, and checks the answer.
func httpStep(addr, lookup string, key []byte, items []item, seed uint64, w int) (stepFunc, func()) {
	c := newClient(addr, "/v1/lookups/"+lookup, key)
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	step := func(ctx context.Context) error {
		it := &items[rng.IntN(len(items))]
		status, body, err := c.do(ctx, it.body)
		if err != nil {
			return err
		}
		return checkAnswer(it, status, body)
	}
	return step, c.close
}

// checkAnswer reports whether status and body are what the item expects:
// 200 with its customer for a hit, 404 for a miss.
func checkAnswer(it *item, status int, body []byte) error {
	switch {
	case it.hit && status == 200:
		if !bytes.Contains(body, it.id) {
			return fmt.Errorf("hit answered with the wrong customer: %.200s", body)
		}
		return nil
	case !it.hit && status == 404:
		return nil
	}
	return fmt.Errorf("status %d for a %s: %.200s", status, hitWord(it.hit), body)
}

func hitWord(hit bool) string {
	if hit {
		return "hit"
	}
	return "miss"
}
