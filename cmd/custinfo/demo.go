package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/signature"
	"github.com/custinfo/custinfo/internal/store"
)

// demoSchema creates the demo tables; generate_series fills them with
// synthetic customers whose phone numbers are stored in mixed spellings.
const demoSchema = `
CREATE SCHEMA IF NOT EXISTS demo;
CREATE TABLE IF NOT EXISTS demo.customers (
    id          bigint PRIMARY KEY,
    customer_no text NOT NULL UNIQUE,
    name        text NOT NULL,
    phone       text NOT NULL,
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS customers_phone_idx ON demo.customers (phone);
CREATE INDEX IF NOT EXISTS customers_email_lower_idx ON demo.customers (lower(email));
CREATE TABLE IF NOT EXISTS demo.accounts (
    customer_id bigint PRIMARY KEY REFERENCES demo.customers (id),
    tier        text NOT NULL,
    balance     numeric(12, 2) NOT NULL
);
CREATE OR REPLACE VIEW demo.customer_cards AS
    SELECT c.id, c.customer_no, c.name, c.phone, a.tier, a.balance
    FROM demo.customers c LEFT JOIN demo.accounts a ON a.customer_id = c.id;
`

// demoFill inserts customers $1+1 .. $2. The national number of customer i is
// 010 followed by 8 digits that are a bijection of i. Most numbers are
// spelled one of four ways by i mod 4; one in fifty of each of the residues
// listed in demoMessy (i mod 50) is spelled as people type numbers into a
// CRM, so the demo shows that every spelling is found. names are built from
// common Korean family and given names.
const demoFill = `
INSERT INTO demo.customers (id, customer_no, name, phone, email)
SELECT i,
       'C-' || lpad(i::text, greatest(7, length(i::text)), '0'),
       (ARRAY['김','이','박','최','정','강','조','윤','장','임','한','오','서','신','권','황','안','송','류','홍'])[1 + i % 20]
         || (ARRAY['민준','서연','도윤','하은','시우','지우','주원','서윤','하준','지민','예준','수아','지호','채원','준서','지유'])[1 + (i / 20) % 16],
       CASE
         WHEN i % 50 = 5  THEN '010 ' || a || ' ' || b
         WHEN i % 50 = 11 THEN '(010) ' || a || '-' || b
         WHEN i % 50 = 17 THEN '010–' || a || '–' || b
         WHEN i % 50 = 23 THEN translate('010-' || a || '-' || b, '0123456789', '０１２３４５６７８９')
         WHEN i % 50 = 29 THEN '+82 (0)10 ' || a || ' ' || b
         WHEN i % 50 = 31 THEN '0082-10-' || a || '-' || b
         WHEN i % 50 = 37 THEN 'tel:+82-10-' || a || '-' || b
         WHEN i % 50 = 41 THEN '010-' || a || '-' || b || ' (mobile)'
         WHEN i % 50 = 43 THEN '010-' || a || '-' || b || ' ext. 12'
         WHEN i % 50 = 47 THEN '82-10-' || a || '-' || b
         WHEN i % 50 = 49 THEN '010-' || a || '-' || b || '(본인)'
         WHEN i % 4 = 0 THEN '010-' || a || '-' || b
         WHEN i % 4 = 1 THEN '010' || a || b
         WHEN i % 4 = 2 THEN '+82 10-' || a || '-' || b
         ELSE '+8210' || a || b
       END,
       'customer' || i || '@example.com'
FROM (SELECT i, substr(n, 1, 4) AS a, substr(n, 5, 4) AS b
      FROM (SELECT i, lpad(((i * 7919 + 12345678) % 100000000)::text, 8, '0') AS n
            FROM generate_series($1::bigint + 1, $2::bigint) AS i) s) t
ON CONFLICT (id) DO NOTHING;
INSERT INTO demo.accounts (customer_id, tier, balance)
SELECT i, (ARRAY['basic','silver','gold','vip'])[1 + i % 4], (i % 1000) * 1000
FROM generate_series($1::bigint + 1, $2::bigint) AS i
ON CONFLICT (customer_id) DO NOTHING;
`

// demoMessy are the residues of i mod 50 whose customers demoFill stores
// in a messy spelling, with an example of each (the number 010-1234-5678).
var demoMessy = []struct {
	Residue int
	Example string
}{
	{5, "010 1234 5678"}, {11, "(010) 1234-5678"}, {17, "010–1234–5678"}, {23, "０１０-１２３４-５６７８"},
	{29, "+82 (0)10 1234 5678"}, {31, "0082-10-1234-5678"}, {37, "tel:+82-10-1234-5678"},
	{41, "010-1234-5678 (mobile)"}, {43, "010-1234-5678 ext. 12"}, {47, "82-10-1234-5678"}, {49, "010-1234-5678(본인)"},
}

// demoPhoneKeyIndex indexes the normalised form of every stored number,
// which phone lookups match when the index exists.
const demoPhoneKeyIndex = `CREATE INDEX IF NOT EXISTS customers_phone_key_idx ON demo.customers (custinfo.phone_key(phone))`

