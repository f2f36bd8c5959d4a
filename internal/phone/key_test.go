package phone

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// keyCorpus reads testdata/keys.txt: stored values and their keys.
func keyCorpus(t testing.TB) [][2]string {
	t.Helper()
	f, err := os.Open("testdata/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := sc.Text()
		if s == "" || s[0] == '#' {
			continue
		}
		in, rest, err := unquotePrefix(s)
		if err != nil {
			t.Fatalf("testdata/keys.txt:%d: %v", line, err)
		}
		want, err := strconv.Unquote(strings.TrimSpace(rest))
		if err != nil {
			t.Fatalf("testdata/keys.txt:%d: %v", line, err)
		}
		out = append(out, [2]string{in, want})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// unquotePrefix unquotes the Go string literal at the start of s and returns the rest.
func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

func TestKey(t *testing.T) {
	t.Parallel()
	corpus := keyCorpus(t)
	if len(corpus) < 40 {
		t.Fatalf("testdata/keys.txt has %d cases; want at least 40", len(corpus))
	}
	for _, c := range corpus {
		if got := Key(c[0]); got != c[1] {
			t.Errorf("Key(%q) = %q, want %q", c[0], got, c[1])
		}
	}
}

func TestKeyReadsOnly256Characters(t *testing.T) {
	t.Parallel()
	pad := strings.Repeat(" ", 250)
	if got := Key(pad + "010-1"); got != "0101" {
		t.Errorf("Key(250 spaces + %q) = %q, want %q", "010-1", got, "0101")
	}
	long := strings.Repeat("가", 255) + "1"
	if got := Key("1" + long); got != "1" {
		t.Errorf("Key(1 + 255 × 가 + 1) = %q, want %q", got, "1")
	}
	if got := Key(strings.Repeat("1", 300)); got != strings.Repeat("1", 256) {
		t.Errorf("Key(300 digits) has %d digits, want 256", len(got))
	}
}

var keyShape = regexp.MustCompile(`^\+?[0-9]+$`)

func FuzzKey(f *testing.F) {
	for _, c := range keyCorpus(f) {
		f.Add(c[0])
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := Key(s)
		if k == "" {
			return
		}
		if !keyShape.MatchString(k) {
			t.Fatalf("Key(%q) = %q: not '+' and digits", s, k)
		}
		if utf8.ValidString(s) && len(k) > 257 {
			t.Fatalf("Key(%q) = %q: longer than 256 digits and '+'", s, k)
		}
		if again := Key(k); again != k {
			t.Fatalf("Key(Key(%q)) = %q, want %q", s, again, k)
		}
		if strings.HasPrefix(k, "00") {
			t.Fatalf("Key(%q) = %q: a leading 00 is an international number", s, k)
		}
	})
}
