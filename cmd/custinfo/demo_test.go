package main

import (
	"context"
	"strings"
	"testing"
	"unicode"
)

// shape replaces every digit of s, ASCII or full-width, by 'd'.
func shape(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsDigit(r) {
			return 'd'
		}
		return r
	}, s)
}

// TestDemoMessySpellings checks that the demo stores one customer in fifty
// of each residue of demoMessy in that spelling, and the others in one of
// the four plain spellings.
func TestDemoMessySpellings(t *testing.T) {
	t.Parallel()
	_, pool := cliDemo(t, "bf7769e5321448de88838cdb")
	messy := map[int]string{}
	for _, m := range demoMessy {
		messy[m.Residue] = shape(m.Example)
	}
	plain := map[string]bool{
		shape("010-1234-5678"): true, shape("01012345678"): true,
		shape("+82 10-1234-5678"): true, shape("+821012345678"): true,
	}
	rows, err := pool.Query(context.Background(), `SELECT id, phone FROM demo.customers WHERE id <= 200 ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int
		var phone string
		if err := rows.Scan(&id, &phone); err != nil {
			t.Fatal(err)
		}
		n++
		if want, ok := messy[id%50]; ok {
			if shape(phone) != want {
				t.Errorf("customer %d: phone %q, want the shape %q", id, phone, want)
			}
			continue
		}
		if !plain[shape(phone)] {
			t.Errorf("customer %d: phone %q, want one of the four plain spellings", id, phone)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 200 {
		t.Errorf("read %d customers, want 200", n)
	}
}

// TestDemoLookupsCheck runs lookups check on the demo: its messy spellings
// all read as KR numbers, the phone_key index the demo creates serves both
// lookups (one over a view), and without it check prints the statement that
// puts it back.
func TestDemoLookupsCheck(t *testing.T) {
	t.Parallel()
	url, pool := cliDemo(t, "bf7769e5321448de88838cdb")
	out := cliMust(t, "", "lookups", "check", "--database-url", url)
	for _, want := range []string{
		`data: param "callNum" (phone on "phone", default_region KR): 2000 values sampled`,
		"countries: KR 100.0%",
		`index: param "callNum": an index on custinfo.phone_key("phone") serves the match`,
		"2 lookups ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lookups check on the demo has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "warning") {
		t.Errorf("lookups check on the demo warns:\n%s", out)
	}
	if _, err := pool.Exec(context.Background(), `DROP INDEX demo.customers_phone_key_idx`); err != nil {
		t.Fatal(err)
	}
	out = cliMust(t, "", "lookups", "check", "--database-url", url)
	const stmt = `CREATE INDEX CONCURRENTLY "customers_phone_phone_key_idx" ON "demo"."customers" (custinfo.phone_key("phone"));`
	if n := strings.Count(out, `no index on custinfo.phone_key("phone")`); n != 2 || strings.Count(out, stmt) != 2 {
		t.Errorf("lookups check without the phone_key index: want a warning and %s for both lookups:\n%s", stmt, out)
	}
	if _, err := pool.Exec(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	out = cliMust(t, "", "lookups", "check", "--database-url", url)
	if strings.Count(out, "serves the match") != 2 {
		t.Errorf("lookups check after running the printed statement:\n%s", out)
	}
}