// demoLookups (re)defines the demo lookups.
const demoLookups = `
INSERT INTO custinfo.lookups (name, source, description)
VALUES ('customer', 'demo.customers', 'Demo: caller number to customer name and id'),
       ('customer_card', 'demo.customer_cards', 'Demo: a view joining customers and accounts')
ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, description = EXCLUDED.description, enabled = true;
DELETE FROM custinfo.lookup_params WHERE lookup IN ('customer', 'customer_card');
DELETE FROM custinfo.lookup_results WHERE lookup IN ('customer', 'customer_card');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
VALUES ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
       ('customer', 'nation', NULL, 'hint', false, NULL, NULL),
       ('customer_card', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
       ('customer_card', 'nation', NULL, 'hint', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
VALUES ('customer', 'userName', 'name', 1),
       ('customer', 'id', 'customer_no', 2),
       ('customer_card', 'userName', 'name', 1),
       ('customer_card', 'id', 'customer_no', 2),
       ('customer_card', 'tier', 'tier', 3);
`

func runDemo(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "demo", "[flags]")
	dbURL := databaseFlag(fs, e)
	wait := connectWaitFlag(fs, e)
	rows := fs.Int64("rows", 100000, "number of demo customers")
	key := fs.String("key", e.stringEnv("CUSTINFO_DEMO_KEY", ""), "demo key to install (env CUSTINFO_DEMO_KEY); default: keep the existing demo key or generate one")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *rows < 1 || *rows > 100_000_000 {
		return fmt.Errorf("demo: --rows must be between 1 and 100000000")
	}
	pool, err := connectWaiting(ctx, *wait, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, demoSchema); err != nil {
		return fmt.Errorf("demo: create tables: %w", err)
	}
	var have int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM demo.customers`).Scan(&have); err != nil {
		return fmt.Errorf("demo: count customers: %w", err)
	}
	for from := have; from < *rows; from += 500_000 {
		to := min(from+500_000, *rows)
		if err := execMulti(ctx, pool, demoFill, from, to); err != nil {
			return fmt.Errorf("demo: insert customers: %w", err)
		}
	}
	var haveKey bool
	if err := pool.QueryRow(ctx, `SELECT to_regprocedure('custinfo.phone_key(text)') IS NOT NULL`).Scan(&haveKey); err != nil {
		return fmt.Errorf("demo: look for custinfo.phone_key: %w", err)
	}
	if haveKey {
		if _, err := pool.Exec(ctx, demoPhoneKeyIndex); err != nil {
			return fmt.Errorf("demo: create the phone_key index: %w", err)
		}
	}
	if have < *rows {
		if _, err := pool.Exec(ctx, `ANALYZE demo.customers; ANALYZE demo.accounts`); err != nil {
			return fmt.Errorf("demo: analyze: %w", err)
		}
	}
	if _, err := pool.Exec(ctx, demoLookups); err != nil {
		return fmt.Errorf("demo: define lookups: %w", err)
	}

	secret, err := demoKey(ctx, pool, *key)
	if err != nil {
		return err
	}
	var sample [3]string
	for i, id := range []int64{1, 2, 3} {
		if err := pool.QueryRow(ctx, `SELECT phone FROM demo.customers WHERE id = $1`, id).Scan(&sample[i]); err != nil {
			return fmt.Errorf("demo: sample number: %w", err)
		}
	}
	fmt.Fprintf(e.stdout, "demo ready: %d customers in demo.customers; lookups customer and customer_card\n", max(have, *rows))
	fmt.Fprintf(e.stdout, "demo key: %s\n", secret)
	fmt.Fprintf(e.stdout, "sample numbers as stored: %s, %s, %s\n", sample[0], sample[1], sample[2])
	var messy []string
	if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(phone ORDER BY id), '{}') FROM demo.customers WHERE id IN (23, 29, 41)`).Scan(&messy); err != nil {
		return fmt.Errorf("demo: sample number: %w", err)
	}
	if len(messy) > 0 {
		fmt.Fprintf(e.stdout, "and a few as people type them: %s\n", strings.Join(messy, ", "))
	}
	fmt.Fprintf(e.stdout, "try: custinfo sign --url http://localhost:8080/v1/lookups/customer --key %s '{\"callNum\":\"%s\",\"nation\":\"82\"}'\n", secret, sample[0])
	return nil
}

// execMulti runs the ;-separated statements of sql with the same arguments
// in one transaction (the extended protocol takes one statement at a time).
func execMulti(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, stmt := range strings.Split(sql, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.Exec(ctx, stmt, args...); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

const demoKeyLabel = "demo"

// demoKey installs want as the demo key for every lookup, or keeps the
// existing active demo key, or generates one.
func demoKey(ctx context.Context, pool *pgxpool.Pool, want string) (string, error) {
	var existing string
	err := pool.QueryRow(ctx, `SELECT secret FROM custinfo.api_keys
		WHERE label = $1 AND lookup IS NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
		ORDER BY id DESC LIMIT 1`, demoKeyLabel).Scan(&existing)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("demo: read demo key: %w", err)
	}
	if want == "" && existing != "" {
		return existing, nil
	}
	if want != "" && want == existing {
		return existing, nil
	}
	if want == "" {
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("demo: generate key: %w", err)
		}
		want = hex.EncodeToString(b[:])
	}
	secret, err := cleanSecret(want)
	if err != nil {
		return "", fmt.Errorf("demo: --key: %w", err)
	}
	if err := signature.CheckKeyStrength(secret); err != nil {
		return "", fmt.Errorf("demo: --key: %w", err)
	}
	if _, err := store.New(pool).AddKey(ctx, store.NewKey{Secret: secret, Label: demoKeyLabel, Schemes: []string{"body", "uri_body"}}); err != nil {
		return "", fmt.Errorf("demo: add key: %w", err)
	}
	return secret, nil
}
