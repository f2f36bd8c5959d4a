package phone_test

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/phone"
)

// keyAlphabet is what the generated values of TestKeyMatchesSQL are made of:
// the characters each step of the key treats specially, and some it does not.
var keyAlphabet = []rune("0123456789000+++    ()()./'\"-tTeElL:;,#*xX" +
	"\t\r\n\u00a0\u3000\u200b\ufeff\u00ad" +
	"０１２３４５６７８９＋－（）．／\uff70ー–—―−‐‑" +
	"٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹①②⑴⒈¹²" +
	"가본인내선ｅｘｔ\u0301\u00e9ſK")

// TestKeyMatchesSQL checks that phone.Key and custinfo.phone_key agree on the
// corpus, on the fuzz seeds of FuzzKey, and on generated values.
func TestKeyMatchesSQL(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	var values []string
	corpus, err := readKeyCorpus("testdata/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range corpus {
		values = append(values, c, " "+c+" ", "tel:"+c, c+" (본인)", "+82 (0)"+c, "00"+c)
	}
	seeds, err := filepath.Glob("testdata/fuzz/FuzzKey/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range seeds {
		s, err := readFuzzString(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		values = append(values, s)
	}
	r := rand.New(rand.NewPCG(10, 3))
	for range 3000 {
		var b strings.Builder
		for n := r.IntN(24); n >= 0; n-- {
			b.WriteRune(keyAlphabet[r.IntN(len(keyAlphabet))])
		}
		values = append(values, b.String())
	}
	values = append(values, strings.Repeat("1", 300), strings.Repeat(" ", 255)+"12", strings.Repeat("가", 255)+"12")
	// PostgreSQL text holds valid UTF-8 without NUL.
	valid := values[:0]
	for _, v := range values {
		if utf8.ValidString(v) && !strings.ContainsRune(v, 0) {
			valid = append(valid, v)
		}
	}
	rows, err := pool.Query(context.Background(),
		`SELECT custinfo.phone_key(v) FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i`, valid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var got *string
		if err := rows.Scan(&got); err != nil {
			t.Fatal(err)
		}
		sql := ""
		if got != nil {
			sql = *got
			if sql == "" {
				t.Errorf("custinfo.phone_key(%q) = '', want NULL or a key", valid[i])
			}
		}
		if want := phone.Key(valid[i]); sql != want {
			t.Errorf("custinfo.phone_key(%q) = %q, phone.Key = %q", valid[i], sql, want)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(valid) {
		t.Fatalf("got %d keys for %d values", i, len(valid))
	}
}

// readKeyCorpus returns the inputs of testdata/keys.txt.
func readKeyCorpus(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s := sc.Text()
		if s == "" || s[0] == '#' {
			continue
		}
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, err
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// readFuzzString reads a seed file of a fuzz target with one string argument.
func readFuzzString(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, arg, _ := strings.Cut(string(b), "\n")
	arg = strings.TrimSpace(arg)
	if !strings.HasPrefix(arg, "string(") || !strings.HasSuffix(arg, ")") {
		return "", strconv.ErrSyntax
	}
	return strconv.Unquote(arg[len("string(") : len(arg)-1])
}
