package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/signature"
)

// TestHostileBodies sends signed bodies that are hostile in shape: each must
// be answered with its status and the envelope, never a 5xx.
func TestHostileBodies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	srv := serve(t, f.handler(httpapi.Config{}))

	nested := func(n int) string { return strings.Repeat("[", n) }
	long := strings.Repeat("9", 60<<10)
	tests := []struct {
		name       string
		path, key  string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"100k nested arrays (over the limit)", "", "", nested(100_000), 413, httpapi.CodeBodyTooLarge},
		{"20k nested arrays", "", "", nested(20_000), 400, httpapi.CodeInvalidBody},
		{"20k nested arrays closed", "", "", nested(20_000) + strings.Repeat("]", 20_000), 400, httpapi.CodeInvalidBody},
		{"20k nested arrays in callNum", "", "", `{"callNum":` + nested(20_000), 400, httpapi.CodeInvalidBody},
		{"11k nested objects in an unknown field", "", "", `{"callNum":"010-1234-5678","x":` + strings.Repeat(`{"":`, 11_000) + "1" + strings.Repeat("}", 11_000) + "}", 400, httpapi.CodeInvalidBody},
		{"9k nested arrays in an unknown field", "", "", `{"callNum":"010-1234-5678","x":` + nested(9_000) + strings.Repeat("]", 9_000) + "}", 200, ""},
		{"invalid UTF-8 in callNum", "", "", "{\"callNum\":\"010-1234-5678\xff\"}", 400, httpapi.CodeInvalidBody},
		{"invalid UTF-8 in an unknown field", "", "", "{\"callNum\":\"010-1234-5678\",\"memo\":\"\xed\xa0\x80\"}", 400, httpapi.CodeInvalidBody},
		{"overlong UTF-8 slash", "", "", "{\"callNum\":\"010-1234-5678\xc0\xaf\"}", 400, httpapi.CodeInvalidBody},
		{"lone surrogate escape", "", "", `{"callNum":"010-1234-5678\ud800"}`, 404, httpapi.CodeNoData},
		{"raw NUL between tokens", "", "", "{\"callNum\":\"010-1234-5678\"\x00}", 400, httpapi.CodeInvalidBody},
		{"raw NUL inside a string", "", "", "{\"callNum\":\"010-1234\x005678\"}", 400, httpapi.CodeInvalidBody},
		{"NUL after the object", "", "", "{\"callNum\":\"010-1234-5678\"}\x00", 400, httpapi.CodeInvalidBody},
		{"escaped NUL in callNum", "", "", `{"callNum":"010-1234-5678\u0000"}`, 400, httpapi.CodeInvalidField},
		{"escaped NUL in a phone callNum", "/v1/lookups/customer_phone", keyByID, `{"callNum":"010-1234-5678\u0000"}`, 400, httpapi.CodeInvalidField},
		{"escaped NUL in an unknown field", "", "", `{"callNum":"010-1234-5678","memo":"\u0000"}`, 200, ""},
		{"duplicate callNum", "", "", `{"callNum":"010-1234-5678","callNum":"010-0000-0000"}`, 400, httpapi.CodeInvalidBody},
		{"duplicate callNum spelled with an escape", "", "", `{"callNum":"010-1234-5678","call\u004eum":"010-0000-0000"}`, 400, httpapi.CodeInvalidBody},
		{"duplicate unknown field", "", "", `{"memo":1,"memo":2,"callNum":"010-1234-5678"}`, 200, ""},
		{"JSON array", "", "", `[{"callNum":"010-1234-5678"}]`, 400, httpapi.CodeInvalidBody},
		{"JSON string", "", "", `"010-1234-5678"`, 400, httpapi.CodeInvalidBody},
		{"JSON number", "", "", `1012345678`, 400, httpapi.CodeInvalidBody},
		{"JSON null", "", "", `null`, 400, httpapi.CodeInvalidBody},
		{"JSON true", "", "", `true`, 400, httpapi.CodeInvalidBody},
		{"two objects", "", "", `{"callNum":"010-1234-5678"}{"callNum":"010-1234-5678"}`, 400, httpapi.CodeInvalidBody},
		{"trailing comma", "", "", `{"callNum":"010-1234-5678",}`, 400, httpapi.CodeInvalidBody},
		{"single quotes", "", "", `{'callNum':'010-1234-5678'}`, 400, httpapi.CodeInvalidBody},
		{"byte order mark", "", "", "\ufeff{\"callNum\":\"010-1234-5678\"}", 400, httpapi.CodeInvalidBody},
		{"only whitespace", "", "", " \r\n\t ", 400, httpapi.CodeInvalidBody},
		{"callNum an object", "", "", `{"callNum":{"$gt":""}}`, 400, httpapi.CodeInvalidBody},
		{"callNum an array", "", "", `{"callNum":["010-1234-5678","010-2222-3333"]}`, 400, httpapi.CodeInvalidBody},
		{"callNum a huge number", "", "", `{"callNum":1e999999999}`, 404, httpapi.CodeNoData},
		{"callNum a 60 KiB number", "", "", `{"callNum":` + long + `}`, 404, httpapi.CodeNoData},
		{"callNum a 60 KiB string", "", "", `{"callNum":"` + long + `"}`, 404, httpapi.CodeNoData},
		{"phone callNum a 60 KiB string", "/v1/lookups/customer_phone", keyByID, `{"callNum":"` + long + `"}`, 400, httpapi.CodeInvalidField},
		{"phone with a 60 KiB nation", "/v1/lookups/customer_phone", keyByID, `{"callNum":"010-1234-5678","nation":"` + long + `"}`, 400, httpapi.CodeInvalidField},
		{"id a 30-digit number", "/v1/lookups/customer_by_id", keyByID, `{"id":123456789012345678901234567890}`, 400, httpapi.CodeInvalidField},
		{"id a huge exponent", "/v1/lookups/customer_by_id", keyByID, `{"id":1e400}`, 400, httpapi.CodeInvalidField},
		{"id negative", "/v1/lookups/customer_by_id", keyByID, `{"id":-1}`, 404, httpapi.CodeNoData},
		{"id a fraction", "/v1/lookups/customer_by_id", keyByID, `{"id":1.5}`, 400, httpapi.CodeInvalidField},
		{"SQL in callNum", "", "", `{"callNum":"' OR 1=1 --"}`, 404, httpapi.CodeNoData},
		{"many unknown fields", "", "", `{"callNum":"010-1234-5678"` + strings.Repeat(`,"x":0`, 8_000) + `}`, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, f.request(t, srv.URL, call{path: tt.path, key: tt.key, body: tt.body}))
			if tt.wantStatus == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %.300s)", r.status, r.body)
				}
				if _, err := parseData(r.body); err != nil {
					t.Errorf("body %q: %v", r.body, err)
				}
				return
			}
			checkError(t, r, tt.wantStatus, tt.wantCode)
		})
	}
}

