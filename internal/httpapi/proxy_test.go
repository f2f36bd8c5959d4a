package httpapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/signature"
)

// opsKey is the one key of the operations fixture, valid for every lookup.
const opsKey = "ops-fixture-key-7f3a"

// opsSQL defines one customer and lookups that differ only in who may call
// them: anyone, IPv4 loopback, IPv6 loopback, or an office's networks that
// are reachable here only through a trusted proxy.
const opsSQL = `
CREATE SCHEMA opsdata;
CREATE TABLE opsdata.people (id bigint PRIMARY KEY, name text NOT NULL, phone text NOT NULL);
INSERT INTO opsdata.people VALUES (1, '홍길동', '010-9876-1357');
INSERT INTO custinfo.lookups (name, source, allowed_networks) VALUES
    ('open', 'opsdata.people', NULL),
    ('v4', 'opsdata.people', '{127.0.0.1/32}'),
    ('v6', 'opsdata.people', '{::1/128}'),
    ('office', 'opsdata.people', '{203.0.113.0/24,2001:db8::/32}');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
    SELECT name, 'callNum', 'phone', 'phone', true, 'nation', 'KR' FROM custinfo.lookups;
INSERT INTO custinfo.lookup_params (lookup, field, match) SELECT name, 'nation', 'hint' FROM custinfo.lookups;
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
    SELECT name, 'userName', 'name', 1 FROM custinfo.lookups;
INSERT INTO custinfo.api_keys (secret, label) VALUES ('ops-fixture-key-7f3a', 'ops');
`

// opsFixture is a database with opsSQL and its loaded configuration.
type opsFixture struct {
	pool   *pgxpool.Pool
	holder *reload.Holder

	mu  sync.Mutex
	ips map[string]netip.Addr // client address of each request id, from DoneFunc
}

func newOpsFixture(t testing.TB, reloadFunc func(error)) *opsFixture {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.New(t)
	if _, err := pool.Exec(ctx, opsSQL); err != nil {
		t.Fatalf("create fixture: %v", err)
	}
	holder := reload.New(reload.Config{Pool: pool, ReloadFunc: reloadFunc})
	if err := holder.Load(ctx); err != nil {
		t.Fatalf("load config: %v", err)
	}
	return &opsFixture{pool: pool, holder: holder, ips: map[string]netip.Addr{}}
}

// config returns a handler configuration over the fixture that records
// each request's client address.
func (f *opsFixture) config() httpapi.Config {
	return httpapi.Config{
		SnapshotFunc: f.holder.Snapshot,
		DB:           f.pool,
		DoneFunc: func(o *httpapi.Outcome) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.ips[o.RequestID] = o.ClientIP
		},
	}
}

func (f *opsFixture) clientIP(id string) netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ips[id]
}

// opsListen serves h on a loopback address of the given network ("tcp4" on
// 127.0.0.1 or "tcp6" on [::1]) and returns its base URL.
func opsListen(t testing.TB, h http.Handler, network string) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// opsBody is a request for the fixture's customer.
const opsBody = `{"callNum":"010-9876-1357","nation":"82"}`

