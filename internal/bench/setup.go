package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ensureDatabase creates the database named in databaseURL when it does not
// exist, or drops and recreates it when recreate is set.
func ensureDatabase(ctx context.Context, databaseURL string, recreate bool) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("parse bench database url: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" || name == "template0" || name == "template1" {
		return fmt.Errorf("bench database %q: name a database of its own, e.g. custinfo_bench", name)
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to the server's postgres database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	if recreate {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop bench database: %w", err)
		}
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look for bench database: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("create bench database: %w", err)
	}
	return nil
}

// loadDemo migrates the bench database and fills it with the demo customers,
// lookups and key by running the custinfo binary itself, then checks that
// the table holds exactly rows customers (more would turn misses into hits).
func loadDemo(ctx context.Context, binary, databaseURL string, rows int64, key string, progress io.Writer) error {
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+databaseURL)
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("custinfo %s: %w: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
		}
		return nil
	}
	if err := run("migrate", "up"); err != nil {
		return err
	}
	fmt.Fprintf(progress, "loading demo data (%d customers; the first run takes a while)\n", rows)
	if err := run("demo", "--rows", fmt.Sprint(rows), "--key", key); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect bench database: %w", err)
	}
	defer pool.Close()
	var have int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM demo.customers`).Scan(&have); err != nil {
		return fmt.Errorf("count customers: %w", err)
	}
	if have != rows {
		return fmt.Errorf("bench database holds %d customers, want %d: run again with --recreate", have, rows)
	}
	// Set hint bits and the visibility map now, not during the first phase.
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) demo.customers, demo.accounts`); err != nil {
		return fmt.Errorf("vacuum demo tables: %w", err)
	}
	return nil
}