// TestHostileHeaders sends repeated, oversized and malformed headers.
func TestHostileHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	srv := serve(t, f.handler(httpapi.Config{}))
	const body = `{"callNum":"010-1234-5678"}`
	good := helpdeskSign(keyMain, signature.SchemeBody, "", []byte(body), f.ts(0))

	tests := []struct {
		name       string
		header     http.Header
		wantStatus int
		wantCode   string
	}{
		{"two Authorization, both valid", http.Header{"Authorization": {good, good}}, 403, httpapi.CodeAccessDenied},
		{"two Authorization, one valid", http.Header{"Authorization": {"x", good}}, 403, httpapi.CodeAccessDenied},
		{"two X-TC-Timestamp, equal", http.Header{"X-Tc-Timestamp": {f.ts(0), f.ts(0)}}, 400, httpapi.CodeInvalidTimestamp},
		{"X-TC-Timestamp as a list", http.Header{"X-Tc-Timestamp": {f.ts(0) + ", " + f.ts(0)}}, 400, httpapi.CodeInvalidTimestamp},
		{"12 KiB Authorization", http.Header{"Authorization": {strings.Repeat("A", 12<<10)}}, 403, httpapi.CodeAccessDenied},
		{"12 KiB X-TC-Timestamp of digits", http.Header{"X-Tc-Timestamp": {strings.Repeat("1", 12<<10)}}, 400, httpapi.CodeInvalidTimestamp},
		{"12 KiB X-TC-Timestamp of letters", http.Header{"X-Tc-Timestamp": {strings.Repeat("x", 12<<10)}}, 400, httpapi.CodeInvalidTimestamp},
		{"timestamp with non-ASCII digits", http.Header{"X-Tc-Timestamp": {"١٧٠٠٠٠٠٠٠٠٠٠٠"}}, 400, httpapi.CodeInvalidTimestamp},
		{"Authorization of non-ASCII bytes", http.Header{"Authorization": {"서명\xff"}}, 403, httpapi.CodeAccessDenied},
		{"a 1 KiB unknown header", http.Header{"X-Pad": {strings.Repeat("p", 1<<10)}}, 200, ""},
		{"hostile X-Request-Id", http.Header{"X-Request-Id": {"<script>" + strings.Repeat("a", 200)}}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, f.request(t, srv.URL, call{body: body, header: tt.header}))
			if tt.wantStatus == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %.300s)", r.status, r.body)
				}
				if id := r.header.Get("X-Request-Id"); strings.ContainsAny(id, "<>") || len(id) > 64 {
					t.Errorf("X-Request-Id = %q, want a plain id", id)
				}
				return
			}
			e := checkError(t, r, tt.wantStatus, tt.wantCode)
			if len(e.Detail) > 400 {
				t.Errorf("detail is %d bytes, want a short one (it must not echo a huge header)", len(e.Detail))
			}
		})
	}

	// A 1 MB header: net/http refuses it itself with 431 (plain text,
	// before the handler runs, so without the envelope), and the server
	// keeps serving.
	t.Run("1 MB header", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"X-Big", "Authorization", "X-TC-Timestamp"} {
			t.Run(name, func(t *testing.T) {
				conn := dial(t, srv)
				// The server answers and hangs up before it has read all of it,
				// so the write may fail; the response is read all the same.
				writeDone := make(chan error, 1)
				go func() {
					_, err := fmt.Fprintf(conn, "POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Length: 2\r\n\r\n{}", name, strings.Repeat("a", 1<<20))
					writeDone <- err
				}()
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatalf("read response: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("status = %d, want 431 (body %q)", resp.StatusCode, b)
				}
				conn.Close()
				<-writeDone
			})
		}
		r := do(t, f.request(t, srv.URL, call{body: `{"callNum":"010-1234-5678"}`}))
		if r.status != http.StatusOK {
			t.Errorf("after huge headers: status = %d, want 200", r.status)
		}
	})
}

