package pgtest_test

import (
	"context"
	"testing"

	"github.com/custinfo/custinfo/internal/pgtest"
)

func TestNewIsMigrated(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	var n int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_class WHERE relnamespace = 'custinfo'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition`).Scan(&n)
	if err != nil {
		t.Fatalf("count custinfo tables: %v", err)
	}
	// lookups, lookup_params, lookup_results, api_keys, access_log, status.
	if n != 6 {
		t.Errorf("custinfo tables = %d, want 6", n)
	}
}
