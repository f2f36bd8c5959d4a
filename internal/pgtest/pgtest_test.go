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
	if n != 5 {
		t.Errorf("custinfo tables = %d, want 5", n)
	}
}