// TestBodyLimitStreams checks that the 64 KiB limit stops reading a body
// of unknown length: the handler reads at most limit+1 bytes of an endless
// body, and a real server answers 413 to a chunked one without reading it whole.
// The limit applies before anything else, so no database is needed.
func TestBodyLimitStreams(t *testing.T) {
	t.Parallel()
	now := time.Now()
	h := httpapi.New(httpapi.Config{NowFunc: func() time.Time { return now }})
	ts := strconv.FormatInt(now.UnixMilli(), 10)

	t.Run("handler reads at most limit+1 bytes", func(t *testing.T) {
		body := &endlessBody{}
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/lookups/customer", body)
		req.ContentLength = -1
		req.Header.Set("X-TC-Timestamp", ts)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}, 413, httpapi.CodeBodyTooLarge)
		if body.n > httpapi.DefaultMaxBody+1 {
			t.Errorf("handler read %d bytes of the body, want at most %d", body.n, httpapi.DefaultMaxBody+1)
		}
	})

	t.Run("declared Content-Length over the limit is not read", func(t *testing.T) {
		srv := serve(t, h)
		conn := dial(t, srv)
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\nX-TC-Timestamp: %s\r\nContent-Length: %d\r\n\r\n{\"callNum\":", ts, 100<<20)
		resp := readResponse(t, bufio.NewReader(conn))
		checkError(t, resp, 413, httpapi.CodeBodyTooLarge)
		if got := srv.listener.read.Load(); got > 4<<10 {
			t.Errorf("server read %d bytes, want only the headers", got)
		}
	})

	t.Run("chunked body over the limit", func(t *testing.T) {
		srv := serve(t, h)
		conn := dial(t, srv)
		defer conn.Close()
		const offered = 8 << 20
		writeDone := make(chan int, 1)
		go func() {
			w := bufio.NewWriter(conn)
			fmt.Fprintf(w, "POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\nX-TC-Timestamp: %s\r\nTransfer-Encoding: chunked\r\n\r\n", ts)
			chunk := bytes.Repeat([]byte("9"), 8<<10)
			sent := 0
			for sent < offered {
				fmt.Fprintf(w, "%x\r\n%s\r\n", len(chunk), chunk)
				if w.Flush() != nil {
					break
				}
				sent += len(chunk)
			}
			writeDone <- sent
		}()
		resp := readResponse(t, bufio.NewReader(conn))
		checkError(t, resp, 413, httpapi.CodeBodyTooLarge)
		conn.Close() // ends the writer if the server still reads
		sent := <-writeDone
		// After the handler, net/http drains at most 256 KiB twice (when
		// writing the header and when closing the body) hoping to keep the
		// connection, then hangs up; the rest is never read.
		const bound = httpapi.DefaultMaxBody + 2*256<<10 + 64<<10
		if got := srv.listener.read.Load(); got > bound {
			t.Errorf("server read %d bytes of a chunked body, want at most %d", got, bound)
		}
		t.Logf("client sent %d bytes before the server hung up; server read %d", sent, srv.listener.read.Load())
	})
}

