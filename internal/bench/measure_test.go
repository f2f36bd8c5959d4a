package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/pgtest"
)

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP custinfo_coalesced_queries_total Queries run for a coalesced batch.
# TYPE custinfo_coalesced_queries_total counter
custinfo_coalesced_queries_total 120
custinfo_coalesced_requests_total 1.5e+03

custinfo_requests_total{code="ok",lookup="customer"} 7 1700000000000
custinfo_db_pool_max_conns{pool="primary db"} 4
go_gc_duration_seconds{quantile="0.5"} NaN
`
	got, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"custinfo_coalesced_queries_total":                     120,
		"custinfo_coalesced_requests_total":                    1500,
		`custinfo_requests_total{code="ok",lookup="customer"}`: 7,
		`custinfo_db_pool_max_conns{pool="primary db"}`:        4,
	}
	if !math.IsNaN(got[`go_gc_duration_seconds{quantile="0.5"}`]) {
		t.Errorf("NaN sample = %v, want NaN", got[`go_gc_duration_seconds{quantile="0.5"}`])
	}
	delete(got, `go_gc_duration_seconds{quantile="0.5"}`)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"custinfo_x\n", "custinfo_x one\n", "custinfo_x 1 2 3\n", `custinfo_x{a="b"}` + "\n"} {
		if _, err := parseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMetrics(%q) = nil error, want one", bad)
		}
	}
}

func TestBatchMix(t *testing.T) {
	t.Parallel()
	before := map[string]float64{metricCoalescedQueries: 10, metricCoalescedRequests: 30}
	after := map[string]float64{metricCoalescedQueries: 110, metricCoalescedRequests: 530}
	m := newBatchMix(before, after, 600)
	if want := (batchMix{Alone: 100, Queries: 100, Batched: 500}); m != want {
		t.Fatalf("newBatchMix = %+v, want %+v", m, want)
	}
	if m.meanBatch() != 5 || m.perQuery() != 3 {
		t.Errorf("meanBatch, perQuery = %v, %v; want 5, 3", m.meanBatch(), m.perQuery())
	}
	if got := m.workers(32); got != 11 {
		t.Errorf("workers(32) = %d, want 11 (32 requests in flight, 3 a query)", got)
	}
	if got := m.workers(1); got != 1 {
		t.Errorf("workers(1) = %d, want 1", got)
	}

	// Drawn sizes keep the server's share of requests alone and its mean batch.
	odd := batchMix{Alone: 300, Queries: 100, Batched: 350} // mean batch 3.5
	rng := rand.New(rand.NewPCG(1, 2))
	var alone, queries, batched int
	for range 100_000 {
		k := odd.draw(rng)
		switch {
		case k == 1:
			alone++
		case k == 3 || k == 4:
			queries++
			batched += k
		default:
			t.Fatalf("draw = %d, want 1, 3 or 4", k)
		}
	}
	if share := float64(alone) / float64(alone+queries); math.Abs(share-0.75) > 0.01 {
		t.Errorf("%.3f of queries alone, want 0.75", share)
	}
	if mean := float64(batched) / float64(queries); math.Abs(mean-3.5) > 0.05 {
		t.Errorf("mean batch %.3f, want 3.5", mean)
	}

	// A server without coalescing has no counters: every request alone.
	none := newBatchMix(map[string]float64{}, nil, 50)
	if none != (batchMix{Alone: 50}) || none.draw(rng) != 1 || none.workers(8) != 8 {
		t.Errorf("newBatchMix without counters = %+v, want every request alone", none)
	}
}

func TestCPUBetween(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1700000000, 0)
	samples := []cpuSample{
		{t0, 0},
		{t0.Add(100 * time.Millisecond), 10 * time.Millisecond},
		{t0.Add(200 * time.Millisecond), 50 * time.Millisecond},
		{t0.Add(300 * time.Millisecond), 60 * time.Millisecond},
	}
	tests := []struct {
		name     string
		from, to time.Duration
		want     time.Duration
		ok       bool
	}{
		{"on samples", 100 * time.Millisecond, 300 * time.Millisecond, 50 * time.Millisecond, true},
		{"interpolated", 50 * time.Millisecond, 250 * time.Millisecond, 50 * time.Millisecond, true},
		{"before the first", -time.Millisecond, 200 * time.Millisecond, 0, false},
		{"after the last", 100 * time.Millisecond, 301 * time.Millisecond, 0, false},
	}
	for _, tt := range tests {
		got, ok := cpuBetween(samples, t0.Add(tt.from), t0.Add(tt.to))
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: cpuBetween = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFlagValueAndPoolSize(t *testing.T) {
	t.Parallel()
	args := []string{"--log-level", "warn", "--pool-max-conns", "6", "-metrics-addr=127.0.0.1:9", "--pool-max-conns=7"}
	if v, ok := flagValue(args, "pool-max-conns"); v != "7" || !ok {
		t.Errorf("flagValue(pool-max-conns) = %q, %v; want 7, true (the last)", v, ok)
	}
	if v, ok := flagValue(args, "metrics-addr"); v != "127.0.0.1:9" || !ok {
		t.Errorf("flagValue(metrics-addr) = %q, %v", v, ok)
	}
	if _, ok := flagValue(args, "pool-min-conns"); ok {
		t.Errorf("flagValue(pool-min-conns) found, want not")
	}
	const url = "postgres://u@127.0.0.1:5432/d"
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url  string
		args []string
		want int
	}{
		{url, nil, int(pc.MaxConns)},
		{url + "?pool_max_conns=3", nil, 3},
		{url + "?pool_max_conns=3", []string{"--pool-max-conns", "9"}, 9},
		{url, []string{"--pool-max-conns", "2", "--pool-min-conns", "5"}, 5},
		{url, []string{"--pool-max-conns=0"}, int(pc.MaxConns)},
	}
	for _, tt := range tests {
		if got, err := servePoolSize(tt.url, tt.args); got != tt.want || err != nil {
			t.Errorf("servePoolSize(%s, %q) = %d, %v; want %d", tt.url, tt.args, got, err, tt.want)
		}
	}
	if _, err := servePoolSize(url, []string{"--pool-max-conns", "many"}); err == nil {
		t.Errorf("servePoolSize(--pool-max-conns many) = nil error, want one")
	}
}

// backendCPU reads the CPU time of several real backends from /proc, leaves
// out a backend that has gone, and refuses a process that is not postgres.
func TestBackendCPU(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	var pids []int
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var pid int32
		// Some work, so that the backend has used CPU time.
		if err := c.QueryRow(ctx, `SELECT pg_backend_pid() FROM (SELECT count(*) FROM generate_series(1, 300000)) s`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, int(pid))
	}
	for _, c := range conns {
		c.Release()
	}
	gone := 1 << 30 // above any pid_max
	got, err := backendCPU(append(pids, gone))
	if err != nil {
		t.Fatalf("backendCPU(%v) = %v", pids, err)
	}
	if len(got) != len(pids) {
		t.Errorf("backendCPU(%v and a gone pid) = %v, want the %d backends", pids, got, len(pids))
	}
	var total time.Duration
	for _, pid := range pids {
		total += got[pid]
	}
	if total <= 0 {
		t.Errorf("backendCPU(%v) = %v, want some CPU time", pids, got)
	}
	if _, err := backendCPU([]int{os.Getpid()}); err == nil || !strings.Contains(err.Error(), "not postgres") {
		t.Errorf("backendCPU(the test's own pid) = %v, want a not-postgres error", err)
	}
	if _, err := backendCPU([]int{gone, gone + 1}); err == nil {
		t.Errorf("backendCPU(two gone pids) = nil error, want one")
	}
}

// The meter counts a backend that connects after the first reading from its
// start, and leaves out its own.
func TestBackendMeter(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := context.Background()
	var notes strings.Builder
	m, err := newBackendMeter(ctx, url, &notes)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	m.reset()
	if cpu, err := m.read(ctx); err != nil || cpu != 0 {
		t.Fatalf("first read = %v, %v; want 0", cpu, err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var pid int32
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid() FROM (SELECT count(*) FROM generate_series(1, 2000000)) s`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	cpu, err := m.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	own, err := backendCPU([]int{int(pid)})
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 || cpu > own[int(pid)] {
		t.Errorf("read after a new backend's work = %v, want more than 0 and at most its %v", cpu, own[int(pid)])
	}
	if _, ok := m.last[int(pid)]; !ok {
		t.Errorf("meter did not list backend %d: %v", pid, m.last)
	}
	if notes.Len() > 0 {
		t.Errorf("notes: %s", notes.String())
	}
}

