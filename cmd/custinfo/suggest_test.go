package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/pgtest"
)

// runSQLScript runs script as psql would: statement by statement, each
// ending with a line that ends in ';', comment lines skipped, on one
// session (so BEGIN ... COMMIT holds, and CREATE INDEX CONCURRENTLY runs
// outside a transaction).
func runSQLScript(t *testing.T, url, script string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stmt strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") || strings.TrimSpace(line) == "" {
			continue
		}
		stmt.WriteString(line + "\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			if _, err := conn.Exec(ctx, stmt.String(), pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", stmt.String(), err)
			}
			stmt.Reset()
		}
	}
	if strings.TrimSpace(stmt.String()) != "" {
		t.Fatalf("script ends in the middle of a statement: %s", stmt.String())
	}
}

// TestLookupsSuggest: on three differently shaped sources (the demo table,
// a view, a table whose names need quoting and that has no index yet), the
// suggested SQL runs and lookups check accepts the lookup it defines, with
// no index warning; the lookup then answers.
func TestLookupsSuggest(t *testing.T) {
	t.Parallel()
	url, pool := cliDemo(t, "bf7769e5321448de88838cdb")
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Member List" (
    "Member No" text PRIMARY KEY,
    "Full Name" text NOT NULL,
    "Mobile Phone" text,
    "E-mail" text,
    joined date
);
INSERT INTO "Sales"."Member List"
SELECT 'M-' || i, (ARRAY['Kim Minji','Lee Seoyeon','Park Jiho'])[1 + i % 3], '010-5555-' || lpad(i::text, 4, '0'), 'm' || i || '@example.com', date '2020-01-01' + i
FROM generate_series(1, 300) AS i;
ANALYZE "Sales"."Member List";
CREATE VIEW public.callers AS
    SELECT c.customer_no AS member_code, c.name AS customer_name, c.phone AS tel, a.tier
    FROM demo.customers c JOIN demo.accounts a ON a.customer_id = c.id;
`); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		source, name   string
		phone, who, id string // the columns the suggestion must name
		call, wantName string
		wantIndex      bool
	}{
		{"demo.customers", "sug_demo", "'phone'", "'name'", "'customer_no'", "", "", false},
		{"callers", "sug_view", "'tel'", "'customer_name'", "'member_code'", "", "", false},
		{`"Sales"."Member List"`, "sug_quoted", "'Mobile Phone'", "'Full Name'", "'Member No'", "+82 10-5555-0007", "Lee Seoyeon", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sql := cliMust(t, "", "lookups", "suggest", "--database-url", url, "--name", tt.name, tt.source)
			for _, want := range []string{"BEGIN;", "COMMIT;", "'callNum', " + tt.phone + ", 'phone'", "'userName', " + tt.who, "'id', " + tt.id} {
				if !strings.Contains(sql, want) {
					t.Errorf("suggestion lacks %q:\n%s", want, sql)
				}
			}
			if got := strings.Contains(sql, "CREATE INDEX CONCURRENTLY"); got != tt.wantIndex {
				t.Errorf("suggestion has a CREATE INDEX: %v, want %v:\n%s", got, tt.wantIndex, sql)
			}
			runSQLScript(t, url, sql)
			out := cliMust(t, "", "lookups", "check", "--database-url", url, tt.name)
			if !strings.Contains(out, "1 lookups ok") || strings.Contains(out, "warning: param") || strings.Contains(out, "warning: no index") {
				t.Errorf("lookups check after the suggestion:\n%s", out)
			}
			if tt.call != "" {
				out := cliMust(t, "", "lookups", "try", "--database-url", url, tt.name, "callNum="+tt.call)
				if !strings.Contains(out, `"userName":"`+tt.wantName+`"`) {
					t.Errorf("lookups try after the suggestion:\n%s", out)
				}
			}
		})
	}
	if _, _, err := cliRun(t, "", "lookups", "suggest", "--database-url", url, "custinfo.api_keys"); err == nil {
		t.Error("lookups suggest custinfo.api_keys succeeded")
	}
	if _, _, err := cliRun(t, "", "lookups", "suggest", "--database-url", url, "demo.accounts"); err == nil || !strings.Contains(err.Error(), "looks like a phone number") {
		t.Errorf("lookups suggest on a table without phone numbers: %v", err)
	}
}

// TestServeUnmigrated: serve on a database without the schema says what to
// run and nothing else: no log line about a configuration it never had.
func TestServeUnmigrated(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	var logs strings.Builder
	logger, err := newLogger(&logs, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	err = serve(context.Background(), serveFlags{databaseURL: url, addr: "127.0.0.1:0"}, logger, nil)
	if !errors.Is(err, errNotMigrated) || !strings.Contains(err.Error(), "run custinfo migrate up") {
		t.Errorf("serve on an unmigrated database = %v, want %v", err, errNotMigrated)
	}
	if logs.Len() != 0 {
		t.Errorf("serve on an unmigrated database logged:\n%s", logs.String())
	}
}
