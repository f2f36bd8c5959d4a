package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/signature"
)

// The fixture's keys, as the helpdesk's admin UI would show them.
const (
	keyMain       = "bf7769e5321448de88838cdb" // looks like hex; used as its UTF-8 bytes
	keyRotated    = "rotated-2025-키-01"        // a second active key for customer (rotation), not ASCII
	keyURIOnly    = "uri-only-key-0123"        // accepts scheme uri_body only
	keyBoth       = "both-schemes-key"         // accepts body and uri_body
	keyRevoked    = "revoked-key-0123"
	keyExpired    = "expired-key-0123"
	keyLaterOff   = "revoked-tomorrow-key" // revoked_at in the future: still active
	keyOther      = "other-lookup-key"     // for lookup other only
	keyDisabled   = "disabled-lookup-key"  // for the disabled lookup
	keyRestricted = "restricted-key-01"    // for the lookup limited to 10.0.0.0/8
	keyByID       = "by-id-key-0123456"    // for customer_by_id and customer_phone
	keyFaults     = "faults-key-012345"    // for broken and slow
)

// customersSQL creates the customer data the lookups read: Korean names,
// phone numbers in mixed spellings, a nullable email, two customers sharing
// a number, and a view that sleeps per row.
const customersSQL = `
CREATE SCHEMA crm;
CREATE TABLE crm.customers (
    id          bigint PRIMARY KEY,
    customer_no text NOT NULL,
    name        text NOT NULL,
    phone       text NOT NULL,
    email       text NULL
);
CREATE INDEX customers_phone_idx ON crm.customers (custinfo.phone_key(phone));
INSERT INTO crm.customers (id, customer_no, name, phone, email) VALUES
    (1, 'C-1001', '홍길동', '010-1234-5678', 'hong@example.com'),
    (2, 'C-1002', '김민준', '+82 10-2222-3333', NULL),
    (3, 'C-1003', '이서연', '01044445555', 'lee@example.com'),
    (4, 'C-1004', '박"따옴표"<b>&amp;', '821099998888', NULL),
    (5, 'C-1005', '최하은', '+821077776666', NULL),
    (7, 'C-1007', '정가족 둘째', '02-555-1234', NULL),
    (6, 'C-1006', '정가족 첫째', '02-555-1234', 'family@example.com');
CREATE VIEW crm.slow_customers AS
    SELECT id, name, phone, pg_sleep(5)::text AS nap FROM crm.customers;
`

// lookupsSQL defines the healthy lookups and their keys.
const lookupsSQL = `
INSERT INTO custinfo.lookups (name, source, enabled, allowed_networks) VALUES
    ('customer',       'crm.customers', true,  NULL),
    ('customer_phone', 'crm.customers', true,  NULL),
    ('customer_by_id', 'crm.customers', true,  NULL),
    ('other',          'crm.customers', true,  NULL),
    ('disabled',       'crm.customers', false, NULL),
    ('keyless',        'crm.customers', true,  NULL),
    ('restricted',     'crm.customers', true,  '{10.0.0.0/8}');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
SELECT name, 'callNum', 'phone', 'exact', true, NULL, NULL FROM custinfo.lookups
WHERE name IN ('customer', 'other', 'disabled', 'keyless', 'restricted');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
SELECT name, 'nation', NULL, 'hint', false, NULL, NULL FROM custinfo.lookups
WHERE name IN ('customer', 'other', 'disabled', 'keyless', 'restricted');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('customer_phone', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('customer_by_id', 'id', 'id', 'exact', true, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
SELECT name, r.field, r.col, r.pos FROM custinfo.lookups,
    (VALUES ('userName', 'name', 1), ('id', 'customer_no', 2), ('email', 'email', 3)) AS r (field, col, pos);
INSERT INTO custinfo.api_keys (lookup, secret, label, schemes, expires_at, revoked_at) VALUES
    ('customer',       'bf7769e5321448de88838cdb', 'helpdesk 2024',    '{body}',          NULL, NULL),
    ('customer',       'rotated-2025-키-01',          'helpdesk 2025',    '{body}',          now() + interval '30 days', NULL),
    ('customer',       'uri-only-key-0123',             'uri scheme',       '{uri_body}',      NULL, NULL),
    ('customer',       'both-schemes-key',         'both schemes',     '{body,uri_body}', NULL, NULL),
    ('customer',       'revoked-key-0123',              'revoked',          '{body}',          NULL, now() - interval '1 hour'),
    ('customer',       'expired-key-0123',              'expired',          '{body}',          now() - interval '1 hour', NULL),
    ('customer',       'revoked-tomorrow-key',     'revoked tomorrow', '{body}',          NULL, now() + interval '1 day'),
    ('other',          'other-lookup-key',         'other',            '{body}',          NULL, NULL),
    ('disabled',       'disabled-lookup-key',      'disabled',         '{body}',          NULL, NULL),
    ('restricted',     'restricted-key-01',           'restricted',       '{body}',          NULL, NULL),
    ('customer_by_id', 'by-id-key-0123456',                'by id',            '{body}',          NULL, NULL),
    ('customer_phone', 'by-id-key-0123456',                'phone',            '{body}',          NULL, NULL);
`