// benchFixtureLookups configures the demo's customer lookup, over the small
// demo table that TestDirectBaselines fills in the bench's numbering.
const benchFixtureLookups = `
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'demo.customers');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
VALUES ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
       ('customer', 'nation', NULL, 'hint', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
VALUES ('customer', 'userName', 'name', 1), ('customer', 'id', 'customer_no', 2);
`

// The pgx baselines, plain and coalesced, answer every request of the
// workload right against real customers, and the coalesced one counts every
// request of its batches.
func TestDirectBaselines(t *testing.T) {
	t.Parallel()
	const rows = 400
	url := pgtest.URL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ids []int64
	var nos, phones []string
	for i := int64(1); i <= rows; i++ {
		if p := storedPhone(i); p != "" { // hits are never drawn among the messy ones
			ids, nos, phones = append(ids, i), append(nos, customerNo(i)), append(phones, p)
		}
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA demo;
		CREATE TABLE demo.customers (id bigint PRIMARY KEY, customer_no text NOT NULL, name text NOT NULL, phone text NOT NULL);
		CREATE INDEX ON demo.customers (custinfo.phone_key(phone))`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO demo.customers SELECT i, no, 'name ' || i, p FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u (i, no, p)`, ids, nos, phones); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, benchFixtureLookups); err != nil {
		t.Fatal(err)
	}
	l, err := loadLookup(ctx, pool, "customer")
	if err != nil {
		t.Fatal(err)
	}
	items := newWorkload(rand.New(rand.NewPCG(3, 0)), 500, rows, 80)
	for k := range items {
		p, err := l.Bind(items[k].values)
		if err != nil {
			t.Fatal(err)
		}
		items[k].sql, items[k].args, items[k].prep = p.SQL, p.Args, p
	}
	var notes strings.Builder
	meter, err := newBackendMeter(ctx, url, &notes)
	if err != nil {
		t.Fatal(err)
	}
	defer meter.close()
	cfg := Config{DatabaseURL: url, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, Seed: 5, Out: &notes}

	direct, err := cfg.direct(ctx, 2, l, items, 0, meter)
	if err != nil {
		t.Fatal(err)
	}
	mix := batchMix{Alone: 10, Queries: 10, Batched: 60}
	coalesced, err := cfg.coalesced(ctx, 8, mix.workers(8), l, items, mix, 0, meter)
	if err != nil {
		t.Fatal(err)
	}
	for name, res := range map[string]result{"pgx-direct": direct, "coalesced": coalesced} {
		if res.Requests == 0 || res.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors (%s); want some and none", name, res.Requests, res.Errors, res.ErrorMsg)
		}
		if !res.PGMeasured {
			t.Errorf("%s: PostgreSQL CPU not measured (%s)", name, notes.String())
		}
	}

	// A wrong answer is counted once per request it concerns.
	for k := range items {
		items[k].idText = "C-none"
	}
	step, _ := coalescedStep(pool, l, items, batchMix{Queries: 1, Batched: 6}, 1, 0)
	n, failed, err := step(ctx)
	if n != 6 || err == nil || failed == 0 || failed > n {
		t.Errorf("coalesced step with wrong expectations = %d, %d failed, %v; want 6 and some failed", n, failed, err)
	}
}

