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
