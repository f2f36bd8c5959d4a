package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/faultproxy"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/signature"
)

// opsKey is the key of opsSeedSQL, valid for every lookup.
const opsKey = "ops-serve-key-4c1d"

// opsPhone is the customer's number in opsSeedSQL; opsSpellings are the
// ways it may be written, none of which may reach a log.
const opsPhone = "010-9876-1357"

var opsSpellings = []string{"010-9876-1357", "01098761357", "+821098761357", "821098761357", "+82 10-9876-1357", "1098761357", "10-9876-1357"}

// opsSeedSQL defines one customer, a lookup of it by phone number, and a key.
const opsSeedSQL = `
CREATE SCHEMA opsdata;
CREATE TABLE opsdata.people (id bigint PRIMARY KEY, customer_no text NOT NULL, name text NOT NULL, phone text NOT NULL);
INSERT INTO opsdata.people VALUES (1, 'C-0001', '홍길동', '010-9876-1357');
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'opsdata.people');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('customer', 'nation', NULL, 'hint', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
    ('customer', 'userName', 'name', 1), ('customer', 'id', 'customer_no', 2);
INSERT INTO custinfo.api_keys (secret, label) VALUES ('ops-serve-key-4c1d', 'ops');
`

// opsSeed returns the URL of a fresh database holding opsSeedSQL.
func opsSeed(t *testing.T) string {
	t.Helper()
	u := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, opsSeedSQL); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return u
}

// opsServer is one serve run of a test.
type opsServer struct {
	base        string // scheme://host:port of the lookup listener
	metricsBase string // http://host:port of --metrics-addr, if set
	logs        *pgtest.LogBuffer
	stop        func() error // ends serve and returns its error; later calls return the same
}

// opsStart runs serve with f until the test ends (or stop is called), logging
// JSON at debug level into the server's logs. Zero fields get test defaults.
func opsStart(t *testing.T, f serveFlags) *opsServer {
	t.Helper()
	if f.addr == "" {
		f.addr = "127.0.0.1:0"
	}
	if f.queryTimeout == 0 {
		f.queryTimeout = 2 * time.Second
	}
	if f.timestampWindow == 0 {
		f.timestampWindow = 5 * time.Minute
	}
	if f.reloadInterval == 0 {
		f.reloadInterval = time.Minute
	}
	if f.shutdownTimeout == 0 {
		f.shutdownTimeout = 5 * time.Second
	}
	s := &opsServer{logs: &pgtest.LogBuffer{}}
	logger, err := newLogger(s.logs, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	metricsCh := make(chan string, 1)
	if f.metricsAddr != "" {
		f.metricsReady = func(addr string) { metricsCh <- addr }
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, logger, func(addr string) { addrCh <- addr }) }()
	var once sync.Once
	var serveErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(30 * time.Second):
				serveErr = context.DeadlineExceeded
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "http://"
	if f.tlsCert != "" {
		scheme = "https://"
	}
	select {
	case addr := <-addrCh:
		s.base = scheme + addr
	case err := <-done:
		t.Fatalf("serve ended before listening: %v\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen within 30 s")
	}
	if f.metricsAddr != "" {
		select {
		case addr := <-metricsCh:
			s.metricsBase = "http://" + addr
		default:
			t.Fatal("serve listens but did not report its metrics address")
		}
	}
	return s
}

// opsLookup builds a signed helpdesk request for lookup with body, signed
// with key; a sig other than "" replaces the signature.
func opsLookup(t *testing.T, base, lookup, key, body, sig string) *http.Request {
	t.Helper()
	path := "/v1/lookups/" + lookup
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if sig == "" {
		sig = signature.Sign([]byte(key), signature.SchemeBody, path, []byte(body), ts)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", sig)
	return req
}

// opsDo sends req with client and returns the status and body.
func opsDo(t *testing.T, client *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", req.URL, err)
	}
	return resp.StatusCode, string(b)
}

func opsGet(t *testing.T, client *http.Client, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return opsDo(t, client, req)
}

var opsClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}

// pollStatus polls GET u until it answers want, for at most 20 s, and
// returns the last body.
func pollStatus(t *testing.T, u string, want int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: 5 * time.Second}
	var last string
	for {
		resp, err := client.Get(u)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = strconv.Itoa(resp.StatusCode) + " " + string(b)
			if resp.StatusCode == want {
				return string(b)
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s did not answer %d within 20 s; last: %s", u, want, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReadyzFollowsDatabase(t *testing.T) {
	t.Parallel()
	dbURL := opsSeed(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	u.Host = proxy.Addr()
	s := opsStart(t, serveFlags{databaseURL: u.String()})

	if body := pollStatus(t, s.base+"/readyz", 200); !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/readyz with the database up = %s", body)
	}
	proxy.Down()
	body := pollStatus(t, s.base+"/readyz", 503)
	if want := `{"status":"unavailable","reason":"database unreachable"}`; strings.TrimSpace(body) != want {
		t.Errorf("/readyz with the database down = %s, want %s", body, want)
	}
	if status, _ := opsGet(t, opsClient, s.base+"/healthz"); status != 200 {
		t.Errorf("/healthz with the database down: status %d, want 200 (the process is up)", status)
	}
	proxy.Up()
	pollStatus(t, s.base+"/readyz", 200)
	if !strings.Contains(s.logs.String(), "readiness: database ping failed") {
		t.Errorf("the log does not say why /readyz failed:\n%s", s.logs)
	}
}

func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	s := opsStart(t, serveFlags{databaseURL: opsSeed(t), metricsAddr: "127.0.0.1:0"})
	if status, body := opsDo(t, opsClient, opsLookup(t, s.base, "customer", opsKey, `{"callNum":"`+opsPhone+`"}`, "")); status != 200 {
		t.Fatalf("lookup: status %d (%s), want 200", status, body)
	}
	tests := []struct {
		name, url string
		want      int
		contains  string
	}{
		{"metrics on the metrics listener", s.metricsBase + "/metrics", 200, `custinfo_requests_total{code="ok",lookup="customer"} 1`},
		{"pool stats on the metrics listener", s.metricsBase + "/metrics", 200, `custinfo_db_pool_max_conns{pool="primary"} `},
		{"reloads on the metrics listener", s.metricsBase + "/metrics", 200, `custinfo_config_reloads_total{result="ok"} `},
		{"readyz on the metrics listener", s.metricsBase + "/readyz", 200, `"ready"`},
		{"healthz on the metrics listener", s.metricsBase + "/healthz", 200, `"ok"`},
		{"no lookups on the metrics listener", s.metricsBase + "/v1/lookups/customer", 404, ""},
		{"no metrics on the lookup listener", s.base + "/metrics", 404, `"code":"not_found"`},
		{"healthz stays on the lookup listener", s.base + "/healthz", 200, `"ok"`},
		{"readyz stays on the lookup listener", s.base + "/readyz", 200, `"ready"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := opsGet(t, opsClient, tt.url)
			if status != tt.want || !strings.Contains(body, tt.contains) {
				t.Errorf("GET %s = %d, want %d with %q; body:\n%.2000s", tt.url, status, tt.want, tt.contains, body)
			}
		})
	}
	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := opsClient.Get(s.metricsBase + "/healthz"); err == nil {
		t.Errorf("the metrics listener still answers after serve returned")
	}
}

func TestNoMetricsOnMainListener(t *testing.T) {
	t.Parallel()
	s := opsStart(t, serveFlags{databaseURL: opsSeed(t)})
	if status, _ := opsDo(t, opsClient, opsLookup(t, s.base, "nosuch", opsKey, `{"callNum":"`+opsPhone+`"}`, "")); status != 403 {
		t.Fatalf("unknown lookup: status %d, want 403", status)
	}
	if status, body := opsGet(t, opsClient, s.base+"/metrics"); status != 404 || strings.Contains(body, "custinfo_") {
		t.Errorf("GET /metrics on --addr without --metrics-addr = %d, want 404:\n%.3000s", status, body)
	}
	if !strings.Contains(s.logs.String(), "no --metrics-addr") {
		t.Errorf("the log does not say that /metrics is not served:\n%s", s.logs)
	}
}

func TestServeFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad proxy", []string{"--trusted-proxies", "10.0.0.0/8,proxy.local"}, "--trusted-proxies"},
		{"cert without key", []string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together"},
		{"missing cert file", []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, "load TLS certificate"},
		{"min over max", []string{"--pool-min-conns", "9", "--pool-max-conns", "3"}, "--pool-min-conns 9"},
		{"unknown replay mode", []string{"--replay", "off"}, "--replay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := append([]string{"serve", "--database-url", "postgres://nobody@127.0.0.1:1/none"}, tt.args...)
			err := run(context.Background(), args, strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("custinfo %s: error %v, want one with %q", strings.Join(args, " "), err, tt.want)
			}
		})
	}
}

func TestServeWarnsAboutPublishedAndWeakKeys(t *testing.T) {
	t.Parallel()
	u := opsSeed(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	// The published demo key, and a weak key stored before keys had to be strong.
	_, err = conn.Exec(ctx, `
INSERT INTO custinfo.api_keys (secret, label) VALUES ('`+publishedDemoKey+`', 'demo');
ALTER TABLE custinfo.api_keys DISABLE TRIGGER api_keys_check;
INSERT INTO custinfo.api_keys (secret, label) VALUES ('weak42', 'old');
INSERT INTO custinfo.api_keys (secret, label, revoked_at) VALUES ('revoked-weak', 'gone', now());
ALTER TABLE custinfo.api_keys ENABLE TRIGGER api_keys_check;`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := opsStart(t, serveFlags{databaseURL: u})
	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	logs := s.logs.String()
	for _, want := range []string{
		`"msg":"an active key is the published demo key`, `"fingerprint":"` + fingerprint(publishedDemoKey) + `"`,
		`"msg":"an active key is weaker than custinfo now accepts`, `"fingerprint":"` + fingerprint("weak42") + `"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve's log has no %s:\n%s", want, logs)
		}
	}
	for _, secret := range []string{publishedDemoKey, "weak42", opsKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("serve's log shows the key %q", secret)
		}
	}
	if strings.Contains(logs, fingerprint("revoked-weak")) || strings.Contains(logs, fingerprint(opsKey)) {
		t.Errorf("serve warns about a revoked or a good key:\n%s", logs)
	}
}

// TestKeysSourceRefused maps a lookup onto custinfo.api_keys, as if written
// with the statement-time checks off: serve answers 500
// lookup_misconfigured without the key, and lookups check names the schema.
func TestKeysSourceRefused(t *testing.T) {
	t.Parallel()
	u := opsSeed(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `BEGIN; SET LOCAL custinfo.mapping_checks = off;
INSERT INTO custinfo.lookups (name, source) VALUES ('keys', 'custinfo.api_keys');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required) VALUES ('keys', 'label', 'label', 'exact', true);
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('keys', 'secret', 'secret');
COMMIT;`)
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := opsStart(t, serveFlags{databaseURL: u})
	status, body := opsDo(t, opsClient, opsLookup(t, s.base, "keys", opsKey, `{"label":"ops"}`, ""))
	if status != 500 || !strings.Contains(body, `"code":"lookup_misconfigured"`) || strings.Contains(body, opsKey) {
		t.Errorf("lookup on custinfo.api_keys = %d %s, want 500 lookup_misconfigured without the key", status, body)
	}
	out, _, err := cliRun(t, "", "lookups", "check", "--database-url", u, "keys")
	if err == nil || !strings.Contains(out, `problem: source "custinfo.api_keys" is in schema "custinfo"`) || strings.Contains(out, opsKey) {
		t.Errorf("lookups check keys = %v:\n%s", err, out)
	}
}
