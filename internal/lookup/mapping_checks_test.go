package lookup_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/pgtest"
)

// membersSQL is a healthy lookup m on shop.members.
const membersSQL = `
CREATE SCHEMA shop;
CREATE TABLE shop.members (id bigint PRIMARY KEY, full_name text, phone text, meta json, n integer);
CREATE TABLE custinfo.members_copy (id bigint PRIMARY KEY, full_name text, phone text);
INSERT INTO custinfo.lookups (name, source) VALUES ('m', 'shop.members');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
VALUES ('m', 'callNum', 'phone', 'phone', true, 'nation', 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('m', 'userName', 'full_name', 1);
`

func membersDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.New(t)
	if _, err := pool.Exec(context.Background(), membersSQL); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return pool
}

// TestMappingChecksAtStatement writes each known mistake to the mapping
// tables: outside a transaction the statement fails; inside one the COMMIT
// does, with the same message. The same mistake written with the checks off
// is then reported by the load-time validation, so the two agree.
func TestMappingChecksAtStatement(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		stmt     string
		wantSQL  string // in the statement's error
		wantLoad string // in the lookup's load-time problems; "" when load does not check it
	}{
		{"result column typo",
			`UPDATE custinfo.lookup_results SET source_column = 'ful_name' WHERE lookup = 'm'`,
			`lookup "m": result "userName": column "ful_name" does not exist in shop.members; did you mean "full_name"?`,
			`result "userName": column "ful_name" does not exist in`},
		{"param column typo",
			`UPDATE custinfo.lookup_params SET source_column = 'phon' WHERE lookup = 'm'`,
			`lookup "m": param "callNum": column "phon" does not exist in shop.members; did you mean "phone"?`,
			`param "callNum": column "phon" does not exist in`},
		{"phone match on a number",
			`UPDATE custinfo.lookup_params SET source_column = 'n' WHERE lookup = 'm'`,
			`lookup "m": param "callNum": phone matching needs a text column; "n" is integer`,
			`param "callNum": phone matching needs a text column; "n" is integer`},
		{"ci match on a number",
			`INSERT INTO custinfo.lookup_params (lookup, field, source_column, match) VALUES ('m', 'num', 'n', 'ci')`,
			`lookup "m": param "num": ci matching needs a text column; "n" is integer`,
			`param "num": ci matching needs a text column; "n" is integer`},
		{"exact match on json",
			`INSERT INTO custinfo.lookup_params (lookup, field, source_column, match) VALUES ('m', 'meta', 'meta', 'exact')`,
			`lookup "m": param "meta": exact matching needs a type with equality; "meta" is json`,
			`does not compile`},
		{"region_field without phone",
			`UPDATE custinfo.lookup_params SET match = 'exact' WHERE lookup = 'm'`,
			`lookup "m": param "callNum": region_field is only used with match 'phone'`,
			`param "callNum": region_field is only used with match 'phone'`},
		{"source typo",
			`UPDATE custinfo.lookups SET source = 'shop.member' WHERE name = 'm'`,
			`lookup "m": source "shop.member" does not exist; did you mean "shop.members"?`,
			`source "shop.member" does not exist`},
		{"schema typo",
			`UPDATE custinfo.lookups SET source = 'shopp.members' WHERE name = 'm'`,
			`lookup "m": source "shopp.members" does not exist; there is no schema "shopp"; did you mean "shop.members"?`,
			`source "shopp.members" does not exist`},
		{"source with a statement appended",
			`UPDATE custinfo.lookups SET source = 'shop.members; DROP TABLE shop.members' WHERE name = 'm'`,
			`lookup "m": source "shop.members; DROP TABLE shop.members" does not exist`,
			`source "shop.members; DROP TABLE shop.members" does not exist`},
		{"new source lacks a column",
			`CREATE TABLE shop.people (id bigint, phone text); UPDATE custinfo.lookups SET source = 'shop.people' WHERE name = 'm'`,
			`lookup "m": result "userName": column "full_name" does not exist in shop.people`,
			`result "userName": column "full_name" does not exist in`},
		{"order_by typo",
			`UPDATE custinfo.lookups SET order_by = 'idd DESC' WHERE name = 'm'`,
			`lookup "m": order_by: column "idd" does not exist in shop.members; did you mean "id"?`,
			`order_by: column "idd" does not exist`},
		{"custinfo schema",
			`UPDATE custinfo.lookups SET source = 'custinfo.members_copy' WHERE name = 'm'`,
			`lookup "m": source "custinfo.members_copy" is in schema "custinfo", which lookups may not read`,
			"which holds custinfo's keys and configuration or PostgreSQL's catalogs"},
		{"pg_catalog",
			`UPDATE custinfo.lookups SET source = 'pg_authid' WHERE name = 'm'`,
			`lookup "m": source "pg_authid" is in schema "pg_catalog", which lookups may not read`,
			"which holds custinfo's keys and configuration or PostgreSQL's catalogs"},
		{"information_schema",
			`UPDATE custinfo.lookups SET source = 'information_schema.tables' WHERE name = 'm'`,
			`lookup "m": source "information_schema.tables" is in schema "information_schema", which lookups may not read`,
			"which holds custinfo's keys and configuration or PostgreSQL's catalogs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := membersDB(t)
			ctx := context.Background()

			_, err := pool.Exec(ctx, tt.stmt)
			checkMappingError(t, "outside a transaction", err, tt.wantSQL)

			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, tt.stmt); err != nil {
				t.Fatalf("inside a transaction the statement failed before COMMIT: %v", err)
			}
			checkMappingError(t, "at COMMIT", tx.Commit(ctx), tt.wantSQL)

			var tables int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'shop' AND tablename = 'members'`).Scan(&tables); err != nil || tables != 1 {
				t.Fatalf("shop.members after the refused statements: %d tables, %v", tables, err)
			}
			if tt.wantLoad == "" {
				return
			}
			if _, err := pool.Exec(ctx, "BEGIN; SET LOCAL custinfo.mapping_checks = off; "+tt.stmt+"; COMMIT"); err != nil {
				t.Fatalf("with the checks off: %v", err)
			}
			l, ok := compile(t, pool).Get("m")
			if !ok {
				t.Fatal("lookup m missing from the snapshot")
			}
			if p := strings.Join(l.Problems, "; "); !strings.Contains(p, tt.wantLoad) {
				t.Errorf("load-time Problems = %q, want one containing %q", p, tt.wantLoad)
			}
		})
	}
}

func checkMappingError(t *testing.T, where string, err error, want string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		t.Errorf("%s: err = %v, want the mapping check's error %q", where, err, want)
		return
	}
	if pgErr.Code != "23514" || pgErr.ConstraintName != "lookup_mapping_valid" {
		t.Errorf("%s: SQLSTATE %s constraint %q, want 23514 lookup_mapping_valid (%s)", where, pgErr.Code, pgErr.ConstraintName, pgErr.Message)
	}
	if !strings.Contains(pgErr.Message, want) {
		t.Errorf("%s: message %q, want it to contain %q", where, pgErr.Message, want)
	}
	if pgErr.Hint == "" {
		t.Errorf("%s: no HINT with %q", where, pgErr.Message)
	}
}

// TestMappingChecksAcceptSetups: a multi-statement setup in one transaction,
// with the source created after the mapping rows, a typo fixed before COMMIT,
// and a broken row deleted before COMMIT, all commit; the result loads
// without problems.
func TestMappingChecksAcceptSetups(t *testing.T) {
	t.Parallel()
	pool := membersDB(t)
	ctx := context.Background()
	for _, setup := range []string{
		`BEGIN;
INSERT INTO custinfo.lookups (name, source, order_by) VALUES ('later', 'shop."Later Table"', '"Customer No" DESC');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required) VALUES ('later', 'callNum', 'Phone', 'phone', true);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('later', 'userName', '"Full Name"', 1);
CREATE TABLE shop."Later Table" (phone text, "Full Name" text, "Customer No" text);
COMMIT`,
		`BEGIN;
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('m', 'id', 'idd', 2);
UPDATE custinfo.lookup_results SET source_column = 'id' WHERE lookup = 'm' AND field = 'id';
COMMIT`,
		`BEGIN;
