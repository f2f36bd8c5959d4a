package store

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"

	"github.com/custinfo/custinfo/db/migrations"
)

// VersionTable is where goose records applied migrations; its own name keeps it
// apart from a goose table the company may already have in the same database.
const VersionTable = "custinfo_schema_version"

func newProvider(db *sql.DB) (*goose.Provider, error) {
	st, err := database.NewStore(goose.DialectPostgres, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migration store: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectCustom, db, migrations.FS, goose.WithStore(st))
	if err != nil {
		return nil, fmt.Errorf("migration provider: %w", err)
	}
	return p, nil
}

// MigrateUp applies every pending migration and reports each to out.
func MigrateUp(ctx context.Context, db *sql.DB, out io.Writer) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	res, err := p.Up(ctx)
	for _, r := range res {
		fmt.Fprintf(out, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
	}
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	if len(res) == 0 {
		fmt.Fprintln(out, "no pending migrations")
	}
	return nil
}

// MigrateUpTo applies the pending migrations up to and including version,
// reporting each to out.
func MigrateUpTo(ctx context.Context, db *sql.DB, version int64, out io.Writer) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	res, err := p.UpTo(ctx, version)
	for _, r := range res {
		fmt.Fprintf(out, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(1e6))
	}
	if err != nil {
		return fmt.Errorf("migrate up to %d: %w", version, err)
	}
	return nil
}

// MigrateDown rolls back the most recent migration.
func MigrateDown(ctx context.Context, db *sql.DB, out io.Writer) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	r, err := p.Down(ctx)
	if err != nil {
		return fmt.Errorf("migrate down: %w", err)
	}
	fmt.Fprintf(out, "rolled back %s\n", r.Source.Path)
	return nil
}

// MigrateStatus prints every migration with its state.
func MigrateStatus(ctx context.Context, db *sql.DB, out io.Writer) error {
	p, err := newProvider(db)
	if err != nil {
		return err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	for _, s := range st {
		applied := "pending"
		if s.State == goose.StateApplied {
			applied = "applied " + s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		fmt.Fprintf(out, "%-40s %s\n", s.Source.Path, applied)
	}
	return nil
}
