package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/custinfo/custinfo/internal/faultproxy"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/signature"
)

// The fault tests run the real program (serve, on port 0) against a
// database reached through a faultproxy, break the network or the database,
// and watch the HTTP API answer and recover. They are not parallel: each ends
// with a goroutine-leak check that must not see other tests' goroutines.

const (
	faultQueryTimeout = time.Second
	// faultMargin is how much later than the query timeout a failed lookup
	// may answer: the HTTP round trip and scheduling on a busy machine.
	// A hang would show as the client's 15 s timeout.
	faultMargin = 2 * time.Second
	// faultRecovery bounds how long lookups may keep failing once the
	// database is back. The goal is 2 s; the measured time is logged. The
	// bound is wider because a new PostgreSQL connection alone can take
	// seconds on a loaded machine; it still rules out waiting for the
	// periodic reload, a restart or an unbounded backoff.
	faultRecovery = 10 * time.Second
	faultSecret   = "fault-test-key-0123456789"
	faultPhone    = "010-1234-5678"
)

// faultFixture is the customer table, lookup and key of the fault tests.
const faultFixture = `
CREATE TABLE public.fault_customers (id text PRIMARY KEY, name text NOT NULL, phone text NOT NULL);
CREATE INDEX fault_customers_phone_idx ON public.fault_customers (custinfo.phone_key(phone));
INSERT INTO public.fault_customers VALUES
    ('C-1', 'Hong Gildong', '010-1234-5678'),
    ('C-2', 'Kim Minjun', '+82 10-2222-3333');
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'public.fault_customers');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
VALUES ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
       ('customer', 'nation', NULL, 'hint', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
VALUES ('customer', 'userName', 'name', 1), ('customer', 'id', 'id', 2);
INSERT INTO custinfo.api_keys (secret, label) VALUES ('` + faultSecret + `', 'fault test');
`

// faultEnv is one running server behind a fault proxy.
type faultEnv struct {
	t      *testing.T
	admin  *pgxpool.Pool // straight to the test database, one connection
	proxy  *faultproxy.Proxy
	base   string
	client *http.Client
	logs   *faultLog
	// answered counts the lookup requests that got an HTTP response: each
	// must leave one access-log row.
	answered atomic.Int64
}

// startFaultEnv creates a database with the fixture, a proxy in front of it
// and the server, all stopped when the test ends; then it checks that no
// goroutine is left behind.
func startFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	leakOpts := []goleak.Option{goleak.IgnoreCurrent()}
	t.Cleanup(func() { goleak.VerifyNone(t, leakOpts...) }) // registered first: runs last

	dbURL := pgtest.URL(t)
	ctx := context.Background()
	adminCfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	adminCfg.MaxConns = 1 // so pg_terminate_backend from it spares it
	admin, err := pgxpool.NewWithConfig(ctx, adminCfg)
	if err != nil {
		t.Fatalf("connect admin pool: %v", err)
	}
	t.Cleanup(admin.Close)
	if _, err := admin.Exec(ctx, faultFixture); err != nil {
		t.Fatalf("create fixture: %v", err)
	}

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	proxy, err := faultproxy.New(u.Host)
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	})
	u.Host = proxy.Addr()

	logs := &faultLog{addr: make(chan string, 1)}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	args := []string{"serve",
		"--database-url", u.String(),
		"--addr", "127.0.0.1:0",
		"--query-timeout", faultQueryTimeout.String(),
		"--reload-interval", "1h", // only NOTIFY (or a listener reconnect) reloads
		"--pool-max-conns", "4",
		"--shutdown-timeout", "10s",
		"--log-format", "json",
	}
	go func() { done <- run(runCtx, args, strings.NewReader(""), io.Discard, logs) }()

	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	fe := &faultEnv{t: t, admin: admin, proxy: proxy, logs: logs,
		client: &http.Client{Transport: transport, Timeout: 15 * time.Second}}
	t.Cleanup(func() {
		// Heal the network first, so the shutdown's flush can reach the database.
		proxy.Up()
		proxy.Resume()
		proxy.SetLatency(0)
		transport.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v, want nil after a graceful shutdown", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of its context ending")
		}
		if t.Failed() {
			t.Logf("server log (last lines):\n%s", logs.tail(40))
		}
	})
	select {
	case addr := <-logs.addr:
		fe.base = "http://" + addr
	case err := <-done:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs.tail(20))
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not listen within 30s\n%s", logs.tail(20))
	}
	if r := fe.lookup(faultPhone); r.status != http.StatusOK {
		t.Fatalf("lookup before any fault = %s, want 200", r)
	}
	return fe
}

