package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
)

// versionBeforePartitions is the last migration before the access log was
// partitioned.
const versionBeforePartitions = 5

// day is midnight UTC of the day n days from today.
func day(n int) time.Time {
	y, m, d := time.Now().UTC().Date()
	return time.Date(y, m, d+n, 0, 0, 0, 0, time.UTC)
}

// logRows returns every access-log row as text, by id.
func logRows(t *testing.T, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT a::text FROM custinfo.access_log a ORDER BY id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	return got
}

// partitionOf returns, by request_id, the partition each row is in.
func partitionOf(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT request_id, tableoid::regclass::text FROM custinfo.access_log`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var id, part string
		if err := rows.Scan(&id, &part); err != nil {
			t.Fatalf("scan: %v", err)
		}
		m[id] = part
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	return m
}

func partitionNames(t *testing.T, st *store.Store) []string {
	t.Helper()
	parts, err := st.AccessLogPartitions(context.Background())
	if err != nil {
		t.Fatalf("AccessLogPartitions: %v", err)
	}
	var names []string
	for _, p := range parts {
		names = append(names, p.Name)
	}
	return names
}

// utcDay is midnight UTC of t's day.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func dayPartition(t time.Time) string {
	return "access_log_" + t.UTC().Format("20060102")
}

// TestMigrationKeepsAccessLog fills the access log of a database at the
// last version before partitioning, migrates it up, and finds every row,
// with its id, in the partitioned table; then down and up again.
func TestMigrationKeepsAccessLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.EmptyURL(t)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	if err := store.MigrateUpTo(ctx, db, versionBeforePartitions, io.Discard); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	ages := []struct {
		name string
		at   time.Time
	}{
		{"800d", now.Add(-800 * 24 * time.Hour)},
		{"400d", now.Add(-400 * 24 * time.Hour)},
		{"yesterday", now.Add(-24 * time.Hour)},
		{"in 3 days", now.Add(3 * 24 * time.Hour)}, // a clock ahead
		{"in 2 years", now.Add(2 * 365 * 24 * time.Hour)},
		{"now", now},
	}
	for _, a := range ages {
		for i := range 3 {
			_, err := pool.Exec(ctx, `INSERT INTO custinfo.access_log (at, request_id, lookup, key_id, client_ip, code, status, latency_us, query_masked, query_hash, matches)
				VALUES ($1, $2, 'customer', 7, '192.0.2.1', 'ok', 200, 1234, '010****5678', 'h-' || $2, 1)`, a.at, fmt.Sprintf("%s-%d", a.name, i))
			if err != nil {
				t.Fatalf("insert at version %d: %v", versionBeforePartitions, err)
			}
		}
	}
	// The last id is used and gone: the sequence is ahead of max(id).
	if _, err := pool.Exec(ctx, `DELETE FROM custinfo.access_log WHERE request_id = 'now-2'`); err != nil {
		t.Fatal(err)
	}
	before := logRows(t, pool)
	if len(before) != 17 {
		t.Fatalf("rows before the migration = %d, want 17", len(before))
	}

	if err := store.MigrateUp(ctx, db, io.Discard); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, logRows(t, pool)); diff != "" {
		t.Errorf("rows after the migration (-before +after):\n%s", diff)
	}
	var kind string
	if err := pool.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'custinfo.access_log'::regclass`).Scan(&kind); err != nil {
		t.Fatal(err)
	}
	if kind != "p" {
		t.Errorf("custinfo.access_log relkind = %q, want p (partitioned)", kind)
	}
	where := partitionOf(t, pool)
	wantWhere := map[string]string{
		"800d-0": "custinfo.access_log_legacy", "400d-0": "custinfo.access_log_legacy",
		"yesterday-0": "custinfo.access_log_legacy", "now-0": "custinfo.access_log_legacy",
		"in 3 days-0":  "custinfo." + dayPartition(now.Add(3*24*time.Hour)),
		"in 2 years-0": "custinfo.access_log_default",
	}
	for id, want := range wantWhere {
		if where[id] != want {
			t.Errorf("row %s is in %s, want %s", id, where[id], want)
		}
	}

	// New rows continue the ids, past the deleted one.
	st := store.New(pool)
	if err := st.WriteAccessLog(ctx, []audit.Entry{{At: now, RequestID: "after", Lookup: "customer", Code: "ok", Status: 200}}); err != nil {
		t.Fatalf("WriteAccessLog after the migration: %v", err)
	}
	var id, maxOld int64
	if err := pool.QueryRow(ctx, `SELECT id FROM custinfo.access_log WHERE request_id = 'after'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT max(id) FROM custinfo.access_log WHERE request_id <> 'after'`).Scan(&maxOld); err != nil {
		t.Fatal(err)
	}
	if id != 19 || maxOld != 17 {
		t.Errorf("id of a new row = %d (old max %d), want 19 (18 was used and deleted)", id, maxOld)
	}

	// Prune deletes the legacy partition's old rows in batches; it stays,
	// since it holds rows of today.
	res, err := st.PruneAccessLog(ctx, now.Add(-365*24*time.Hour), 2, false, nil)
	if err != nil {
		t.Fatalf("PruneAccessLog: %v", err)
	}
	if res.Deleted != 6 || len(res.Dropped) != 0 {
		t.Errorf("PruneAccessLog = %+v, want 6 rows deleted (800d, 400d) and no partition dropped", res)
	}
	after := logRows(t, pool)

	if err := store.MigrateDown(ctx, db, io.Discard); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(after, logRows(t, pool)); diff != "" {
		t.Errorf("rows after migrating down (-before +after):\n%s", diff)
	}
	if err := store.MigrateUp(ctx, db, io.Discard); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(after, logRows(t, pool)); diff != "" {
		t.Errorf("rows after migrating up again (-before +after):\n%s", diff)
	}
}

func TestEnsureAccessLogPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	st := store.New(pool)

	// Rows of days without a partition wait in the default partition.
	waiting := []audit.Entry{
		{At: day(-20).Add(5 * time.Hour), RequestID: "20 days ago", Lookup: "customer", Code: "ok", Status: 200},
		{At: day(-500), RequestID: "500 days ago", Lookup: "customer", Code: "ok", Status: 200},
		{At: day(30).Add(-time.Microsecond), RequestID: "in 29 days", Lookup: "customer", Code: "ok", Status: 200},
		{At: day(30), RequestID: "in 30 days", Lookup: "customer", Code: "ok", Status: 200},
	}
	if err := st.WriteAccessLog(ctx, waiting); err != nil {
		t.Fatalf("WriteAccessLog: %v", err)
	}
	for id, part := range partitionOf(t, pool) {
		if part != "custinfo.access_log_default" {
			t.Errorf("row %s is in %s before its day has a partition, want the default", id, part)
		}
	}

	had := partitionNames(t, st) // the days the migration made, when the test database's template was made
	n, err := st.EnsureAccessLogPartitions(ctx, day(-3), day(29).Add(13*time.Hour))
	if err != nil {
		t.Fatalf("EnsureAccessLogPartitions: %v", err)
	}
	want := []string{dayPartition(day(-20))}
	for d := -3; d <= 29; d++ {
		want = append(want, dayPartition(day(d)))
	}
	got := partitionNames(t, st)
	wantNew := 0
	for _, p := range want {
		if !slices.Contains(got, p) {
			t.Errorf("no partition %s after EnsureAccessLogPartitions", p)
		}
		if !slices.Contains(had, p) {
			wantNew++
		}
	}
	if n != wantNew {
		t.Errorf("EnsureAccessLogPartitions created %d partitions, want %d", n, wantNew)
	}
	wantWhere := map[string]string{
		"20 days ago":  "custinfo." + dayPartition(day(-20)),
		"500 days ago": "custinfo.access_log_default", // more than a year before first: left for prune
		"in 29 days":   "custinfo." + dayPartition(day(29)),
		"in 30 days":   "custinfo.access_log_default",
	}
	if diff := cmp.Diff(wantWhere, partitionOf(t, pool)); diff != "" {
		t.Errorf("rows' partitions (-want +got):\n%s", diff)
	}

	n, err = st.EnsureAccessLogPartitions(ctx, day(-3), day(29))
	if err != nil || n != 0 {
		t.Errorf("EnsureAccessLogPartitions again = %d, %v, want 0, nil", n, err)
	}

	// Several servers at once: each partition is created once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := st.EnsureAccessLogPartitions(ctx, day(0), day(40))
			if err != nil {
				t.Errorf("concurrent EnsureAccessLogPartitions: %v", err)
			}
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != 11 {
		t.Errorf("concurrent EnsureAccessLogPartitions created %d partitions in all, want 11 (days 30 to 40)", total)
	}
	if got := partitionOf(t, pool)["in 30 days"]; got != "custinfo."+dayPartition(day(30)) {
		t.Errorf("row of day 30 is in %s after its partition was made, want %s", got, dayPartition(day(30)))
	}

	for _, tt := range []struct{ first, last time.Time }{
		{day(1), day(0)},
		{day(0), day(store.MaxPartitionDays)},
	} {
		if _, err := st.EnsureAccessLogPartitions(ctx, tt.first, tt.last); err == nil {
			t.Errorf("EnsureAccessLogPartitions(%s, %s) succeeded, want an error", tt.first, tt.last)
		}
	}
	// The serve role may call the function: hostile arguments are refused
	// before anything is created.
	partsBefore := partitionNames(t, st)
	for _, args := range []string{
		"current_date, current_date + 400",       // 401 days
		"current_date + 1, current_date",         // reversed
		"NULL, current_date",                     // unknown
		"current_date, NULL",                     //
		"current_date + 390, current_date + 401", // too far ahead
		"current_date - 401, current_date - 390", // too far back
		"'infinity', 'infinity'",                 //
		"'-infinity', current_date",              //
		"'5874897-12-31', '5874897-12-31'",       // the last date PostgreSQL has
		"'4713-01-01 BC', '4713-01-01 BC'",       // the first
	} {
		_, err := pool.Exec(ctx, "SELECT custinfo.access_log_ensure_partitions("+args+")")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "22023" {
			t.Errorf("access_log_ensure_partitions(%s) = %v, want SQLSTATE 22023 (invalid_parameter_value)", args, err)
		}
	}
	if diff := cmp.Diff(partsBefore, partitionNames(t, st)); diff != "" {
		t.Errorf("partitions after refused calls (-before +after):\n%s", diff)
	}
}