// The generated section says which comparisons are like for like, shows the
// coalesced statement and custinfo's batches, and fills the PostgreSQL
// column only where it was measured.
func TestMarkdownComparisons(t *testing.T) {
	t.Parallel()
	res := func(rate int, pg time.Duration, measured bool) []result {
		return []result{{Requests: rate, Elapsed: time.Second, PGCPU: pg, PGMeasured: measured}}
	}
	rep := &Report{
		Config:   Config{Rows: 10, Lookup: "customer", Duration: time.Second, Runs: 1},
		SQL:      "SELECT 1",
		BatchSQL: "SELECT custinfo_req.ord",
		PoolSize: 4,
		Rows: []Row{
			{Conns: 8, Target: TargetDirect, Runs: res(1000, 100*time.Millisecond, true)},
			{Conns: 8, Target: pgbenchTarget(4), Runs: res(2000, 0, false)},
			{Conns: 8, Target: TargetCustinfo, Runs: res(500, 50*time.Millisecond, true), Ratio: 0.5, RatioCoalesced: 0.25, RatioPgbench: 0.25, server: true},
		},
		Mixes: []MixNote{{Conns: 8, Run: 0, Workers: 2, Mix: batchMix{Alone: 50, Queries: 90, Batched: 450}}},
	}
	md := rep.Markdown("custinfo-bench")
	for _, want := range []string{
		"| PostgreSQL µs/req |",
		"| × coalesced pgx |",
		"| 8 | pgx-direct | 1000 | 0.00 | 0.00 | 0.00 | 0 | – | – | 100 |",
		"| 8 | pgbench (4 clients) | 2000 | 0.00 | 0.00 | 0.00 | 0 | – | – | – |",
		"| 0.50 | 0.25 | 0.25 |",
		"Like for like: `× coalesced pgx`",
		"against pgbench (4 clients)",
		"```sql\nSELECT custinfo_req.ord\n```",
		"- 8 conns, run 1: 10% of requests alone, the rest in 90 coalesced queries of 5.0 on average; 2 goroutine(s)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
