package store_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
)

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
