package lookup_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
)

// setup runs the fixture SQL in a fresh database and compiles its config.
func setup(t *testing.T, fixture string) (*pgxpool.Pool, *lookup.Snapshot) {
	t.Helper()
	pool := pgtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, fixture); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return pool, compile(t, pool)
}

func compile(t *testing.T, pool *pgxpool.Pool) *lookup.Snapshot {
	t.Helper()
	ctx := context.Background()
	cfg, err := store.New(pool).LoadConfig(ctx)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	snap, err := lookup.Compile(ctx, pool, cfg, time.Now())
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return snap
}

func get(t *testing.T, snap *lookup.Snapshot, name string) *lookup.Lookup {
	t.Helper()
	l, ok := snap.Get(name)
	if !ok {
		t.Fatalf("lookup %q not in snapshot (have %v)", name, snap.Names())
	}
	if l.Broken() {
		t.Fatalf("lookup %q broken: %v", name, l.Problems)
	}
	return l
}

// fields renders a result as name=value pairs for comparison.
func fields(r lookup.Result) map[string]string {
	m := map[string]string{}
	for _, f := range r.Fields {
		m[f.Name] = f.Value
	}
	return m
}

const matchFixture = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE people (
    id      integer PRIMARY KEY,
    code    text NOT NULL,
    email   text NOT NULL,
    email_c citext NOT NULL,
    phone   varchar(40),
    name    text
);
INSERT INTO people VALUES
    (1, 'A-1', 'Kim@Example.com', 'Kim@Example.com', '010-1234-5678', '김민준'),
    (2, 'A-2', 'lee@example.com', 'lee@example.com', '+82 2-312-3456', '이서연'),
    (3, 'A-3', 'park@example.com', 'park@example.com', '+1 415-555-2671', 'Park'),
    (4, 'A-4', 'gb@example.com', 'gb@example.com', '020 7946 0018', 'Smith'),
    (5, 'A-5', 'x@example.com', 'x@example.com', '+81 80-1234-5678', NULL);
