package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/signature"
	"github.com/custinfo/custinfo/internal/testwait"
)

// alKey signs the requests of the access-log tests; alAuditKey keys their
// query hashes.
const (
	alKey      = "access-log-test-key-7f3a"
	alAuditKey = "access-log-audit-key-0123456789ab"
)

// alSeedSQL defines two customers, a lookup of them by phone number, and a
// lookup over a view that sleeps past the query timeout (answers 500).
const alSeedSQL = `
CREATE SCHEMA aldata;
CREATE TABLE aldata.people (id bigint PRIMARY KEY, customer_no text NOT NULL, name text NOT NULL, phone text NOT NULL);
INSERT INTO aldata.people VALUES (1, 'C-0001', '김민준', '010-2468-1357'), (2, 'C-0002', '이서연', '+821097531864');
CREATE VIEW aldata.slow_people AS SELECT p.* FROM aldata.people p, pg_sleep(10) s;
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'aldata.people'), ('slow', 'aldata.slow_people');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('customer', 'nation', NULL, 'hint', false, NULL, NULL),
    ('slow', 'callNum', 'phone', 'phone', true, NULL, 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
    ('customer', 'userName', 'name', 1), ('customer', 'id', 'customer_no', 2),
    ('slow', 'userName', 'name', 1);
INSERT INTO custinfo.api_keys (secret, label) VALUES ('access-log-test-key-7f3a', 'access log test');
`

// alClearDigits are digit runs of the numbers the test sends that a masked
// value never shows (it keeps the first 3 and last 4 digits).
var alClearDigits = []string{"24681357", "97531864", "55501234", "5552671"}

// alRequest is one kind of request the test sends, and the status it gets.
type alRequest struct {
	name       string
	lookup     string
	body       string
	badSig     bool
	badTS      bool
	wantStatus int
}

var alMix = []alRequest{
	{name: "found national", lookup: "customer", body: `{"callNum":"010-2468-1357","nation":"82"}`, wantStatus: 200},
	{name: "found e164", lookup: "customer", body: `{"callNum":"+82 10 9753 1864"}`, wantStatus: 200},
	{name: "no data", lookup: "customer", body: `{"callNum":"01055501234"}`, wantStatus: 404},
	{name: "no data, US", lookup: "customer", body: `{"callNum":"(415) 555-2671","nation":"1"}`, wantStatus: 404},
	{name: "bad signature", lookup: "customer", body: `{"callNum":"010-2468-1357"}`, badSig: true, wantStatus: 403},
	{name: "bad timestamp", lookup: "customer", body: `{"callNum":"010-2468-1357"}`, badTS: true, wantStatus: 400},
	{name: "missing field", lookup: "customer", body: `{"nation":"82"}`, wantStatus: 400},
	{name: "unknown lookup", lookup: "nobody", body: `{"callNum":"010-2468-1357"}`, wantStatus: 403},
}

var alSlow = alRequest{name: "query timeout", lookup: "slow", body: `{"callNum":"010-2468-1357"}`, wantStatus: 500}

func alNewRequest(base, id string, r alRequest) (*http.Request, error) {
	path := "/v1/lookups/" + r.lookup
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(r.body))
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	sig := signature.Sign([]byte(alKey), signature.SchemeBody, path, []byte(r.body), ts)
	if r.badSig {
		sig = signature.Sign([]byte("not-the-key"), signature.SchemeBody, path, []byte(r.body), ts)
	}
	if r.badTS {
		ts = "1700000000"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", sig)
	req.Header.Set("X-Request-Id", id)
	return req, nil
}