// faultLog collects the server's JSON log lines and reports the listening
// address from the "serving" line.
type faultLog struct {
	mu    sync.Mutex
	part  []byte
	lines []string
	addr  chan string
	sent  bool
}

func (w *faultLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := string(w.part[:i])
		w.part = w.part[i+1:]
		w.lines = append(w.lines, line)
		var rec struct{ Msg, Addr string }
		if !w.sent && json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" && rec.Addr != "" {
			w.addr <- rec.Addr
			w.sent = true
		}
	}
	return len(p), nil
}

// count returns the number of lines containing s.
func (w *faultLog) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.lines {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

func (w *faultLog) tail(n int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines[max(0, len(w.lines)-n):], "\n")
}

// faultResp is what one request got.
type faultResp struct {
	status  int
	code    string // the envelope's error code; "" for a success
	data    map[string]string
	elapsed time.Duration
	err     error // transport failure or a body that breaks the contract
	body    string
}

func (r faultResp) String() string {
	if r.err != nil {
		return fmt.Sprintf("error %v after %v", r.err, r.elapsed.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d %s after %v", r.status, r.body, r.elapsed.Round(time.Millisecond))
}

// lookup sends a correctly signed lookup of callNum.
func (fe *faultEnv) lookup(callNum string) faultResp {
	const path = "/v1/lookups/customer"
	body := []byte(`{"callNum":"` + callNum + `","nation":"82"}`)
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	req, err := http.NewRequest(http.MethodPost, fe.base+path, bytes.NewReader(body))
	if err != nil {
		return faultResp{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", signature.Sign([]byte(faultSecret), signature.SchemeBody, path, body, ts))
	r := fe.do(req)
	if r.status != 0 {
		fe.answered.Add(1)
	}
	return r
}

func (fe *faultEnv) get(path string) faultResp {
	req, err := http.NewRequest(http.MethodGet, fe.base+path, nil)
	if err != nil {
		return faultResp{err: err}
	}
	return fe.do(req)
}

// do sends req and checks the response's form: a lookup's 200 carries
// {"data": {...}} and every error the envelope.
func (fe *faultEnv) do(req *http.Request) faultResp {
	start := time.Now()
	resp, err := fe.client.Do(req)
	if err != nil {
		return faultResp{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	r := faultResp{status: resp.StatusCode, elapsed: time.Since(start), body: strings.TrimSpace(string(b)), err: err}
	if err != nil || !strings.HasPrefix(req.URL.Path, "/v1/") {
		return r
	}
	var env struct {
		Data  map[string]string `json:"data"`
		Error *struct {
			Code, Message, Detail string
		} `json:"error"`
	}
	switch err := json.Unmarshal(b, &env); {
	case err != nil:
		r.err = fmt.Errorf("body is not JSON: %w", err)
	case resp.StatusCode == http.StatusOK && env.Data == nil:
		r.err = fmt.Errorf("200 without data")
	case resp.StatusCode != http.StatusOK && (env.Error == nil || env.Error.Code == "" || env.Error.Message == ""):
		r.err = fmt.Errorf("%d without the error envelope", resp.StatusCode)
	default:
		r.data = env.Data
		if env.Error != nil {
			r.code = env.Error.Code
		}
	}
	return r
}

// lookupAll sends n lookups at once and returns their responses.
func (fe *faultEnv) lookupAll(n int) []faultResp {
	out := make([]faultResp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = fe.lookup(faultPhone) })
	}
	wg.Wait()
	return out
}

// checkServerError fails unless r is a 500 with the envelope and a database
// code, answered by the query timeout plus the margin.
func (fe *faultEnv) checkServerError(what string, r faultResp) {
	fe.t.Helper()
	if r.err != nil || r.status != http.StatusInternalServerError || (r.code != "database_error" && r.code != "database_timeout") {
		fe.t.Errorf("%s: %s, want 500 database_error or database_timeout", what, r)
	}
	if r.elapsed > faultQueryTimeout+faultMargin {
		fe.t.Errorf("%s answered after %v, want within the query timeout %v (+%v)", what, r.elapsed, faultQueryTimeout, faultMargin)
	}
}

// waitRecovered polls lookups until one succeeds, within faultRecovery of
// since; every failure meanwhile must be a prompt 500 with the envelope.
func (fe *faultEnv) waitRecovered(since time.Time) {
	fe.t.Helper()
	for {
		r := fe.lookup(faultPhone)
		if r.status == http.StatusOK && r.err == nil {
			fe.t.Logf("lookups succeed again %v after the database came back (goal 2s)", time.Since(since).Round(time.Millisecond))
			break
		}
		fe.checkServerError("lookup while recovering", r)
		if time.Since(since) > faultRecovery {
			fe.t.Fatalf("lookups still fail %v after the database came back: %s", time.Since(since).Round(time.Millisecond), r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The pool is whole again: more lookups at once than it has
	// connections all succeed. A batch may still meet a connection being
	// opened, slowly on a loaded machine; then its failures must be prompt
	// 500s and a later batch must succeed whole.
	for batch := 1; ; batch++ {
		failed := 0
		for i, r := range fe.lookupAll(12) {
			if r.status == http.StatusOK && r.err == nil && r.data["userName"] == "Hong Gildong" {
				continue
			}
			failed++
			fe.checkServerError(fmt.Sprintf("concurrent lookup %d of batch %d after recovery", i, batch), r)
		}
		if failed == 0 {
			break
		}
		fe.t.Logf("batch %d of concurrent lookups after recovery: %d of 12 failed", batch, failed)
		if time.Since(since) > faultRecovery {
			fe.t.Fatalf("concurrent lookups still fail %v after the database came back", time.Since(since).Round(time.Millisecond))
		}
	}
	if r := fe.get("/readyz"); r.status != http.StatusOK {
		fe.t.Errorf("GET /readyz after recovery: %s, want 200", r)
	}
}

// checkNotifyDelivers proves the config listener is subscribed: with the
// periodic re-read an hour away, only NOTIFY can bring a mapping change. The
// first change may also arrive by the reload a reconnecting listener does;
// the second, made after the first was seen, only by NOTIFY.
func (fe *faultEnv) checkNotifyDelivers() {
	fe.t.Helper()
	ctx := context.Background()
	fe.sqlThenSee(ctx, "add a result field",
		`INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('customer', 'phoneOnFile', 'phone', 3)`,
		func(d map[string]string) bool { return d["phoneOnFile"] == faultPhone }, 10*time.Second)
	fe.sqlThenSee(ctx, "rename the result field",
		`UPDATE custinfo.lookup_results SET field = 'storedPhone' WHERE lookup = 'customer' AND field = 'phoneOnFile'`,
		func(d map[string]string) bool { return d["storedPhone"] == faultPhone && d["phoneOnFile"] == "" }, 5*time.Second)
	if _, err := fe.admin.Exec(ctx, `DELETE FROM custinfo.lookup_results WHERE lookup = 'customer' AND field = 'storedPhone'`); err != nil {
		fe.t.Fatalf("restore the mapping: %v", err)
	}
}

// sqlThenSee runs stmt and polls lookups until seen holds for the answer.
func (fe *faultEnv) sqlThenSee(ctx context.Context, what, stmt string, seen func(map[string]string) bool, within time.Duration) {
	fe.t.Helper()
	if _, err := fe.admin.Exec(ctx, stmt); err != nil {
		fe.t.Fatalf("%s: %v", what, err)
	}
	start := time.Now()
	for {
		r := fe.lookup(faultPhone)
		if r.status == http.StatusOK && seen(r.data) {
			fe.t.Logf("%s: visible after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > within {
			fe.t.Fatalf("%s: not visible within %v; last answer %s", what, within, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitAccessLog waits until every answered lookup has its access-log row.
func (fe *faultEnv) waitAccessLog() {
	fe.t.Helper()
	want := fe.answered.Load()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int64
		err := fe.admin.QueryRow(context.Background(), `SELECT count(DISTINCT request_id) FROM custinfo.access_log`).Scan(&n)
		if err == nil && n >= want {
			return
		}
		if time.Now().After(deadline) {
			fe.t.Fatalf("access_log has rows for %d requests (err %v), want %d", n, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAccessLog waits until the access log holds one row per answered
// lookup: rows queued while the database was away are written after it.
func (fe *faultEnv) checkAccessLog(wantFailures bool) {
	fe.t.Helper()
	ctx := context.Background()
	want := fe.answered.Load()
	deadline := time.Now().Add(15 * time.Second) // the writer backs off up to 5 s between retries
	var rows, requests, failed int64
	for {
		err := fe.admin.QueryRow(ctx, `SELECT count(*), count(DISTINCT request_id), count(DISTINCT request_id) FILTER (WHERE status = 500)
			FROM custinfo.access_log`).Scan(&rows, &requests, &failed)
		if err == nil && requests >= want {
			break
		}
		if time.Now().After(deadline) {
			fe.t.Fatalf("access_log has rows for %d requests (err %v), want %d: one per answered lookup", requests, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if requests != want {
		fe.t.Errorf("access_log has rows for %d requests, want %d: one per answered lookup", requests, want)
	}
	if rows != requests {
		// A batch whose commit was confirmed to nobody (the connection cut
		// between COMMIT and its answer) must be found, not written again.
		fe.t.Errorf("access_log holds %d duplicate rows, want each request once", rows-requests)
	}
	if wantFailures && failed == 0 {
		fe.t.Errorf("access_log has no row with status 500, want the failed lookups recorded")
	}
	fe.t.Logf("access_log: %d rows for %d requests (%d answered lookups), %d with status 500; %d write-failure warnings, %d batches stored although unacknowledged",
		rows, requests, want, failed, fe.logs.count("access log write failed"), fe.logs.count("stored although its commit was not acknowledged"))
}

func (fe *faultEnv) checkAlive() {
	fe.t.Helper()
	if r := fe.get("/healthz"); r.status != http.StatusOK {
		fe.t.Fatalf("GET /healthz: %s, want 200 (the server must survive the fault)", r)
	}
}

// TestFaultConnectionCut cuts every database connection while lookups wait
// on them.
func TestFaultConnectionCut(t *testing.T) {
	fe := startFaultEnv(t)
	// As many lookups as the pool has connections, so none waits for one:
	// each holds a connection (an idle one, or a new one in its handshake)
	// when the cut comes. The access log is written before the stall, so
	// its writer holds no connection.
	const n = 4
	fe.lookupAll(n)
	fe.waitAccessLog()
	fe.proxy.Stall()
	results := make(chan faultResp, n)
	for range n {
		go func() { results <- fe.lookup(faultPhone) }()
	}
	deadline := time.Now().Add(10 * time.Second)
	for fe.proxy.Held() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("held chunks at the cut: %d; connections cut: %d", fe.proxy.Held(), fe.proxy.Cut())
	fe.proxy.Resume()
	// A lookup whose cut hit the pool's liveness ping of an idle connection
	// (pgxpool pings one idle for over a second) is retried on a new
	// connection and may succeed; a cut query answers 500.
	var failed500 int
	for i := range n {
		r := <-results
		if r.status == http.StatusOK && r.err == nil {
			if r.elapsed > faultQueryTimeout+faultMargin {
				t.Errorf("in-flight lookup %d succeeded after %v, want within %v", i, r.elapsed, faultQueryTimeout+faultMargin)
			}
			continue
		}
		failed500++
		fe.checkServerError(fmt.Sprintf("in-flight lookup %d", i), r)
	}
	if failed500 == 0 {
		t.Errorf("no in-flight lookup failed: the cut hit no query")
	}
	t.Logf("in-flight lookups: %d answered 500, %d succeeded on a new connection", failed500, n-failed500)
	fe.checkAlive()
	fe.waitRecovered(time.Now())

	// Cuts under steady load: every answer is a success or a prompt 500.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := fe.lookup(faultPhone)
				if r.status == http.StatusOK && r.err == nil {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				fe.checkServerError("lookup under repeated cuts", r)
			}
		})
	}
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		fe.proxy.Cut()
	}
	close(stop)
	wg.Wait()
	t.Logf("under 10 cuts in 500 ms: %d lookups succeeded, %d answered 500", ok.Load(), failed.Load())
	fe.checkAlive()
	fe.waitRecovered(time.Now())
	fe.checkAccessLog(true)
}

// TestFaultDatabaseUnreachable takes the database away for a few seconds.
func TestFaultDatabaseUnreachable(t *testing.T) {
	fe := startFaultEnv(t)
	fe.proxy.Down()
	downSince := time.Now()
	for i := 0; time.Since(downSince) < 3*time.Second; i++ {
		r := fe.lookup(faultPhone)
		fe.checkServerError(fmt.Sprintf("lookup %d while unreachable", i), r)
		if r.elapsed >= faultQueryTimeout {
			t.Errorf("lookup %d while unreachable took %v, want a fast failure (under the query timeout %v)", i, r.elapsed, faultQueryTimeout)
		}
		if i%5 == 0 {
			if r := fe.get("/readyz"); r.status != http.StatusServiceUnavailable {
				t.Errorf("GET /readyz while unreachable: %s, want 503", r)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	fe.checkAlive()
	fe.proxy.Up()
	fe.waitRecovered(time.Now())
	fe.checkNotifyDelivers()
	fe.checkAccessLog(true)
}

// TestFaultDatabaseStalled blackholes the database for a few seconds:
// connections stay open but nothing comes back, as when a network path dies
// without a reset.
func TestFaultDatabaseStalled(t *testing.T) {
	fe := startFaultEnv(t)
	fe.proxy.Stall()
	stalledSince := time.Now()
	for i := 0; time.Since(stalledSince) < 3*time.Second; i++ {
		r := fe.lookup(faultPhone)
		fe.checkServerError(fmt.Sprintf("lookup %d while stalled", i), r)
		if r.code != "database_timeout" {
			t.Errorf("lookup %d while stalled: code %q, want database_timeout", i, r.code)
		}
		if i == 0 {
			if r := fe.get("/readyz"); r.status != http.StatusServiceUnavailable {
				t.Errorf("GET /readyz while stalled: %s, want 503", r)
			}
		}
	}
	fe.checkAlive()
	fe.proxy.Resume()
	fe.waitRecovered(time.Now())
	fe.checkNotifyDelivers()
	fe.checkAccessLog(true)
}

// TestFaultSlowDatabase delays every packet beyond the query timeout.
func TestFaultSlowDatabase(t *testing.T) {
	fe := startFaultEnv(t)
	fe.proxy.SetLatency(faultQueryTimeout + 500*time.Millisecond)
	for i, r := range fe.lookupAll(6) { // more than the pool's 4 connections
		fe.checkServerError(fmt.Sprintf("slow lookup %d", i), r)
		if r.code != "database_timeout" {
			t.Errorf("slow lookup %d: code %q, want database_timeout", i, r.code)
		}
		if r.elapsed < faultQueryTimeout {
			t.Errorf("slow lookup %d answered after %v, before the query timeout %v", i, r.elapsed, faultQueryTimeout)
		}
	}
	fe.checkAlive()
	fe.proxy.SetLatency(0)
	fe.waitRecovered(time.Now())
	fe.checkAccessLog(true)
}

// TestFaultTerminateBackends has PostgreSQL end every server connection, as
// a restart or an admin does.
func TestFaultTerminateBackends(t *testing.T) {
	fe := startFaultEnv(t)
	ctx := context.Background()
	var killed int
	err := fe.admin.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()) t`).Scan(&killed)
	if err != nil {
		t.Fatalf("pg_terminate_backend: %v", err)
	}
	if killed < 2 { // at least a pooled connection and the listener
		t.Errorf("terminated %d backends, want at least 2", killed)
	}
	t.Logf("terminated %d backends", killed)
	fe.checkAlive()
	fe.waitRecovered(time.Now())
	fe.checkNotifyDelivers()
	fe.checkAccessLog(false)
}