INSERT INTO custinfo.lookups (name, source) VALUES
    ('by_code', 'people'), ('by_id', 'people'), ('by_email', 'people'), ('by_email_c', 'people'),
    ('by_phone', 'public.people'), ('by_phone_us', 'people'), ('by_phone_gb', 'people'), ('by_phone_jp', 'people');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('by_code', 'code', 'code', 'exact', true, NULL, NULL),
    ('by_code', 'note', NULL, 'hint', false, NULL, NULL),
    ('by_id', 'id', 'id', 'exact', true, NULL, NULL),
    ('by_email', 'email', 'email', 'ci', true, NULL, NULL),
    ('by_email_c', 'email', 'email_c', 'ci', true, NULL, NULL),
    ('by_phone', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('by_phone_us', 'callNum', 'phone', 'phone', true, 'nation', 'US'),
    ('by_phone_gb', 'callNum', 'phone', 'phone', true, NULL, 'GB'),
    ('by_phone_jp', 'callNum', 'phone', 'phone', true, 'nation', NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
SELECT l, 'userName', 'name', 1 FROM unnest(ARRAY['by_code','by_id','by_email','by_email_c','by_phone','by_phone_us','by_phone_gb','by_phone_jp']) l
UNION ALL
SELECT l, 'id', 'code', 2 FROM unnest(ARRAY['by_code','by_id','by_email','by_email_c','by_phone','by_phone_us','by_phone_gb','by_phone_jp']) l;
`

func TestMatchModes(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, matchFixture)
	tests := []struct {
		name   string
		lookup string
		values map[string]string
		want   map[string]string // nil: no match
	}{
		{"exact text", "by_code", map[string]string{"code": "A-2"}, map[string]string{"userName": "이서연", "id": "A-2"}},
		{"exact is case-sensitive", "by_code", map[string]string{"code": "a-2"}, nil},
		{"exact with hint field", "by_code", map[string]string{"code": "A-1", "note": "anything"}, map[string]string{"userName": "김민준", "id": "A-1"}},
		{"exact integer column", "by_id", map[string]string{"id": "3"}, map[string]string{"userName": "Park", "id": "A-3"}},
		{"NULL result is empty", "by_id", map[string]string{"id": "5"}, map[string]string{"userName": "", "id": "A-5"}},
		{"ci lower()", "by_email", map[string]string{"email": "KIM@example.COM"}, map[string]string{"userName": "김민준", "id": "A-1"}},
		{"ci citext", "by_email_c", map[string]string{"email": "LEE@EXAMPLE.COM"}, map[string]string{"userName": "이서연", "id": "A-2"}},
		{"ci no match", "by_email", map[string]string{"email": "nobody@example.com"}, nil},
		{"phone KR mobile national", "by_phone", map[string]string{"callNum": "01012345678", "nation": "82"}, map[string]string{"userName": "김민준", "id": "A-1"}},
		{"phone KR landline", "by_phone", map[string]string{"callNum": "02-312-3456", "nation": "KR"}, map[string]string{"userName": "이서연", "id": "A-2"}},
		{"phone US E.164 with KR default", "by_phone", map[string]string{"callNum": "+14155552671"}, map[string]string{"userName": "Park", "id": "A-3"}},
		{"phone US national", "by_phone_us", map[string]string{"callNum": "(415) 555-2671"}, map[string]string{"userName": "Park", "id": "A-3"}},
		{"phone US region from request", "by_phone", map[string]string{"callNum": "415.555.2671", "nation": "+1"}, map[string]string{"userName": "Park", "id": "A-3"}},
		{"phone GB default region", "by_phone_gb", map[string]string{"callNum": "+44 20 7946 0018"}, map[string]string{"userName": "Smith", "id": "A-4"}},
		{"phone GB national", "by_phone_gb", map[string]string{"callNum": "02079460018"}, map[string]string{"userName": "Smith", "id": "A-4"}},
		{"phone JP region iso lower", "by_phone_jp", map[string]string{"callNum": "080-1234-5678", "nation": "jp"}, map[string]string{"userName": "", "id": "A-5"}},
		{"phone miss", "by_phone", map[string]string{"callNum": "010-9999-9999"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := get(t, snap, tt.lookup)
			res, err := l.Run(context.Background(), pool, tt.values)
			if tt.want == nil {
				if !errors.Is(err, lookup.ErrNoMatch) {
					t.Fatalf("Run(%v) = %v, %v; want ErrNoMatch", tt.values, fields(res), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run(%v) error: %v", tt.values, err)
			}
			if diff := cmp.Diff(tt.want, fields(res)); diff != "" {
				t.Errorf("Run(%v) fields (-want +got):\n%s", tt.values, diff)
			}
			if got := res.Fields[0].Name; got != "userName" {
				t.Errorf("first field = %q, want userName (position order)", got)
			}
		})
	}
}

func TestInputErrors(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, matchFixture)
	tests := []struct {
		name      string
		lookup    string
		values    map[string]string
		wantField string
	}{
		{"required missing", "by_code", map[string]string{}, "code"},
		{"required blank", "by_code", map[string]string{"code": "  "}, "code"},
		{"unparseable phone", "by_phone", map[string]string{"callNum": "hello"}, "callNum"},
		{"too short phone", "by_phone", map[string]string{"callNum": "12"}, "callNum"},
		{"unknown region", "by_phone", map[string]string{"callNum": "010-1234-5678", "nation": "XX"}, "nation"},
		{"no region and no plus", "by_phone_jp", map[string]string{"callNum": "080-1234-5678"}, "callNum"},
		{"integer column, not a number", "by_id", map[string]string{"id": "abc"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := get(t, snap, tt.lookup)
			_, err := l.Run(context.Background(), pool, tt.values)
			var ie *lookup.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Run(%v) = %v, want *InputError", tt.values, err)
			}
			if ie.Field != tt.wantField {
				t.Errorf("InputError.Field = %q, want %q (%v)", ie.Field, tt.wantField, ie)
			}
			if strings.Contains(ie.Error(), "010-1234-5678") || strings.Contains(ie.Error(), "080-1234-5678") {
				t.Errorf("InputError %q echoes the full number", ie)
			}
		})
	}
}

// TestPhoneMatrix stores one number per spelling and asks for it in every
// spelling, with the region given every way.
func TestPhoneMatrix(t *testing.T) {
	t.Parallel()
	stored := []string{"+821098765432", "821098765432", "01098765432", "010-9876-5432", "+82 10-9876-5432", "+82 10 9876 5432", "010 9876 5432"}
	var b strings.Builder
	b.WriteString(`CREATE TABLE c (id int PRIMARY KEY, phone text); CREATE INDEX ON c (custinfo.phone_key(phone));`)
	for i, s := range stored {
		b.WriteString("INSERT INTO c VALUES (" + string(rune('1'+i)) + ", '" + s + "');")
	}
	b.WriteString(`
INSERT INTO custinfo.lookups (name, source) VALUES ('p', 'c'), ('pd', 'c'), ('pn', 'c');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
  ('p', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
  ('pd', 'callNum', 'phone', 'phone', true, NULL, 'KR'),
  ('pn', 'callNum', 'phone', 'phone', true, 'nation', NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('p', 'id', 'id'), ('pd', 'id', 'id'), ('pn', 'id', 'id');`)
	pool, snap := setup(t, b.String())
	asked := []string{"+82 10-9876-5432", "01098765432", "010-9876-5432", "821098765432", "+821098765432", " 010.9876.5432 ", "(010) 9876 5432"}
	regions := []string{"KR", "kr", "82", "+82"}
	for _, q := range asked {
		for _, r := range regions {
			res, err := get(t, snap, "p").Run(context.Background(), pool, map[string]string{"callNum": q, "nation": r})
			if err != nil {
				t.Errorf("Run(callNum=%q, nation=%q): %v", q, r, err)
				continue
			}
			if res.Matches != int64(len(stored)) {
				t.Errorf("Run(callNum=%q, nation=%q) matches = %d, want %d (every stored spelling)", q, r, res.Matches, len(stored))
			}
			if got := fields(res)["id"]; got != "1" {
				t.Errorf("Run(callNum=%q, nation=%q) id = %q, want 1 (lowest primary key)", q, r, got)
			}
		}
		res, err := get(t, snap, "pd").Run(context.Background(), pool, map[string]string{"callNum": q})
		if err != nil || res.Matches != int64(len(stored)) {
			t.Errorf("default region: Run(callNum=%q) = %d matches, %v; want %d", q, res.Matches, err, len(stored))
		}
		// Without a default region a stored value without country code
		// belongs to no country: only the three with +82 match.
		res, err = get(t, snap, "pn").Run(context.Background(), pool, map[string]string{"callNum": q, "nation": "KR"})
		if err != nil || res.Matches != 3 {
			t.Errorf("no default region: Run(callNum=%q) = %d matches, %v; want 3", q, res.Matches, err)
		}
	}
}

func TestQuotedIdentifiersAndView(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE SCHEMA "CRM Data";
CREATE TABLE "CRM Data"."Customer ""Main"" Table" ("Phone Number" text, "Full Name" text, "x""; DROP TABLE t; --" text, id int PRIMARY KEY);
INSERT INTO "CRM Data"."Customer ""Main"" Table" VALUES ('010-1111-2222', '홍길동', 'evil', 7);
CREATE TABLE accounts (customer_id int, tier text);
INSERT INTO accounts VALUES (7, 'gold');
CREATE VIEW "CRM Data".cards AS
  SELECT c.id, c."Phone Number" AS phone, c."Full Name" AS name, a.tier
  FROM "CRM Data"."Customer ""Main"" Table" c JOIN accounts a ON a.customer_id = c.id;
CREATE TABLE t (x int);
INSERT INTO custinfo.lookups (name, source) VALUES
  ('quoted', '"CRM Data"."Customer ""Main"" Table"'),
  ('exactname', 'CRM Data.Customer "Main" Table'),
  ('view', '"CRM Data".cards');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region) VALUES
  ('quoted', 'callNum', 'Phone Number', 'phone', true, 'KR'),
  ('exactname', 'callNum', '"Phone Number"', 'exact', true, NULL),
  ('view', 'callNum', 'phone', 'phone', true, 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
  ('quoted', 'userName', 'Full Name', 1), ('quoted', 'evil', 'x"; DROP TABLE t; --', 2),
  ('exactname', 'userName', 'Full Name', 1),
  ('view', 'userName', 'name', 1), ('view', 'tier', 'tier', 2);
`)
	ctx := context.Background()
	for _, tt := range []struct {
		lookup string
		values map[string]string
		want   map[string]string
	}{
		{"quoted", map[string]string{"callNum": "+82 10 1111 2222"}, map[string]string{"userName": "홍길동", "evil": "evil"}},
		{"exactname", map[string]string{"callNum": "010-1111-2222"}, map[string]string{"userName": "홍길동"}},
		{"view", map[string]string{"callNum": "01011112222"}, map[string]string{"userName": "홍길동", "tier": "gold"}},
	} {
		res, err := get(t, snap, tt.lookup).Run(ctx, pool, tt.values)
		if err != nil {
			t.Fatalf("%s: Run: %v", tt.lookup, err)
		}
		if diff := cmp.Diff(tt.want, fields(res)); diff != "" {
			t.Errorf("%s: fields (-want +got):\n%s", tt.lookup, diff)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatalf("table t must still exist: %v", err)
	}
}

func TestResultTypes(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
SET TIME ZONE 'UTC';
CREATE TABLE typed (k text PRIMARY KEY, i integer, n numeric(10,2), u uuid, b boolean, d date, ts timestamptz, j jsonb, nul text);
INSERT INTO typed VALUES ('k', 42, 12.50, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, '2026-11-30',
  '2026-11-30 01:02:03+00', '{"a": [1, "두"]}', NULL);
INSERT INTO custinfo.lookups (name, source) VALUES ('typed', 'typed');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, required) VALUES ('typed', 'k', 'k', true);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
  ('typed', 'i', 'i', 1), ('typed', 'n', 'n', 2), ('typed', 'u', 'u', 3), ('typed', 'b', 'b', 4),
  ('typed', 'd', 'd', 5), ('typed', 'ts', 'ts', 6), ('typed', 'j', 'j', 7), ('typed', 'nul', 'nul', 8);
`)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET TIME ZONE 'UTC'"); err != nil {
		t.Fatal(err)
	}
	res, err := get(t, snap, "typed").Run(ctx, conn, map[string]string{"k": "k"})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[string]string{
		"i": "42", "n": "12.50", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "b": "true",
		"d": "2026-11-30", "ts": "2026-11-30 01:02:03+00", "j": `{"a": [1, "두"]}`, "nul": "",
	}
	if diff := cmp.Diff(want, fields(res)); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
}

func TestValuesTravelAsParameters(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, matchFixture)
	ctx := context.Background()
	for _, v := range []string{"' OR 1=1 --", "A-1'; DROP TABLE people; --", `A-1" OR "1"="1`, "A-1\x00", "%", "_-1", `\'`} {
		_, err := get(t, snap, "by_code").Run(ctx, pool, map[string]string{"code": v})
		var ie *lookup.InputError
		if !errors.Is(err, lookup.ErrNoMatch) && !errors.As(err, &ie) {
			t.Errorf("Run(code=%q) = %v, want no match or an input error", v, err)
		}
		_, err = get(t, snap, "by_email").Run(ctx, pool, map[string]string{"email": v})
		if !errors.Is(err, lookup.ErrNoMatch) && !errors.As(err, &ie) {
			t.Errorf("Run(email=%q) = %v, want no match or an input error", v, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM people`).Scan(&n); err != nil || n != 5 {
		t.Errorf("people has %d rows (%v), want 5 untouched", n, err)
	}
}

func TestSeveralMatches(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE fam (id int PRIMARY KEY, phone text, name text, since date);
INSERT INTO fam VALUES (3, '010-5555-0000', 'C', '2020-01-01'), (1, '01055550000', 'A', '2022-01-01'),
                       (2, '+82 10-5555-0000', 'B', NULL);
CREATE VIEW famv AS SELECT phone, name FROM fam;
INSERT INTO custinfo.lookups (name, source, order_by) VALUES
  ('asc', 'fam', 'since'), ('desc', 'fam', 'since DESC'), ('pk', 'fam', NULL), ('view', 'famv', NULL);
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region)
SELECT l, 'callNum', 'phone', 'phone', true, 'KR' FROM unnest(ARRAY['asc','desc','pk','view']) l;
INSERT INTO custinfo.lookup_results (lookup, field, source_column)
SELECT l, 'userName', 'name' FROM unnest(ARRAY['asc','desc','pk','view']) l;
`)
	for _, tt := range []struct{ lookup, want string }{
		{"asc", "C"},  // lowest since; NULLs last
		{"desc", "A"}, // highest since; NULLs last
		{"pk", "A"},   // no order_by: primary key
		{"view", "A"}, // no key: result columns
	} {
		for i := 0; i < 3; i++ {
			res, err := get(t, snap, tt.lookup).Run(context.Background(), pool, map[string]string{"callNum": "010-5555-0000"})
			if err != nil {
				t.Fatalf("%s: %v", tt.lookup, err)
			}
			if got := fields(res)["userName"]; got != tt.want || res.Matches != 3 {
				t.Errorf("%s: userName = %q (matches %d), want %q (3)", tt.lookup, got, res.Matches, tt.want)
			}
		}
	}
}

// TestBindNormalized checks Prepared.Normalized: the E.164 form of the query
// field when the lookup reads it as a phone number, in the request's region.
func TestBindNormalized(t *testing.T) {
	t.Parallel()
	_, snap := setup(t, matchFixture)
	tests := []struct {
		lookup string
		values map[string]string
		want   string
	}{
		{lookup: "by_phone", values: map[string]string{"callNum": "010-1234-5678"}, want: "+821012345678"},
		{lookup: "by_phone", values: map[string]string{"callNum": "(415) 555-2671", "nation": "1"}, want: "+14155552671"},
		{lookup: "by_phone", values: map[string]string{"callNum": "+44 20 7946 0018", "nation": "82"}, want: "+442079460018"},
		{lookup: "by_phone_gb", values: map[string]string{"callNum": "020 7946 0018"}, want: "+442079460018"},
		{lookup: "by_code", values: map[string]string{"code": "A-1", "note": "010-1234-5678"}, want: ""},
		{lookup: "by_email", values: map[string]string{"email": "kim@example.com"}, want: ""},
	}
	for _, tt := range tests {
		p, err := get(t, snap, tt.lookup).Bind(tt.values)
		if err != nil {
			t.Errorf("%s.Bind(%v): %v", tt.lookup, tt.values, err)
			continue
		}
		if p.Normalized != tt.want {
			t.Errorf("%s.Bind(%v).Normalized = %q, want %q", tt.lookup, tt.values, p.Normalized, tt.want)
		}
	}
}

func TestOptionalParamsLeftOut(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE o (id int PRIMARY KEY, phone text, email text);
INSERT INTO o VALUES (1, '010-1234-0000', 'a@x'), (2, '010-1234-0000', 'b@x');
INSERT INTO custinfo.lookups (name, source) VALUES ('o', 'o');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region) VALUES
  ('o', 'callNum', 'phone', 'phone', true, 'KR'), ('o', 'email', 'email', 'exact', false, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('o', 'id', 'id');
`)
	l := get(t, snap, "o")
	without, err := l.Bind(map[string]string{"callNum": "01012340000"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(without.SQL, `"email"`) || strings.Contains(without.SQL, "IS NULL") {
		t.Errorf("SQL without email = %s; want no email condition", without.SQL)
	}
	with, err := l.Bind(map[string]string{"callNum": "01012340000", "email": "b@x"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(with.SQL, `"email" = `) {
		t.Errorf("SQL with email = %s; want an email condition", with.SQL)
	}
	res, err := l.Exec(context.Background(), pool, with)
	if err != nil || fields(res)["id"] != "2" {
		t.Errorf("with email: %v, %v; want id 2", fields(res), err)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	// Load-time validation: the statement-time checks (tested in
	// mapping_checks_test.go) are switched off so the broken rows get in.
	_, snap := setup(t, `
BEGIN;
SET LOCAL custinfo.mapping_checks = off;
CREATE TABLE v (id int PRIMARY KEY, phone text, num int, j json, name text);
INSERT INTO custinfo.lookups (name, source, order_by) VALUES
  ('good', 'v', NULL), ('nosource', 'missing_table', NULL), ('nocolumn', 'v', NULL), ('phoneint', 'v', NULL),
  ('dupresult', 'v', NULL), ('norequired', 'v', NULL), ('nomatched', 'v', NULL), ('badorder', 'v', 'nope DESC'),
  ('jsoneq', 'v', NULL), ('badregion', 'v', NULL), ('injection', 'v; DROP TABLE v', NULL);
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region) VALUES
  ('good', 'callNum', 'phone', 'phone', true, 'KR'),
  ('nosource', 'callNum', 'phone', 'exact', true, NULL),
  ('nocolumn', 'callNum', 'telephone', 'exact', true, NULL),
  ('phoneint', 'callNum', 'num', 'phone', true, 'KR'),
  ('dupresult', 'callNum', 'phone', 'exact', true, NULL),
  ('norequired', 'callNum', 'phone', 'exact', false, NULL),
  ('nomatched', 'nation', NULL, 'hint', true, NULL),
  ('badorder', 'callNum', 'phone', 'exact', true, NULL),
  ('jsoneq', 'callNum', 'j', 'exact', true, NULL),
  ('badregion', 'callNum', 'phone', 'phone', true, 'Narnia'),
  ('injection', 'callNum', 'phone', 'exact', true, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column)
SELECT l, 'userName', 'name' FROM unnest(ARRAY['good','nosource','nocolumn','phoneint','dupresult','norequired','nomatched','badorder','jsoneq','badregion','injection']) l;
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('dupresult', 'USERNAME', 'id');
COMMIT;
`)
	want := map[string]string{
		"nosource":   `source "missing_table" does not exist`,
		"nocolumn":   `column "telephone" does not exist`,
		"phoneint":   `phone matching needs a text column`,
		"dupresult":  `is defined twice`,
		"norequired": `no param is required`,
		"nomatched":  `no param is matched`,
		"badorder":   `order_by: column "nope" does not exist`,
		"jsoneq":     `does not compile`,
		"badregion":  `default_region "Narnia"`,
		"injection":  `does not exist`,
	}
	if l := get(t, snap, "good"); l.Broken() {
		t.Errorf("good is broken: %v", l.Problems)
	}
	for name, substr := range want {
		l, ok := snap.Get(name)
		if !ok {
			t.Errorf("lookup %q missing from snapshot", name)
			continue
		}
		if !strings.Contains(strings.Join(l.Problems, "; "), substr) {
			t.Errorf("%s: Problems = %q, want one containing %q", name, l.Problems, substr)
		}
		_, err := l.Run(context.Background(), nil, map[string]string{"callNum": "1"})
		var be *lookup.BrokenError
		if !errors.As(err, &be) || !strings.Contains(be.Error(), name) {
			t.Errorf("%s: Run = %v, want *BrokenError naming the lookup", name, err)
		}
	}
}

// reservedSchemasFixture maps lookups onto custinfo's own keys and the
// system catalogs.
const reservedSchemasFixture = `
INSERT INTO custinfo.lookups (name, source) VALUES
  ('keys', 'custinfo.api_keys'), ('keys_quoted', '"custinfo"."api_keys"'),
  ('catalog', 'pg_catalog.pg_authid'), ('unqualified_catalog', 'pg_roles'),
  ('infoschema', 'information_schema.tables');
INSERT INTO custinfo.api_keys (lookup, secret, label) VALUES ('keys', 'reserved-schema-key-0123', 'k');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required) VALUES
  ('keys', 'label', 'label', 'exact', true),
  ('keys_quoted', 'label', 'label', 'exact', true),
  ('catalog', 'name', 'rolname', 'exact', true),
  ('unqualified_catalog', 'name', 'rolname', 'exact', true),
  ('infoschema', 'name', 'table_name', 'exact', true);
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES
  ('keys', 'secret', 'secret'), ('keys_quoted', 'secret', 'secret'),
  ('catalog', 'pw', 'rolpassword'), ('unqualified_catalog', 'pw', 'rolpassword'),
  ('infoschema', 'name', 'table_name');
`

func TestReservedSchemasRefused(t *testing.T) {
	t.Parallel()
	// At the statement: the mapping checks refuse the rows, naming the
	// schema and never echoing the key.
	refused := pgtest.New(t)
	_, err := refused.Exec(context.Background(), "BEGIN;"+reservedSchemasFixture+"COMMIT;")
	if err == nil || !strings.Contains(err.Error(), "which lookups may not read") {
		t.Errorf("fixture with mapping checks on: err = %v, want the reserved schema refused", err)
	}
	if err != nil && strings.Contains(err.Error(), "reserved-schema-key") {
		t.Errorf("the refusal echoes the key: %v", err)
	}
	// At load, for rows that got in while the checks were off (or before
	// they existed): each such lookup is broken and reads nothing.
	pool, snap := setup(t, "BEGIN; SET LOCAL custinfo.mapping_checks = off;"+reservedSchemasFixture+"COMMIT;")
	for name, values := range map[string]map[string]string{
		"keys":                {"label": "k"},
		"keys_quoted":         {"label": "k"},
		"catalog":             {"name": "postgres"},
		"unqualified_catalog": {"name": "postgres"},
		"infoschema":          {"name": "api_keys"},
	} {
		l, ok := snap.Get(name)
		if !ok {
			t.Fatalf("lookup %q missing from snapshot", name)
		}
		if got := strings.Join(l.Problems, "; "); !strings.Contains(got, "may not read from schemas custinfo, pg_catalog, information_schema, pg_toast") {
			t.Errorf("%s: Problems = %q, want the reserved schemas named", name, l.Problems)
		}
		res, err := l.Run(context.Background(), pool, values)
		var be *lookup.BrokenError
		if !errors.As(err, &be) {
			t.Errorf("%s: Run = %v, %v, want *BrokenError", name, res, err)
		}
		if strings.Contains(fmt.Sprint(res, err), "reserved-schema-key") {
			t.Errorf("%s: Run revealed the key: %v %v", name, res, err)
		}
	}
	for _, schema := range []string{"custinfo", "pg_catalog", "information_schema", "pg_toast"} {
		if !lookup.ReservedSchema(schema) {
			t.Errorf("ReservedSchema(%q) = false, want true", schema)
		}
	}
	for _, schema := range []string{"public", "crm", "Custinfo", "custinfo_data", "pg_temp"} {
		if lookup.ReservedSchema(schema) {
			t.Errorf("ReservedSchema(%q) = true, want false", schema)
		}
	}
}

func TestIndexUsed(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE big (id int PRIMARY KEY, code text, phone text, email text, plain text);
INSERT INTO big SELECT i, 'C' || i, '010' || lpad(i::text, 8, '0'), 'u' || i || '@x', 'p' || i FROM generate_series(1, 100000) i;
CREATE INDEX ON big (code); CREATE INDEX ON big (custinfo.phone_key(phone)); CREATE INDEX ON big (lower(email));
ANALYZE big;
INSERT INTO custinfo.lookups (name, source) VALUES ('exact', 'big'), ('phone', 'big'), ('ci', 'big'), ('noindex', 'big');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region) VALUES
  ('exact', 'code', 'code', 'exact', true, NULL), ('phone', 'callNum', 'phone', 'phone', true, 'KR'),
  ('ci', 'email', 'email', 'ci', true, NULL), ('noindex', 'p', 'plain', 'exact', true, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column)
SELECT l, 'id', 'id' FROM unnest(ARRAY['exact','phone','ci','noindex']) l;
`)
	ctx := context.Background()
	for _, tt := range []struct {
		lookup string
		values map[string]string
	}{
		{"exact", map[string]string{"code": "C777"}},
		{"phone", map[string]string{"callNum": "010-0000-0777"}},
		{"ci", map[string]string{"email": "U777@X"}},
	} {
		l := get(t, snap, tt.lookup)
		prep, err := l.Bind(tt.values)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := lookup.Explain(ctx, pool, prep, false)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "Index Scan") && !strings.Contains(plan, "Bitmap Index Scan") {
			t.Errorf("%s: plan uses no index:\n%s", tt.lookup, plan)
		}
		if strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: plan scans the table:\n%s", tt.lookup, plan)
		}
		res, err := l.Exec(ctx, pool, prep)
		if err != nil || fields(res)["id"] != "777" {
			t.Errorf("%s: Exec = %v, %v; want id 777", tt.lookup, fields(res), err)
		}
		if w, err := l.IndexWarnings(ctx, pool); err != nil || len(w) != 0 {
			t.Errorf("%s: IndexWarnings = %q, %v; want none", tt.lookup, w, err)
		}
	}
	w, err := get(t, snap, "noindex").IndexWarnings(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.Contains(w[0], `CREATE INDEX ON "public"."big" ("plain")`) {
		t.Errorf("noindex: IndexWarnings = %q, want one suggesting an index on plain", w)
	}
}

