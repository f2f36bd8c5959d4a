package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
)

func TestPruneAccessLog(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	st := store.New(pool)

	now := time.Now().Truncate(time.Microsecond)
	cutoff := now.Add(-365 * 24 * time.Hour)
	ages := []struct {
		prefix string
		at     time.Time
		n      int
	}{
		{"old-800d", now.Add(-800 * 24 * time.Hour), 7},
		{"old-366d", now.Add(-366 * 24 * time.Hour), 5},
		{"old-1us", cutoff.Add(-time.Microsecond), 1},
		{"keep-cutoff", cutoff, 1}, // not older than the cutoff: kept
		{"keep-364d", now.Add(-364 * 24 * time.Hour), 3},
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

	before, err := st.CountAccessLogBefore(ctx, cutoff)
	if err != nil {
		t.Fatalf("CountAccessLogBefore: %v", err)
	}
	if before != 13 {
		t.Errorf("CountAccessLogBefore(cutoff) = %d, want 13", before)
	}
	var steps []int64
	n, err := st.PruneAccessLog(ctx, cutoff, 4, func(total int64) { steps = append(steps, total) })
	if err != nil {
		t.Fatalf("PruneAccessLog: %v", err)
	}
	if n != 13 {
		t.Errorf("PruneAccessLog deleted %d rows, want 13", n)
	}
	if diff := cmp.Diff([]int64{4, 8, 12, 13}, steps); diff != "" {
		t.Errorf("progress totals (-want +got):\n%s", diff)
	}

	var kept []string
	rows, err := pool.Query(ctx, `SELECT request_id FROM custinfo.access_log ORDER BY at, request_id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("scan: %v", err)
		}
		kept = append(kept, id)
	}
	if diff := cmp.Diff(wantKept, kept); diff != "" {
		t.Errorf("rows left after prune (-want +got):\n%s", diff)
	}

	n, err = st.PruneAccessLog(ctx, cutoff, 4, nil)
	if err != nil || n != 0 {
		t.Errorf("second PruneAccessLog = %d, %v, want 0, nil", n, err)
	}
}

func TestWriteAccessLogNulls(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	entries := []audit.Entry{
		{At: time.Now(), RequestID: "denied", Lookup: "customer", Code: "access_denied", Status: 403},
		{At: time.Now(), RequestID: "found", Lookup: "customer", Code: "ok", Status: 200, KeyID: 3,
			ClientIP: netip.MustParseAddr("::1"), Queried: true, Matches: 2, Query: "010-1234-5678"},
	}
	if err := store.New(pool).WriteAccessLog(ctx, entries); err != nil {
		t.Fatalf("WriteAccessLog: %v", err)
	}
	type row struct {
		ID, Masked       string
		KeyNull, IPNull  bool
		MatchNull, Clear bool
	}
	var got []row
	rows, err := pool.Query(ctx, `SELECT request_id, query_masked, key_id IS NULL, client_ip IS NULL, matches IS NULL,
		strpos(a::text, '12345678') > 0 FROM custinfo.access_log a ORDER BY request_id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.ID, &r.Masked, &r.KeyNull, &r.IPNull, &r.MatchNull, &r.Clear); err != nil {
			t.Fatalf("scan: %v", err)
		}
		got = append(got, r)
	}
	want := []row{
		{ID: "denied", KeyNull: true, IPNull: true, MatchNull: true},
		{ID: "found"}, // the clear Query of an unprepared entry is not stored
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}