// TestAccessLogAfterShutdownUnderLoad sends signed requests of every outcome
// from several clients, ends serve as SIGTERM does while requests are in
// flight, and checks that every answered request has exactly one access-log
// row with its status, and that no row holds a clear phone number.
func TestAccessLogAfterShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	admin := pgtest.New(t)
	dbURL := admin.Config().ConnString()
	if _, err := admin.Exec(context.Background(), alSeedSQL); err != nil {
		t.Fatalf("seed: %v", err)
	}

	logs := &pgtest.LogBuffer{}
	logger, err := newLogger(logs, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	f := serveFlags{
		databaseURL:     dbURL,
		addr:            "127.0.0.1:0",
		queryTimeout:    2 * time.Second,
		timestampWindow: 5 * time.Minute,
		reloadInterval:  time.Minute,
		shutdownTimeout: 20 * time.Second,
		auditKey:        alAuditKey,
		auditRegion:     "KR",
		accessLogQueue:  10000,
		metricsAddr:     "127.0.0.1:0",
	}
	metricsCh := make(chan string, 1)
	f.metricsReady = func(addr string) { metricsCh <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, logger, func(addr string) { addrCh <- addr }) }()
	var base string
	select {
	case addr := <-addrCh:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("serve ended before listening: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen within 30 s")
	}

	// Workers send until the server stops answering (or a bound is hit).
	const workers, perWorker = 6, 2000
	var (
		mu        sync.Mutex
		answered  = map[string]int{}  // request id → status
		unsure    = map[string]bool{} // request ids whose answer the client did not get
		sent      atomic.Int64
		cancelled atomic.Bool
		straddled atomic.Int64 // sent before the cancel, answered after it
		wg        sync.WaitGroup
	)
	stopAt := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(stopAt); i++ {
				r := alMix[(w+i)%len(alMix)]
				if w == 0 {
					r = alSlow // one client keeps a slow request in flight
				}
				id := fmt.Sprintf("al-%d-%d", w, i)
				req, err := alNewRequest(base, id, r)
				if err != nil {
					t.Errorf("build request: %v", err)
					return
				}
				sent.Add(1)
				before := !cancelled.Load()
				resp, err := client.Do(req)
				if err != nil {
					// The server has stopped; it may have answered (and
					// logged) this request as its connection closed.
					mu.Lock()
					unsure[id] = true
					mu.Unlock()
					return
				}
				if before && cancelled.Load() {
					straddled.Add(1)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				answered[id] = resp.StatusCode
				mu.Unlock()
				if resp.StatusCode != r.wantStatus {
					t.Errorf("%s (%s) = %d, want %d", r.name, id, resp.StatusCode, r.wantStatus)
				}
			}
		}()
	}

	// Let load build, then end serve while a slow lookup's query is running.
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(answered) }
	testwait.Until(t, "100 answered requests", 30*time.Second, func() bool { return count() >= 100 })
	testwait.Until(t, "a slow lookup in flight", 10*time.Second, func() bool {
		var running bool
		err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%slow_people%' AND pid <> pg_backend_pid())`).Scan(&running)
		return err == nil && running
	})
	resp, err := http.Get("http://" + <-metricsCh + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"custinfo_access_log_queue_depth ", "custinfo_access_log_written_total ", "custinfo_access_log_dropped_total 0"} {
		if !bytes.Contains(metricsText, []byte(name)) {
			t.Errorf("GET /metrics has no %q line", name)
		}
	}

	cancelled.Store(true)
	cancel() // what SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil after a graceful shutdown\n%s", err, logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not return within 60 s of the cancel")
	}
	wg.Wait()

	rows, err := admin.Query(context.Background(), `SELECT request_id, status, query_masked, query_hash, a::text FROM custinfo.access_log a`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	type alRow struct {
		status       int
		masked, hash string
	}
	logged := map[string][]alRow{}
	nrows := 0
	for rows.Next() {
		var id, text string
		var r alRow
		if err := rows.Scan(&id, &r.status, &r.masked, &r.hash, &text); err != nil {
			t.Fatalf("scan access_log: %v", err)
		}
		logged[id] = append(logged[id], r)
		nrows++
		for _, d := range alClearDigits {
			if strings.Contains(text, d) {
				t.Errorf("access_log row %s holds the clear digits %s: %s", id, d, text)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read access_log: %v", err)
	}

	byStatus := map[int]int{}
	for id, status := range answered {
		byStatus[status]++
		got := logged[id]
		if len(got) != 1 {
			t.Errorf("answered request %s (status %d) has %d access_log rows, want 1", id, status, len(got))
			continue
		}
		if got[0].status != status {
			t.Errorf("access_log row of %s has status %d, want %d", id, got[0].status, status)
		}
	}
	// Beside the answered requests, a row may exist only for a request the
	// client sent but did not get the answer of, and then only one.
	extra := 0
	for id, got := range logged {
		if _, ok := answered[id]; ok {
			continue
		}
		switch {
		case !unsure[id]:
			t.Errorf("access_log has %d rows for %s, which no client sent or was answered", len(got), id)
		case len(got) != 1:
			t.Errorf("request %s, its answer lost at shutdown, has %d access_log rows, want at most 1", id, len(got))
		default:
			extra++
		}
	}
	if nrows != len(answered)+extra {
		t.Errorf("access_log has %d rows, want %d: one per answered request and %d for requests answered as the connection closed", nrows, len(answered)+extra, extra)
	}
	for _, want := range []int{200, 400, 403, 404, 500} {
		if byStatus[want] == 0 {
			t.Errorf("no answered request with status %d, want some of every outcome", want)
		}
	}

	// All spellings of one number share a hash, which an auditor can compute.
	wantHash := audit.HashQuery(alAuditKey, "010 2468 1357", "KR")
	var hashed int
	if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM custinfo.access_log
		WHERE query_hash = $1 AND query_masked = '010****1357'`, wantHash).Scan(&hashed); err != nil {
		t.Fatalf("search by hash: %v", err)
	}
	if hashed == 0 {
		t.Errorf("no access_log row has the hash of 010 2468 1357, want the rows of its lookups")
	}
	// A number read in the request's own region (nation 1) hashes as that
	// number, whatever --audit-region says.
	usHash := audit.HashQuery(alAuditKey, "+1 415-555-2671", "KR")
	if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM custinfo.access_log
		WHERE query_hash = $1 AND status = 404`, usHash).Scan(&hashed); err != nil {
		t.Fatalf("search by hash: %v", err)
	}
	if hashed == 0 {
		t.Errorf("no access_log row has the hash of +1 415-555-2671, want the rows of its lookups with nation 1")
	}
	for _, d := range alClearDigits {
		if strings.Contains(logs.String(), d) {
			t.Errorf("the server log holds the clear digits %s", d)
		}
	}
	if !strings.Contains(logs.String(), `"msg":"access log flushed"`) {
		t.Errorf("the server log has no \"access log flushed\" line:\n%s", logs)
	}
	if straddled.Load() == 0 {
		t.Errorf("no request sent before the cancel was answered after it, want the slow one at least")
	}
	t.Logf("sent %d requests, %d answered (%v by status), %d of them sent before the cancel and answered after it; %d access_log rows",
		sent.Load(), len(answered), byStatus, straddled.Load(), nrows)
}

func TestParseRetention(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "365d", want: 365 * 24 * time.Hour},
		{in: "8760h", want: 8760 * time.Hour},
		{in: " 730d ", want: 730 * 24 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "0d", wantErr: true},
		{in: "-5h", wantErr: true},
		{in: "1.5d", wantErr: true},
		{in: "d", wantErr: true},
		{in: "1y", wantErr: true},
		{in: "99999999d", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseRetention(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseRetention(%q) = %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestAccessLogCommands runs access-log hash and prune as an admin would.
func TestAccessLogCommands(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	dbURL := pool.Config().ConnString()
	_, err := pool.Exec(context.Background(), `INSERT INTO custinfo.access_log (at, request_id, lookup, code, status, latency_us)
		SELECT now() - make_interval(days => d), 'r' || d, 'customer', 'ok', 200, 1000
		FROM generate_series(0, 800, 100) AS d`) // 9 rows, 0 to 800 days old
	if err != nil {
		t.Fatalf("insert rows: %v", err)
	}
	alRun := func(args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
			getenv: func(k string) string {
				if k == "DATABASE_URL" {
					return dbURL
				}
				return ""
			}}
		err := runAccessLog(context.Background(), args, e)
		return stdout.String(), stderr.String(), err
	}

	tests := []struct {
		name       string
		args       []string
		wantOut    string
		wantStderr string
		wantErr    bool
	}{
		{name: "hash", args: []string{"hash", "--audit-key", alAuditKey, "010-2468-1357"},
			wantOut: audit.HashQuery(alAuditKey, "+821024681357", "KR") + "\n"},
		{name: "hash, key after the value", args: []string{"hash", "+82 10 2468 1357", "--audit-key", alAuditKey},
			wantOut: audit.HashQuery(alAuditKey, "01024681357", "KR") + "\n"},
		{name: "hash without a key", args: []string{"hash", "010-2468-1357"}, wantErr: true},
		{name: "hash with a bad region", args: []string{"hash", "--audit-key", "k", "--audit-region", "ZZ", "1"}, wantErr: true},
		// Rows of the year before today leave the default partition for
		// partitions of their days; older ones stay there.
		{name: "ensure partitions", args: []string{"partitions", "ensure", "--days", "3"}, wantOut: "created "},
		{name: "dry run", args: []string{"prune", "--dry-run"}, wantOut: "would drop 0 partitions (0 rows) and delete 5 rows older than 365d"},
		{name: "prune the default year", args: []string{"prune", "--batch", "3"}, wantOut: "dropped 0 partitions and deleted 5 rows older than 365d"},
		{name: "prune again", args: []string{"prune"}, wantOut: "dropped 0 partitions and deleted 0 rows"},
		{name: "prune 150 days", args: []string{"prune", "--older-than", "150d"}, wantOut: "dropped 2 partitions and deleted 0 rows older than 150d",
			wantStderr: "keeping less than one year"},
		{name: "list partitions", args: []string{"partitions", "list"}, wantOut: alDay(-100) + " "},
		{name: "ensure from a date", args: []string{"partitions", "ensure", "--from", time.Now().UTC().AddDate(0, 0, -120).Format(time.DateOnly), "--days", "0"}, wantOut: "created "},
		{name: "list partitions again", args: []string{"partitions", "list"}, wantOut: alDay(-120) + " "},
		{name: "ensure from a bad date", args: []string{"partitions", "ensure", "--from", "yesterday"}, wantErr: true},
		{name: "ensure too far", args: []string{"partitions", "ensure", "--days", "400"}, wantErr: true},
		{name: "partitions without an action", args: []string{"partitions"}, wantErr: true},
		{name: "bad duration", args: []string{"prune", "--older-than", "soon"}, wantErr: true},
		{name: "unknown action", args: []string{"vacuum"}, wantErr: true},
	}
	for _, tt := range tests { // in order: the prunes build on each other
		out, stderr, err := alRun(tt.args...)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: access-log %v error = %v, want error %v", tt.name, tt.args, err, tt.wantErr)
		}
		if !strings.HasPrefix(out, tt.wantOut) {
			t.Errorf("%s: access-log %v printed %q, want prefix %q", tt.name, tt.args, out, tt.wantOut)
		}
		if !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%s: access-log %v stderr %q, want it to contain %q", tt.name, tt.args, stderr, tt.wantStderr)
		}
	}
	var left int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM custinfo.access_log`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 2 {
		t.Errorf("access_log has %d rows after pruning, want 2 (0 and 100 days old)", left)
	}
}

// alDay is the name of the access log's partition of the UTC day n days
// from now.
func alDay(n int) string {
	return "access_log_" + time.Now().UTC().AddDate(0, 0, n).Format("20060102")
}
