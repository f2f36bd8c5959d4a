package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custinfo/custinfo/internal/pgtest"
)

// renderRoleSQL returns db/roles/serve_role.sql with its psql variables
// filled in as psql would: :"x" as an identifier, :'x' as a literal.
func renderRoleSQL(t *testing.T, role, password, dbname string) string {
	t.Helper()
	b, err := os.ReadFile("../../db/roles/serve_role.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), `\`) {
			t.Fatalf("serve_role.sql has a psql meta-command this test cannot run: %s", line)
		}
	}
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return strings.NewReplacer(
		`:"role"`, pgx.Identifier{role}.Sanitize(),
		`:'role'`, quote(role),
		`:'password'`, quote(password),
		`:"DBNAME"`, pgx.Identifier{dbname}.Sanitize(),
	).Replace(string(b))
}

// asUser returns rawURL with its user and password replaced.
func asUser(t *testing.T, rawURL string, user *url.Userinfo) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = user
	return u.String()
}

// TestServeLeastPrivilege creates the role of db/roles/serve_role.sql, runs
// serve as that role, and checks that it answers lookups, writes the access
// log, and can change nothing else.
func TestServeLeastPrivilege(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := opsSeed(t)
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	adminURL := asUser(t, dbURL, server.User) // the test server's superuser
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")

	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	role := "custinfo_server_" + hex.EncodeToString(suffix[:]) // roles are shared by the whole server

	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		defer admin.Close(cctx)
		ident := pgx.Identifier{role}.Sanitize()
		_, _ = admin.Exec(cctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role)
		if _, err := admin.Exec(cctx, "DROP OWNED BY "+ident+"; DROP ROLE "+ident); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	// Twice: the script is safe to run again once the role exists.
	for range 2 {
		if _, err := admin.Exec(ctx, renderRoleSQL(t, role, "not-used-with-trust-auth", dbname)); err != nil {
			t.Fatalf("run serve_role.sql: %v", err)
		}
	}
	grant := "GRANT USAGE ON SCHEMA opsdata TO " + pgx.Identifier{role}.Sanitize() +
		"; GRANT SELECT ON opsdata.people TO " + pgx.Identifier{role}.Sanitize()
	if _, err := admin.Exec(ctx, grant); err != nil {
		t.Fatalf("grant the source: %v", err)
	}

	roleURL := asUser(t, dbURL, url.User(role))
	s := opsStart(t, serveFlags{databaseURL: roleURL, accessLogPartitionDays: 30})
	const lookups = 3
	for range lookups {
		status, body := opsDo(t, opsClient, opsLookup(t, s.base, "customer", opsKey, `{"callNum":"`+opsPhone+`"}`, ""))
		if status != 200 || !strings.Contains(body, "C-0001") {
			t.Fatalf("lookup as %s = %d %s, want 200 with the customer", role, status, body)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("serve as %s: %v", role, err)
	}
	var rows int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM custinfo.access_log WHERE code = 'ok'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != lookups {
		t.Errorf("access_log rows written by serve as %s = %d, want %d", role, rows, lookups)
	}
	// Its own row of custinfo.status: the lookup it served, the key it
	// verified with, and that it stopped.
	var state string
	var keyUsed, stopped bool
	if err := admin.QueryRow(ctx, `SELECT lookups->'customer'->>'state',
		EXISTS (SELECT 1 FROM jsonb_each(keys) AS k WHERE k.value->>'last_used' IS NOT NULL), stopped_at IS NOT NULL
		FROM custinfo.status`).Scan(&state, &keyUsed, &stopped); err != nil {
		t.Fatalf("custinfo.status written by serve as %s: %v", role, err)
	}
	if state != "ok" || !keyUsed || !stopped {
		t.Errorf("custinfo.status: customer %q, a key used %v, stopped %v; want ok, true, true", state, keyUsed, stopped)
	}
	if strings.Contains(s.logs.String(), "permission denied") {
		t.Errorf("serve as %s logged a permission error:\n%s", role, s.logs)
	}

	conn, err := pgx.Connect(ctx, roleURL)
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	defer conn.Close(ctx)
	tests := []struct {
		name    string
		sql     string
		allowed bool
	}{
		{"read lookups", `SELECT count(*) FROM custinfo.lookups`, true},
		{"read keys", `SELECT count(*) FROM custinfo.api_keys`, true},
		{"read source", `SELECT count(*) FROM opsdata.people`, true},
		{"append access log", `INSERT INTO custinfo.access_log (at, request_id, lookup, code, status, latency_us) VALUES (now(), 'r', 'customer', 'ok', 200, 1)`, true},
		{"change a key", `UPDATE custinfo.api_keys SET revoked_at = NULL`, false},
		{"add a key", `INSERT INTO custinfo.api_keys (secret) VALUES ('planted-key-0123456789')`, false},
		{"change a lookup", `UPDATE custinfo.lookups SET allowed_networks = NULL`, false},
		{"delete a mapping", `DELETE FROM custinfo.lookup_results`, false},
		{"ask whether a transaction committed", `SELECT pg_xact_status(pg_current_xact_id())`, true},
		{"record its status", `INSERT INTO custinfo.status (instance, started_at, checked_at) VALUES ('x', now(), now())`, true},
		{"read the status", `SELECT count(*) FROM custinfo.status`, true},
		{"create access-log partitions", `SELECT custinfo.access_log_ensure_partitions(current_date, current_date + 30)`, true},
		{"read the access log", `SELECT count(*) FROM custinfo.access_log`, false},
		{"read a partition of the access log", `SELECT count(*) FROM custinfo.access_log_default`, false},
		{"detach a partition", `ALTER TABLE custinfo.access_log DETACH PARTITION custinfo.access_log_default`, false},
		{"drop a partition", `DROP TABLE custinfo.access_log_default`, false},
		{"erase the access log", `DELETE FROM custinfo.access_log`, false},
		{"rewrite the access log", `UPDATE custinfo.access_log SET code = 'ok'`, false},
		{"truncate the access log", `TRUNCATE custinfo.access_log`, false},
		{"change a customer", `UPDATE opsdata.people SET name = 'x'`, false},
		{"create in the schema", `CREATE TABLE custinfo.planted (id int)`, false},
		{"drop a table", `DROP TABLE custinfo.api_keys`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, tt.sql)
			var pe *pgconn.PgError
			switch {
			case tt.allowed && err != nil:
				t.Errorf("%s as %s: %v, want it allowed", tt.sql, role, err)
			case !tt.allowed && err == nil:
				t.Errorf("%s as %s succeeded, want it denied", tt.sql, role)
			case !tt.allowed && !(errors.As(err, &pe) && pe.Code == "42501"):
				t.Errorf("%s as %s: %v, want SQLSTATE 42501 (insufficient privilege)", tt.sql, role, err)
			}
		})
	}
}