// opsRequest builds a helpdesk request for lookup, signed with key, carrying
// the given headers (pairs of name and value).
func opsRequest(t testing.TB, baseURL, lookup, key, body string, headers ...string) *http.Request {
	t.Helper()
	path := "/v1/lookups/" + lookup
	req, err := http.NewRequest(http.MethodPost, baseURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", signature.Sign([]byte(key), signature.SchemeBody, path, []byte(body), ts))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return req
}

var opsClient = &http.Client{Timeout: 15 * time.Second}

// opsDo sends req and returns the status, the request id and the body.
func opsDo(t testing.TB, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := opsClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("X-Request-Id"), string(b)
}

func TestAllowedNetworksAndTrustedProxies(t *testing.T) {
	t.Parallel()
	f := newOpsFixture(t, nil)
	mustPrefixes := func(s string) []netip.Prefix {
		p, err := httpapi.ParsePrefixes(s)
		if err != nil {
			t.Fatalf("ParsePrefixes(%q): %v", s, err)
		}
		return p
	}
	// One server per client-address rule, each on IPv4 and IPv6 loopback.
	rules := map[string]string{
		"direct":          "",
		"loopback-proxy":  "127.0.0.1, ::1/128",
		"elsewhere-proxy": "10.9.9.9/32,2001:db8:ffff::/48",
	}
	urls := map[string]string{}
	for name, trusted := range rules {
		cfg := f.config()
		cfg.IPExtractor = httpapi.ClientIPExtractor(mustPrefixes(trusted))
		h := httpapi.New(cfg)
		urls[name+"/tcp4"] = opsListen(t, h, "tcp4")
		urls[name+"/tcp6"] = opsListen(t, h, "tcp6")
	}

	tests := []struct {
		name   string
		server string // rule/network
		lookup string
		xff    []string // X-Forwarded-For header values sent
		want   int
		wantIP string
	}{
		// Without trusted proxies the socket peer is the client.
		{"direct v4 peer allowed", "direct/tcp4", "v4", nil, 200, "127.0.0.1"},
		{"direct v6 peer allowed", "direct/tcp6", "v6", nil, 200, "::1"},
		{"direct v6 peer outside v4 list", "direct/tcp6", "v4", nil, 403, "::1"},
		{"direct v4 peer outside v6 list", "direct/tcp4", "v6", nil, 403, "127.0.0.1"},
		{"direct open lookup", "direct/tcp6", "open", nil, 200, "::1"},
		{"direct spoofed XFF ignored v4", "direct/tcp4", "office", []string{"203.0.113.7"}, 403, "127.0.0.1"},
		{"direct spoofed XFF ignored v6", "direct/tcp6", "office", []string{"2001:db8::5"}, 403, "::1"},
		{"direct spoofed XFF cannot reach v4 from v6", "direct/tcp6", "v4", []string{"127.0.0.1"}, 403, "::1"},

		// Behind a trusted proxy the nearest untrusted X-Forwarded-For entry is the client.
		{"proxy v4 forwards office v4 client", "loopback-proxy/tcp4", "office", []string{"203.0.113.7"}, 200, "203.0.113.7"},
		{"proxy v6 forwards office v4 client", "loopback-proxy/tcp6", "office", []string{"203.0.113.7"}, 200, "203.0.113.7"},
		{"proxy v4 forwards office v6 client", "loopback-proxy/tcp4", "office", []string{"2001:db8::5"}, 200, "2001:db8::5"},
		{"proxy v6 forwards bracketed v6 client", "loopback-proxy/tcp6", "office", []string{"[2001:db8::5]"}, 200, "2001:db8::5"},
		{"proxy forwards stranger", "loopback-proxy/tcp4", "office", []string{"198.51.100.1"}, 403, "198.51.100.1"},
		{"client-written entry before the proxy's is ignored", "loopback-proxy/tcp4", "office", []string{"203.0.113.7, 198.51.100.1"}, 403, "198.51.100.1"},
		{"rightmost untrusted entry wins", "loopback-proxy/tcp6", "office", []string{"198.51.100.1, 203.0.113.7"}, 200, "203.0.113.7"},
		{"entries across repeated headers", "loopback-proxy/tcp4", "office", []string{"198.51.100.1", "203.0.113.7"}, 200, "203.0.113.7"},
		{"private address is not trusted unless listed", "loopback-proxy/tcp4", "office", []string{"203.0.113.7, 10.1.2.3"}, 403, "10.1.2.3"},
		{"unparsable entry falls back to the peer", "loopback-proxy/tcp4", "office", []string{"203.0.113.7, garbage"}, 403, "127.0.0.1"},
		{"proxy without XFF is its own client", "loopback-proxy/tcp4", "v4", nil, 200, "127.0.0.1"},
		{"forwarded client is not the loopback proxy", "loopback-proxy/tcp4", "v4", []string{"203.0.113.7"}, 403, "203.0.113.7"},

		// Trusted proxies elsewhere: a loopback peer is not one of them.
		{"untrusted peer's XFF ignored v4", "elsewhere-proxy/tcp4", "office", []string{"203.0.113.7"}, 403, "127.0.0.1"},
		{"untrusted peer's XFF ignored v6", "elsewhere-proxy/tcp6", "office", []string{"2001:db8::5"}, 403, "::1"},
		{"untrusted peer judged by its own address", "elsewhere-proxy/tcp4", "v4", []string{"203.0.113.7"}, 200, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, ok := urls[tt.server]
			if !ok {
				t.Fatalf("no server %q", tt.server)
			}
			var headers []string
			for _, v := range tt.xff {
				headers = append(headers, "X-Forwarded-For", v)
			}
			req := opsRequest(t, base, tt.lookup, opsKey, opsBody, headers...)
			status, id, body := opsDo(t, req)
			if status != tt.want {
				t.Errorf("POST %s via %s with X-Forwarded-For %q: status %d (%s), want %d", tt.lookup, tt.server, tt.xff, status, strings.TrimSpace(body), tt.want)
			}
			if got := f.clientIP(id); got.String() != tt.wantIP {
				t.Errorf("client IP of %s = %s, want %s", id, got, tt.wantIP)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string // prefixes joined by " "
		wantErr bool
	}{
		{"empty", "", "", false},
		{"cidrs and addresses", " 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,::1", "10.0.0.0/8 192.0.2.1/32 2001:db8::/32 ::1/128", false},
		{"host bits are masked", "10.1.2.3/8", "10.0.0.0/8", false},
		{"empty entries skipped", "10.0.0.1,,", "10.0.0.1/32", false},
		{"hostname", "proxy.internal", "", true},
		{"bad bits", "10.0.0.0/33", "", true},
		{"zone", "fe80::1%eth0", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := httpapi.ParsePrefixes(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParsePrefixes(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if strings.Join(s, " ") != tt.want {
				t.Errorf("ParsePrefixes(%q) = %q, want %q", tt.in, strings.Join(s, " "), tt.want)
			}
		})
	}
}

func TestClientIPExtractorMappedPrefix(t *testing.T) {
	t.Parallel()
	// A proxy named by its IPv4-mapped IPv6 form is trusted at its IPv4 address.
	p, err := httpapi.ParsePrefixes("::ffff:192.0.2.0/120")
	if err != nil {
		t.Fatal(err)
	}
	extract := httpapi.ClientIPExtractor(p)
	req := httptest.NewRequest(http.MethodPost, "/v1/lookups/x", nil)
	req.RemoteAddr = "192.0.2.10:4321"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	if got := extract(req); got != "203.0.113.9" {
		t.Errorf("client of peer 192.0.2.10 trusted as ::ffff:192.0.2.0/120 = %q, want 203.0.113.9", got)
	}
}
