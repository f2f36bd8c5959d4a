package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
)

// TestKeyRulesInSQL writes keys with plain SQL, as an admin in psql would:
// weak or untrimmed keys and other bad rows are refused, and no part of the
// error (message, detail, hint, context) shows the key.
func TestKeyRulesInSQL(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE people (id int PRIMARY KEY, name text); INSERT INTO custinfo.lookups (name, source) VALUES ('names', 'people')`); err != nil {
		t.Fatal(err)
	}
	const strong = "strong-key-0123456789abcdef"
	tests := []struct {
		name, sql, secret string
		args              []any
		want              string // in the error's message
	}{
		{"six characters", `INSERT INTO custinfo.api_keys (secret) VALUES ('abc123')`, "abc123", nil, "too weak"},
		{"fifteen characters", `INSERT INTO custinfo.api_keys (secret) VALUES ('0123456789abcde')`, "0123456789abcde", nil, "too weak"},
		{"fifteen Hangul", `INSERT INTO custinfo.api_keys (secret) VALUES ('가나다라마바사아자차카타파하가')`, "가나다라마바사아자차카타파하가", nil, "too weak"},
		{"one character repeated", `INSERT INTO custinfo.api_keys (secret) VALUES ('zzzzzzzzzzzzzzzzzzzzzzzz')`, "zzzzzzzzzzzzzzzzzzzzzzzz", nil, "too weak"},
		{"as a parameter", `INSERT INTO custinfo.api_keys (secret, lookup) VALUES ($1, 'names')`, "hunter2hunter2", []any{"hunter2hunter2"}, "too weak"},
		{"empty", `INSERT INTO custinfo.api_keys (secret) VALUES ('')`, "", nil, "empty or has white space"},
		{"trailing newline", "INSERT INTO custinfo.api_keys (secret) VALUES (E'newline-key-0123456789\\n')", "newline-key-0123456789", nil, "empty or has white space"},
		{"bad scheme", `INSERT INTO custinfo.api_keys (secret, schemes) VALUES ('scheme-key-0123456789', '{hmac}')`, "scheme-key-0123456789", nil, "schemes must name"},
		{"null label", `INSERT INTO custinfo.api_keys (secret, label) VALUES ('label-key-0123456789', NULL)`, "label-key-0123456789", nil, "may not be NULL"},
		{"weakened by update", `UPDATE custinfo.api_keys SET secret = 'short-update' WHERE secret = '` + strong + `'`, "short-update", nil, "too weak"},
		{"bad scheme by update", `UPDATE custinfo.api_keys SET schemes = '{none}' WHERE secret = '` + strong + `'`, strong, nil, "schemes must name"},
	}
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.api_keys (secret, label) VALUES ($1, 'strong')`, strong); err != nil {
		t.Fatalf("a strong key is refused: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, tt.sql, tt.args...)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) {
				t.Fatalf("%s = %v, want a PostgreSQL error", tt.sql, err)
			}
			if !strings.Contains(pe.Message, tt.want) {
				t.Errorf("%s: message %q, want one with %q", tt.sql, pe.Message, tt.want)
			}
			if tt.secret == "" {
				return
			}
			all := fmt.Sprintf("%v|%s|%s|%s|%s|%s", err, pe.Message, pe.Detail, pe.Hint, pe.Where, pe.InternalQuery)
			if strings.Contains(all, tt.secret) {
				t.Errorf("%s: the error shows the key: %s", tt.sql, all)
			}
		})
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM custinfo.api_keys`).Scan(&n); err != nil || n != 1 {
		t.Errorf("keys stored = %d (%v), want only the strong one", n, err)
	}
}

// TestWeakKeyStoredBeforeTheRule checks that a key stored before the rule
// existed can still be revoked and relabelled, but not replaced by another
// weak one.
func TestWeakKeyStoredBeforeTheRule(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// As if stored before the migration: without the trigger.
	var id int64
	if _, err := tx.Exec(ctx, `ALTER TABLE custinfo.api_keys DISABLE TRIGGER api_keys_check`); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `INSERT INTO custinfo.api_keys (secret, label) VALUES ('old123', 'old') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE custinfo.api_keys ENABLE TRIGGER api_keys_check`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE custinfo.api_keys SET label = 'old, to revoke' WHERE id = $1`, id); err != nil {
		t.Errorf("relabel an old weak key: %v", err)
	}
	if err := store.New(pool).RevokeKey(ctx, id); err != nil {
		t.Errorf("revoke an old weak key: %v", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE custinfo.api_keys SET secret = 'old1234' WHERE id = $1`, id); err == nil {
		t.Errorf("an old weak key was replaced by another weak one")
	}
}