// TestPlanUsesMatchIndexNotOrder guards against a plan that reads the whole
// primary-key index in order, filtering on the match, because of ORDER BY
// ... LIMIT 1: every match must be counted, so the matched column's index
// must drive the scan.
func TestPlanUsesMatchIndexNotOrder(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE ord (id int PRIMARY KEY, tel text, name text, since date);
INSERT INTO ord SELECT i, '010' || lpad((i % 400)::text, 8, '0'), 'n' || i, date '2000-01-01' + (i % 1000) FROM generate_series(1, 20000) i;
CREATE INDEX ON ord (tel); CREATE INDEX ON ord (custinfo.phone_key(tel)); CREATE INDEX ON ord (since);
ANALYZE ord;
INSERT INTO custinfo.lookups (name, source, order_by) VALUES ('pk', 'ord', NULL), ('since', 'ord', 'since DESC');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region)
SELECT l, 'callNum', 'tel', m, true, 'KR' FROM (VALUES ('pk', 'phone'), ('since', 'exact')) v (l, m);
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('pk', 'userName', 'name'), ('since', 'userName', 'name');
`)
	ctx := context.Background()
	for _, name := range []string{"pk", "since"} {
		prep, err := get(t, snap, name).Bind(map[string]string{"callNum": "01000000042"})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := lookup.Explain(ctx, pool, prep, false)
		if err != nil {
			t.Fatal(err)
		}
		cond := map[string]string{"pk": "Index Cond: (custinfo.phone_key(tel) =", "since": "Index Cond: (tel ="}[name]
		if !strings.Contains(plan, cond) {
			t.Errorf("%s: the plan does not find the matches through the tel index:\n%s", name, plan)
		}
		res, err := get(t, snap, name).Exec(ctx, pool, prep)
		if err != nil || res.Matches != 50 {
			t.Errorf("%s: Exec = %v matches, %v; want 50", name, res.Matches, err)
		}
	}
}
