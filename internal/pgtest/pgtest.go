// Package pgtest gives each test a fresh, migrated PostgreSQL database.
//
// The server comes from TEST_DATABASE_URL (default: the local server as user
// postgres). Databases are cloned from a migrated template and dropped when the
// test ends, so tests that use them may call t.Parallel.
package pgtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for pgtestdb
	"github.com/peterldowns/pgtestdb"

	"github.com/custinfo/custinfo/db/migrations"
	"github.com/custinfo/custinfo/internal/store"
)

// DefaultURL is the server used when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

type migrator struct{}

func (migrator) Hash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16], err
}

func (migrator) Migrate(ctx context.Context, db *sql.DB, _ pgtestdb.Config) error {
	return store.MigrateUp(ctx, db, io.Discard)
}

func serverConfig(t testing.TB) pgtestdb.Config {
	t.Helper()
	cc, err := pgx.ParseConfig(ServerURL())
	if err != nil {
		t.Fatalf("parse TEST_DATABASE_URL: %v", err)
	}
	opts := "sslmode=disable"
	if cc.TLSConfig != nil {
		opts = "sslmode=require"
	}
	return pgtestdb.Config{
		DriverName:                "pgx",
		Host:                      cc.Host,
		Port:                      strconv.Itoa(int(cc.Port)),
		User:                      cc.User,
		Password:                  cc.Password,
		Database:                  cc.Database,
		Options:                   opts,
		ForceTerminateConnections: true,
	}
}

// URL creates a fresh, migrated database and returns its connection URL.
// The database is dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	return pgtestdb.Custom(t, serverConfig(t), migrator{}).URL()
}

// New creates a fresh, migrated database and returns a pool connected to it.
// The pool is closed and the database dropped when the test ends.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), URL(t))
	if err != nil {
		t.Fatalf("connect test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// EmptyURL creates a fresh database without the custinfo schema (for tests
// of the migrations themselves) and returns its connection URL. The
// database is dropped when the test ends.
func EmptyURL(t testing.TB) string {
	t.Helper()
	return pgtestdb.Custom(t, serverConfig(t), pgtestdb.NoopMigrator{}).URL()
}