// faultsSQL adds a lookup whose mapping names a column dropped after the
// mapping was written (the statement-time check accepted it; the load-time
// check catches it) and one whose source sleeps past any sensible query timeout.
const faultsSQL = `
ALTER TABLE crm.customers ADD COLUMN nickname text;
INSERT INTO custinfo.lookups (name, source) VALUES ('broken', 'crm.customers'), ('slow', 'crm.slow_customers');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required) VALUES
    ('broken', 'callNum', 'phone', 'exact', true),
    ('slow', 'callNum', 'phone', 'exact', true);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
    ('broken', 'userName', 'name', 1),
    ('broken', 'nick', 'nickname', 2),
    ('slow', 'userName', 'name', 1),
    ('slow', 'nap', 'nap', 2);
INSERT INTO custinfo.api_keys (lookup, secret, label) VALUES
    ('broken', 'faults-key-012345', 'faults'), ('slow', 'faults-key-012345', 'faults');
`

// breakSQL drops the column of the broken lookup, in a transaction after the
// one that wrote its mapping.
const breakSQL = `ALTER TABLE crm.customers DROP COLUMN nickname`

// fixture is a fresh database with the customers, lookups and keys above,
// and the configuration snapshot compiled from it.
type fixture struct {
	pool   *pgxpool.Pool
	holder *reload.Holder
	// now is the pinned server clock.
	now time.Time

	mu       sync.Mutex
	outcomes map[string]httpapi.Outcome // by request id
}

// newFixture creates the database and loads its configuration; withFaults
// adds the broken and slow lookups.
func newFixture(t testing.TB, withFaults bool) *fixture {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.New(t)
	sql := customersSQL + lookupsSQL
	if withFaults {
		sql += faultsSQL
	}
	if _, err := pool.Exec(ctx, sql); err != nil {
		t.Fatalf("create fixture: %v", err)
	}
	if withFaults {
		if _, err := pool.Exec(ctx, breakSQL); err != nil {
			t.Fatalf("create fixture: %v", err)
		}
	}
	holder := reload.New(reload.Config{Pool: pool})
	if err := holder.Load(ctx); err != nil {
		t.Fatalf("load config: %v", err)
	}
	return &fixture{
		pool:     pool,
		holder:   holder,
		now:      time.UnixMilli(time.Now().UnixMilli()),
		outcomes: map[string]httpapi.Outcome{},
	}
}

// handler returns the API handler over the fixture with the pinned clock;
// cfg may set other fields (QueryTimeout, MaxBody).
func (f *fixture) handler(cfg httpapi.Config) http.Handler {
	cfg.SnapshotFunc = f.holder.Snapshot
	cfg.DB = f.pool
	cfg.NowFunc = func() time.Time { return f.now }
	cfg.DoneFunc = func(o *httpapi.Outcome) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.outcomes[o.RequestID] = *o
	}
	return httpapi.New(cfg)
}

// outcome returns what DoneFunc was told about the request with id. DoneFunc
// runs before the handler returns, so normally before the client has the
// response; outcome still waits up to 2 s for it.
func (f *fixture) outcome(id string) (httpapi.Outcome, bool) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		f.mu.Lock()
		o, ok := f.outcomes[id]
		f.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return o, ok
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ts returns the X-TC-Timestamp for the server's pinned clock plus d.
func (f *fixture) ts(d time.Duration) string {
	return strconv.FormatInt(f.now.Add(d).UnixMilli(), 10)
}

