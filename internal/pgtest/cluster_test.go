package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/pgtest"
)

func TestClusterStandbyReplays(t *testing.T) {
	t.Parallel()
	primary := pgtest.NewPrimary(t)
	standby := primary.NewStandby(t, "standby")
	db := primary.NewDatabase(t)
	primary.Exec(db, `CREATE TABLE t (v text); INSERT INTO t VALUES ('replicated')`)
	primary.WaitReplayed(standby, 30*time.Second)

	ctx := context.Background()
	pool := standby.Pool(db)
	var got string
	var recovering bool
	if err := pool.QueryRow(ctx, `SELECT v, pg_is_in_recovery() FROM t`).Scan(&got, &recovering); err != nil {
		t.Fatalf("read on standby: %v", err)
	}
	if got != "replicated" || !recovering {
		t.Errorf("standby read %q, in recovery %v; want %q, true", got, recovering, "replicated")
	}
	var lookups int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM custinfo.lookups`).Scan(&lookups); err != nil {
		t.Errorf("standby has no migrated custinfo schema: %v", err)
	}

	standby.Stop("immediate")
	if _, err := standby.ReplayLSN(ctx); err == nil {
		t.Errorf("standby answered after pg_ctl stop -m immediate")
	}
	standby.Start()
	primary.WaitReplayed(standby, 30*time.Second)
}

func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	primary := pgtest.NewPrimary(t)
	db := primary.NewDatabase(t)
	port := pgtest.PgBouncer(t, primary.HostPort(), "transaction")

	ctx := context.Background()
	cfg, err := pgx.ParseConfig(primary.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Port = uint16(port)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect through pgbouncer: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	for i := range 3 {
		if err := conn.QueryRow(ctx, `SELECT $1::int`, i).Scan(&n); err != nil || n != i {
			t.Fatalf("SELECT $1 through pgbouncer = %d, %v; want %d", n, err, i)
		}
	}
}
