package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/pgtest"
)

// sharedSeedSQL stores one number for three customers (a family), in three
// spellings, and another number for one customer alone. order_by prefers
// the most recent contact; the family's newest is 이서연.
const sharedSeedSQL = `
CREATE SCHEMA shared;
CREATE TABLE shared.people (id bigint PRIMARY KEY, customer_no text NOT NULL, name text NOT NULL,
    phone text NOT NULL, last_contact timestamptz);
INSERT INTO shared.people VALUES
    (1, 'C-0001', '김민준', '010-2468-1357', '2026-01-01'),
    (2, 'C-0002', '이서연', '+82 10 2468 1357', '2026-03-01'),
    (3, 'C-0003', '박지호', '01024681357', NULL),
    (4, 'C-0004', '최유나', '010-9753-1864', '2026-02-01');
INSERT INTO custinfo.lookups (name, source, order_by) VALUES ('customer', 'shared.people', 'last_contact DESC');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
    ('customer', 'userName', 'name', 1), ('customer', 'id', 'customer_no', 2);
INSERT INTO custinfo.api_keys (secret, label) VALUES ('access-log-test-key-7f3a', 'shared number test');
`

// TestSharedNumber runs serve over a number shared by three customers: every
// request gets the same customer (order_by), each such answer counts in
// custinfo_lookup_ambiguous_total and is logged, in the server log and in
// custinfo.access_log, with its number of matches; a number of one customer
// counts nothing.
func TestSharedNumber(t *testing.T) {
	t.Parallel()
	admin := pgtest.New(t)
	dbURL := admin.Config().ConnString()
	if _, err := admin.Exec(context.Background(), sharedSeedSQL); err != nil {
		t.Fatalf("seed: %v", err)
	}
	s := opsStart(t, serveFlags{
		databaseURL:     dbURL,
		shutdownTimeout: 10 * time.Second,
		auditRegion:     "KR",
		metricsAddr:     "127.0.0.1:0",
	})
	base := s.base

	send := func(id, body string) string {
		t.Helper()
		req, err := alNewRequest(base, id, alRequest{lookup: "customer", body: body})
		if err != nil {
			t.Fatalf("build request: %v", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d (%s), want 200", id, resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	const family = `{"data":{"userName":"이서연","id":"C-0002"}}`
	shared := []string{`{"callNum":"010-2468-1357","nation":"82"}`, `{"callNum":"+821024681357"}`, `{"callNum":"1024681357","nation":"KR"}`}
	for i := range 6 {
		if got := send(fmt.Sprintf("shared-%d", i), shared[i%len(shared)]); got != family {
			t.Errorf("shared number, request %d = %s, want %s every time", i, got, family)
		}
	}
	if got, want := send("alone", `{"callNum":"010-9753-1864"}`), `{"data":{"userName":"최유나","id":"C-0004"}}`; got != want {
		t.Errorf("number of one customer = %s, want %s", got, want)
	}

	resp, err := http.Get(s.metricsBase + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `custinfo_lookup_ambiguous_total{lookup="customer"} 6` + "\n"; !strings.Contains(string(metrics), want) {
		t.Errorf("GET /metrics has no line %q", want)
	}

	if err := s.stop(); err != nil { // flushes the access log
		t.Fatalf("serve = %v\n%s", err, s.logs)
	}
	if !strings.Contains(s.logs.String(), `"request_id":"shared-0"`) || !strings.Contains(s.logs.String(), `"matches":3`) {
		t.Errorf("the server log has no line for shared-0 with \"matches\":3:\n%s", s.logs)
	}
	rows, err := admin.Query(context.Background(), `SELECT request_id, matches FROM custinfo.access_log ORDER BY id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var id string
		var m int
		if err := rows.Scan(&id, &m); err != nil {
			t.Fatalf("scan access_log: %v", err)
		}
		got[id] = m
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	if len(got) != 7 {
		t.Errorf("access_log has %d rows (%v), want 7", len(got), got)
	}
	for i := range 6 {
		if id := fmt.Sprintf("shared-%d", i); got[id] != 3 {
			t.Errorf("access_log row %s: matches = %d, want 3", id, got[id])
		}
	}
	if got["alone"] != 1 {
		t.Errorf("access_log row alone: matches = %d, want 1", got["alone"])
	}
	// What an admin runs to find shared numbers.
	var sharedRows int
	if err := admin.QueryRow(context.Background(),
		`SELECT count(*) FROM custinfo.access_log WHERE lookup = 'customer' AND matches > 1`).Scan(&sharedRows); err != nil {
		t.Fatalf("query shared numbers: %v", err)
	}
	if sharedRows != 6 {
		t.Errorf("access_log rows with matches > 1 = %d, want 6", sharedRows)
	}
}