// nowMs is the pinned clock in epoch milliseconds, as details show it.
func (f *fixture) nowMs() string { return f.ts(0) }

// serveTimeouts sets the timeouts and header limit of cmd/custinfo/serve.go
// (function serve) on srv, for a query timeout of queryTimeout.
func serveTimeouts(srv *http.Server, queryTimeout time.Duration) {
	srv.ReadHeaderTimeout = 5 * time.Second
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = queryTimeout + 10*time.Second
	srv.IdleTimeout = 120 * time.Second
	srv.MaxHeaderBytes = 16 << 10
	srv.ErrorLog = log.New(io.Discard, "", 0)
}

// countingListener counts the bytes the server reads from its connections.
type countingListener struct {
	net.Listener
	read atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.read}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// testServer is the handler behind a real HTTP server on 127.0.0.1 with the
// production timeouts.
type testServer struct {
	*httptest.Server
	listener *countingListener
}

// serve starts h on a real HTTP server with the timeouts of
// cmd/custinfo/serve.go; it is closed when the test ends.
func serve(t testing.TB, h http.Handler) *testServer {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	serveTimeouts(srv.Config, httpapi.DefaultQueryTimeout)
	srv.Start()
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, listener: cl}
}

// call is one request as the helpdesk would send it, with the knobs to
// make it wrong in one way.
type call struct {
	method string // default POST
	path   string // default /v1/lookups/customer; may carry a query
	body   string
	key    string           // default keyMain
	secret []byte           // when set, used as the HMAC key instead of key's UTF-8 bytes
	scheme signature.Scheme // default body

	ts       *string // X-TC-Timestamp; nil means the server's now, "" sends it empty
	noTS     bool    // send no X-TC-Timestamp at all
	noSig    bool    // send no Authorization at all
	sig      *string // Authorization to send instead of the computed one
	signBody *string // sign this body instead of the one sent
	signTS   *string // sign with this timestamp instead of the one sent
	signPath *string // sign with this path (uri_body) instead of the one sent

	contentType *string // default application/json; charset=UTF-8, "" for none
	header      http.Header
}

func ptr[T any](v T) *T { return &v }

// helpdeskSign is the helpdesk's signature: Base64(HMAC-SHA256(key's UTF-8
// bytes, message)), message being body+timestamp (scheme body) or
// path+body+timestamp (scheme uri_body), the path without its query.
func helpdeskSign(key string, scheme signature.Scheme, path string, body []byte, ts string) string {
	path, _, _ = strings.Cut(path, "?")
	return signature.Sign([]byte(key), scheme, path, body, ts)
}