// endlessBody is a request body that never ends; n counts the bytes read.
type endlessBody struct{ n int64 }

func (b *endlessBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	b.n += int64(len(p))
	return len(p), nil
}

// TestRawConnections speaks HTTP/1.x on raw connections to a server with
// the production timeouts: HTTP/1.0, keep-alive after errors, slowloris.
func TestRawConnections(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	srv := serve(t, f.handler(httpapi.Config{}))
	const body = `{"callNum":"010-1234-5678"}`

	t.Run("HTTP/1.0", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name       string
			sig        string
			wantStatus int
		}{
			{"signed", helpdeskSign(keyMain, signature.SchemeBody, "", []byte(body), f.ts(0)), 200},
			{"bad signature", "x", 403},
		} {
			conn := dial(t, srv)
			fmt.Fprintf(conn, "POST /v1/lookups/customer HTTP/1.0\r\nContent-Type: application/json\r\nX-TC-Timestamp: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s",
				f.ts(0), tt.sig, len(body), body)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s: read response: %v", tt.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Proto != "HTTP/1.0" {
				t.Errorf("%s: %s %d, want HTTP/1.0 %d (body %s)", tt.name, resp.Proto, resp.StatusCode, tt.wantStatus, b)
			}
			if tt.wantStatus != 200 {
				checkError(t, response{resp.StatusCode, resp.Header, b}, tt.wantStatus, httpapi.CodeAccessDenied)
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("%s: after the response read %v, want EOF (HTTP/1.0 closes)", tt.name, err)
			}
			conn.Close()
		}
	})

	t.Run("keep-alive after error responses", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, srv)
		defer conn.Close()
		br := bufio.NewReader(conn)
		steps := []struct {
			name       string
			call       call
			wantStatus int
			chunked    bool
		}{
			{"403", call{body: body, key: "wrong"}, 403, false},
			{"400 timestamp", call{body: body, ts: ptr("soon")}, 400, false},
			{"400 body", call{body: `{"callNum":`}, 400, false},
			{"404 no data", call{body: `{"callNum":"010-0000-0000"}`}, 404, false},
			{"404 route", call{path: "/nope", body: body}, 404, false},
			{"405", call{method: http.MethodDelete, body: body}, 405, false},
			{"413 within the drain allowance", call{body: `{"callNum":"` + strings.Repeat("1", 100<<10) + `"}`}, 413, false},
			{"200", call{body: body}, 200, false},
			{"200 again", call{body: `{"callNum":"+82 10-2222-3333"}`}, 200, false},
			{"400 chunked", call{body: `{"callNum":1`}, 400, true},
			{"200 chunked", call{body: `{"callNum":"010-1234-5678"}`}, 200, true},
		}
		for _, s := range steps {
			req := f.request(t, "http://"+srv.Listener.Addr().String(), s.call)
			if s.chunked {
				req.ContentLength = -1 // unknown: sent chunked
			}
			if err := req.Write(conn); err != nil {
				t.Fatalf("%s: write request: %v", s.name, err)
			}
			resp := readResponse(t, br)
			if resp.status != s.wantStatus {
				t.Fatalf("%s: status = %d, want %d (body %s)", s.name, resp.status, s.wantStatus, resp.body)
			}
			if resp.status != 200 {
				if _, err := parseEnvelope(resp.body); err != nil {
					t.Errorf("%s: body %q: %v", s.name, resp.body, err)
				}
			}
			if resp.header.Get("Connection") == "close" {
				t.Fatalf("%s: server closes the connection, want keep-alive", s.name)
			}
		}
	})

	// Requests net/http cannot parse never reach the handler: net/http
	// answers 400 itself, in plain text (there is no hook for an envelope),
	// and closes the connection.
	t.Run("malformed requests are refused by net/http", func(t *testing.T) {
		t.Parallel()
		for _, raw := range []string{
			"POST /v1/lookups/%zz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
			"POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
			"POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
			"POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\nX-TC-Timestamp: 1\x002\r\n\r\n",
			"POST /v1/lookups/customer HTTP/1.1\r\nContent-Length: 0\r\n\r\n", // HTTP/1.1 without Host
			"POST /v1/lookups/customer HTTP/9.9\r\nHost: x\r\n\r\n",
		} {
			conn := dial(t, srv)
			if _, err := io.WriteString(conn, raw); err != nil {
				t.Fatalf("write %q: %v", raw, err)
			}
			resp := readResponse(t, bufio.NewReader(conn))
			if resp.status < 400 || resp.status >= 500 && resp.status != http.StatusHTTPVersionNotSupported {
				t.Errorf("%q: status %d, want a 4xx from net/http", raw, resp.status)
			}
			conn.Close()
		}
		r := do(t, f.request(t, srv.URL, call{body: body}))
		if r.status != http.StatusOK {
			t.Errorf("after malformed requests: status = %d, want 200", r.status)
		}
	})

	t.Run("slowloris is cut off by the header timeout", func(t *testing.T) {
		t.Parallel()
		conn := dial(t, srv)
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/lookups/customer HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		deadline := start.Add(15 * time.Second)
		closed := false
		buf := make([]byte, 512)
		for i := 0; !closed && time.Now().Before(deadline); i++ {
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: a\r\n", i); err != nil {
				closed = true
				break
			}
			_ = conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			n, err := conn.Read(buf)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
			case err != nil || n > 0: // EOF, reset, or a 408 before hanging up
				closed = true
			}
		}
		if !closed {
			t.Fatalf("a client sending headers slowly is still connected after %v", time.Since(start).Round(time.Second))
		}
		t.Logf("slow client cut off after %v", time.Since(start).Round(100*time.Millisecond))
	})
}

// dial opens a raw connection to srv with an overall deadline.
func dial(t testing.TB, srv *testServer) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readResponse reads one response from br and its whole body.
func readResponse(t testing.TB, br *bufio.Reader) response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}
