package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/custinfo/custinfo/internal/store"
)

func runMigrate(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "migrate", "up|down|status [flags]")
	dbURL := databaseFlag(fs, e)
	wait := connectWaitFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	pool, err := connectWaiting(ctx, *wait, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	switch fs.Arg(0) {
	case "up":
		return store.MigrateUp(ctx, db, e.stdout)
	case "down":
		return store.MigrateDown(ctx, db, e.stdout)
	case "status":
		return store.MigrateStatus(ctx, db, e.stdout)
	default:
		return fmt.Errorf("migrate: unknown action %q (want up, down or status)", fs.Arg(0))
	}
}