INSERT INTO custinfo.lookups (name, source) VALUES ('gone', 'shop.nothing');
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('gone', 'x', 'y');
DELETE FROM custinfo.lookups WHERE name = 'gone';
COMMIT`,
		// Only changes to the source, the order or the columns are checked:
		// disabling a lookup whose column was dropped afterwards still works.
		`ALTER TABLE shop.members ADD COLUMN nick text`,
		`INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('m', 'nick', 'nick', 4)`,
		`ALTER TABLE shop.members DROP COLUMN nick`,
		`UPDATE custinfo.lookups SET enabled = false, description = 'nick dropped' WHERE name = 'm'`,
	} {
		if _, err := pool.Exec(ctx, setup); err != nil {
			t.Errorf("setup refused: %v\n%s", err, setup)
		}
	}
	snap := compile(t, pool)
	if l := get(t, snap, "later"); l.Broken() {
		t.Errorf("later: %v", l.Problems)
	}
	if _, ok := snap.Get("gone"); ok {
		t.Error("lookup gone was committed")
	}
	l, _ := snap.Get("m")
	if l == nil || l.Enabled || !strings.Contains(strings.Join(l.Problems, "; "), `column "nick" does not exist`) {
		t.Errorf("m after its column was dropped: %+v, want disabled with the dropped column as a problem", l)
	}
}

// TestMappingChecksReservedSchemas: the statement-time check refuses exactly
// the schemas the load-time check refuses (lookup.ReservedSchemas).
func TestMappingChecksReservedSchemas(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	names := append([]string{"public", "crm", "Custinfo", "custinfo_data", "pg_temp", "pg_toast_temp_1", "PG_CATALOG", ""}, lookup.ReservedSchemas...)
	for _, n := range names {
		var got bool
		if err := pool.QueryRow(context.Background(), `SELECT custinfo.sensitive_schema($1)`, n).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := lookup.ReservedSchema(n); got != want {
			t.Errorf("custinfo.sensitive_schema(%q) = %v, lookup.ReservedSchema = %v", n, got, want)
		}
	}
	var sqlList []string
	if err := pool.QueryRow(context.Background(), `SELECT array_agg(n ORDER BY n) FROM unnest($1::text[]) AS n WHERE custinfo.sensitive_schema(n)`, lookup.ReservedSchemas).Scan(&sqlList); err != nil {
		t.Fatal(err)
	}
	if len(sqlList) != len(lookup.ReservedSchemas) {
		t.Errorf("SQL refuses %v of lookup.ReservedSchemas %v", sqlList, lookup.ReservedSchemas)
	}
}