// TestPruneAccessLog drops the daily partitions wholly older than the
// cutoff, keeps the day that straddles it, and deletes the old rows of the
// default partition.
func TestPruneAccessLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	st := store.New(pool)
	// Days around the cutoff and today; rows of the others go to the
	// default partition.
	for _, r := range [][2]int{{-369, -363}, {-1, 1}} {
		if _, err := st.EnsureAccessLogPartitions(ctx, day(r[0]), day(r[1])); err != nil {
			t.Fatalf("EnsureAccessLogPartitions: %v", err)
		}
	}

	now := time.Now().Truncate(time.Microsecond)
	cutoff := now.Add(-365 * 24 * time.Hour)
	ages := []struct {
		prefix string
		at     time.Time
		n      int
	}{
		{"gone-800d", now.Add(-800 * 24 * time.Hour), 6}, // in the default partition
		{"gone-380d", now.Add(-380 * 24 * time.Hour), 1}, // in the default partition
		{"gone-368d", now.Add(-368 * 24 * time.Hour), 5},
		{"gone-day-before", utcDay(cutoff).Add(-time.Microsecond), 1}, // the last instant of a day wholly older
		{"keep-same-day", cutoff.Add(-time.Microsecond), 1},           // its day straddles the cutoff
		{"keep-cutoff", cutoff, 1},
		{"keep-364d", now.Add(-364 * 24 * time.Hour), 3},
		{"keep-100d", now.Add(-100 * 24 * time.Hour), 2}, // in the default partition
		{"keep-now", now, 2},
	}
	var entries []audit.Entry
	var wantKept []string
	for _, a := range ages {
		for i := range a.n {
			id := fmt.Sprintf("%s-%d", a.prefix, i)
			entries = append(entries, audit.Entry{At: a.at, RequestID: id, Lookup: "customer", Code: "ok", Status: 200})
			if a.prefix[:4] == "keep" {
				wantKept = append(wantKept, id)
			}
		}
	}
	if err := st.WriteAccessLog(ctx, entries); err != nil {
		t.Fatalf("WriteAccessLog: %v", err)
	}
	if got := partitionOf(t, pool)["gone-800d-0"]; got != "custinfo.access_log_default" {
		t.Fatalf("row 800 days old is in %s, want the default partition", got)
	}
	partsBefore := partitionNames(t, st)
	var wantDropped []string
	for _, p := range partsBefore {
		if p != "access_log_default" && p < dayPartition(cutoff) {
			wantDropped = append(wantDropped, p)
		}
	}

	dry, err := st.PruneAccessLog(ctx, cutoff, 4, true, nil)
	if err != nil {
		t.Fatalf("PruneAccessLog dry run: %v", err)
	}
	want := store.AccessLogPrune{Dropped: wantDropped, DroppedRows: 6, Deleted: 7}
	if diff := cmp.Diff(want, dry); diff != "" {
		t.Errorf("PruneAccessLog dry run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(partsBefore, partitionNames(t, st)); diff != "" {
		t.Errorf("partitions after a dry run (-before +after):\n%s", diff)
	}

	var steps []int64
	res, err := st.PruneAccessLog(ctx, cutoff, 4, false, func(total int64) { steps = append(steps, total) })
	if err != nil {
		t.Fatalf("PruneAccessLog: %v", err)
	}
	want.DroppedRows = 0 // counted only by a dry run
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("PruneAccessLog (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{4, 7}, steps); diff != "" {
		t.Errorf("progress totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantKept, logRowsByAt(t, pool)); diff != "" {
		t.Errorf("rows left after prune (-want +got):\n%s", diff)
	}
	left := partitionNames(t, st)
	for _, p := range wantDropped {
		if slices.Contains(left, p) {
			t.Errorf("partition %s is still there after prune", p)
		}
	}
	if !slices.Contains(left, dayPartition(cutoff)) {
		t.Errorf("partition %s, which straddles the cutoff, was dropped", dayPartition(cutoff))
	}

	res, err = st.PruneAccessLog(ctx, cutoff, 4, false, nil)
	if err != nil || res.Deleted != 0 || len(res.Dropped) != 0 {
		t.Errorf("second PruneAccessLog = %+v, %v, want nothing removed", res, err)
	}
	if _, err := st.PruneAccessLog(ctx, cutoff, 0, false, nil); err == nil {
		t.Errorf("PruneAccessLog with batch 0 succeeded, want an error")
	}
}

// TestPruneWaitsForLocks: a partition that a long transaction holds is
// dropped once that transaction ends, within the tries.
func TestPruneWaitsForLocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.New(t)
	st := store.New(pool)
	if _, err := st.EnsureAccessLogPartitions(ctx, day(-400), day(-399)); err != nil {
		t.Fatalf("EnsureAccessLogPartitions: %v", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM custinfo.access_log WHERE at < now() - interval '300 days'`); err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(3 * time.Second) // past one lock timeout
		_ = tx.Rollback(ctx)
	}()
	res, err := st.PruneAccessLog(ctx, day(-300), 100, false, nil)
	<-released
	if err != nil {
		t.Fatalf("PruneAccessLog while a reader holds the log: %v", err)
	}
	if diff := cmp.Diff([]string{dayPartition(day(-400)), dayPartition(day(-399))}, res.Dropped); diff != "" {
		t.Errorf("dropped partitions (-want +got):\n%s", diff)
	}
}

func logRowsByAt(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT request_id FROM custinfo.access_log ORDER BY at, request_id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	return got
}

// TestTwoWritersIntoPartitions: two access-log writers, as two servers run
// them, COPY into the partitioned table across days, the default partition
// included; every entry lands once.
func TestTwoWritersIntoPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.URL(t)
	days := []time.Time{day(-1).Add(23*time.Hour + 59*time.Minute), day(0).Add(time.Hour), time.Now(), day(500)}
	const perWriter = 3000
	var wg sync.WaitGroup
	for w := range 2 {
		pool, err := pgxpool.New(ctx, u)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(pool.Close)
		st := store.New(pool)
		if _, err := st.EnsureAccessLogPartitions(ctx, day(-1), day(1)); err != nil {
			t.Fatalf("EnsureAccessLogPartitions: %v", err)
		}
		wr := audit.NewWriter(audit.Config{WriteFunc: st.WriteAccessLog, StatusFunc: st.AccessLogWriteStatus, BatchSize: 128, FlushInterval: 5 * time.Millisecond})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- wr.Run(runCtx) }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			for i := range perWriter {
				wr.Add(audit.Entry{At: days[i%len(days)], RequestID: fmt.Sprintf("w%d-%d", w, i), Lookup: "customer", Code: "ok", Status: 200})
			}
			cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
			defer ccancel()
			if err := wr.Close(cctx); err != nil {
				t.Errorf("writer %d Close: %v", w, err)
			}
			if err := <-done; err != nil {
				t.Errorf("writer %d Run: %v", w, err)
			}
			if wr.Dropped() != 0 {
				t.Errorf("writer %d dropped %d entries", w, wr.Dropped())
			}
		}()
	}
	wg.Wait()
	check, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	var rows, ids, requests int
	err = check.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), count(DISTINCT request_id) FROM custinfo.access_log`).Scan(&rows, &ids, &requests)
	if err != nil {
		t.Fatal(err)
	}
	if rows != 2*perWriter || ids != rows || requests != rows {
		t.Errorf("access log: %d rows, %d ids, %d request ids; want %d of each", rows, ids, requests, 2*perWriter)
	}
	var inDefault int
	if err := check.QueryRow(ctx, `SELECT count(*) FROM custinfo.access_log_default`).Scan(&inDefault); err != nil {
		t.Fatal(err)
	}
	if inDefault != 2*perWriter/len(days) {
		t.Errorf("rows in the default partition = %d, want %d (the day without a partition)", inDefault, 2*perWriter/len(days))
	}
}