// request builds the http.Request for c against baseURL.
func (f *fixture) request(t testing.TB, baseURL string, c call) *http.Request {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.path == "" {
		c.path = "/v1/lookups/customer"
	}
	if c.key == "" {
		c.key = keyMain
	}
	if c.scheme == "" {
		c.scheme = signature.SchemeBody
	}
	ts := f.ts(0)
	if c.ts != nil {
		ts = *c.ts
	}
	req, err := http.NewRequest(c.method, baseURL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatalf("new request %s %s: %v", c.method, c.path, err)
	}
	ct := "application/json; charset=UTF-8"
	if c.contentType != nil {
		ct = *c.contentType
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if !c.noTS {
		req.Header.Set("X-TC-Timestamp", ts)
	}
	if !c.noSig {
		signBody, signTS, signPath := c.body, ts, c.path
		if c.signBody != nil {
			signBody = *c.signBody
		}
		if c.signTS != nil {
			signTS = *c.signTS
		}
		if c.signPath != nil {
			signPath = *c.signPath
		}
		sig := helpdeskSign(c.key, c.scheme, signPath, []byte(signBody), signTS)
		if c.secret != nil {
			p, _, _ := strings.Cut(signPath, "?")
			sig = signature.Sign(c.secret, c.scheme, p, []byte(signBody), signTS)
		}
		if c.sig != nil {
			sig = *c.sig
		}
		req.Header.Set("Authorization", sig)
	}
	for k, vs := range c.header {
		req.Header.Del(k)
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req
}

// response is what came back.
type response struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 15 * time.Second}

// do sends req and reads the whole response.
func do(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read response: %v", req.Method, req.URL.Path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// envelope is the error envelope's three members.
type envelope struct {
	Code, Message, Detail string
}

// parseEnvelope checks that body is exactly
// {"error":{"code":"…","message":"…","detail":"…"}}: valid UTF-8 JSON, those
// members once each and nothing else, every value a string.
func parseEnvelope(body []byte) (envelope, error) {
	if !utf8.Valid(body) {
		return envelope{}, errors.New("envelope is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := expectDelim(dec, '{'); err != nil {
		return envelope{}, err
	}
	if err := expectKey(dec, "error"); err != nil {
		return envelope{}, err
	}
	members, err := stringObject(dec)
	if err != nil {
		return envelope{}, fmt.Errorf("error member: %w", err)
	}
	if err := expectEnd(dec); err != nil {
		return envelope{}, err
	}
	var e envelope
	seen := map[string]bool{}
	for _, m := range members {
		switch m.name {
		case "code":
			e.Code = m.value
		case "message":
			e.Message = m.value
		case "detail":
			e.Detail = m.value
		default:
			return envelope{}, fmt.Errorf("unexpected member %q in error", m.name)
		}
		seen[m.name] = true
	}
	if len(seen) != 3 {
		return envelope{}, fmt.Errorf("error has members %v, want code, message and detail", members)
	}
	return e, nil
}

// field is one member of a JSON object whose values are all strings.
type field struct {
	name, value string
}

// parseData checks that body is exactly {"data":{…}} with every value a
// string and returns the members in order.
func parseData(body []byte) ([]field, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("data is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	if err := expectKey(dec, "data"); err != nil {
		return nil, err
	}
	fields, err := stringObject(dec)
	if err != nil {
		return nil, fmt.Errorf("data member: %w", err)
	}
	return fields, expectEnd(dec)
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("read %q: %w", d, err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return fmt.Errorf("got %v, want %q", tok, d)
	}
	return nil
}

func expectKey(dec *json.Decoder, name string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("read key %q: %w", name, err)
	}
	if got, ok := tok.(string); !ok || got != name {
		return fmt.Errorf("got key %v, want %q", tok, name)
	}
	return nil
}

// stringObject reads an object whose values are all strings, rejecting
// duplicate names.
func stringObject(dec *json.Decoder) ([]field, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name := tok.(string) // object keys are strings
		if seen[name] {
			return nil, fmt.Errorf("member %q appears twice", name)
		}
		seen[name] = true
		tok, err = dec.Token()
		if err != nil {
			return nil, err
		}
		v, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("member %q is %T, want a string", name, tok)
		}
		out = append(out, field{name, v})
	}
	return out, expectDelim(dec, '}')
}

// expectEnd reads the closing brace of the outer object and then the end of input.
func expectEnd(dec *json.Decoder) error {
	if dec.More() {
		return errors.New("outer object has more than one member")
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("data after the object (%v)", err)
	}
	return nil
}

// wantMessage is the envelope's message for each status, per DESIGN §1 for
// the spec's four and the handler's own wording for HTTP's.
var wantMessage = map[int]string{
	http.StatusBadRequest:            "Invalid request",
	http.StatusForbidden:             "Access to the requested resource is denied",
	http.StatusInternalServerError:   "Server error",
	http.StatusMethodNotAllowed:      "Method not allowed",
	http.StatusRequestEntityTooLarge: "Request body too large",
}

// messageFor returns the message expected with status and code: a 404 is
// "No data found" when a lookup matched nothing and "Not found" for a route.
func messageFor(status int, code string) string {
	if status == http.StatusNotFound {
		if code == httpapi.CodeNoData {
			return "No data found"
		}
		return "Not found"
	}
	return wantMessage[status]
}

// checkError asserts that r is status with the envelope carrying code and the
// message of its status, and returns the envelope.
func checkError(t testing.TB, r response, status int, code string) envelope {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	e, err := parseEnvelope(r.body)
	if err != nil {
		t.Fatalf("body %q is not the error envelope: %v", r.body, err)
	}
	if e.Code != code {
		t.Errorf("code = %q, want %q (detail %q)", e.Code, code, e.Detail)
	}
	if want := messageFor(status, code); e.Message != want {
		t.Errorf("message = %q, want %q", e.Message, want)
	}
	if e.Detail == "" {
		t.Errorf("detail is empty")
	}
	return e
}
