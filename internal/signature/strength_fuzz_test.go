package signature_test

import (
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/signature"
)

// FuzzCheckKeyStrength checks the rule against a plain reading of it, and
// that an error is one of two fixed texts, never any part of the key.
func FuzzCheckKeyStrength(f *testing.F) {
	for _, s := range []string{"", "a", "abc123", "0123456789abcdef", "aaaaaaaaaaaaaaaa", "가나다라마바사아자차카타파하가나", "bf7769e5321448de88838cdb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := signature.CheckKeyStrength(key)
		n := utf8.RuneCountInString(key)
		distinct := map[rune]bool{}
		for _, r := range key {
			distinct[r] = true
		}
		var want string
		switch {
		case n < signature.MinKeyLength:
			want = fmt.Sprintf("the key is too weak: it has %d characters, a key needs at least %d", n, signature.MinKeyLength)
		case len(distinct) == 1:
			want = "the key is too weak: it is one character repeated"
		}
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Fatalf("CheckKeyStrength(%q) = %q, want %q", key, got, want)
		}
	})
}
