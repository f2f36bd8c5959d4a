package signature

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MinKeyLength is the fewest characters a key may have. The helpdesk's keys
// have 24; a short key can be guessed offline from one signed request.
const MinKeyLength = 16

// ErrWeakKey reports a key that CheckKeyStrength refuses.
var ErrWeakKey = errors.New("the key is too weak")

// CheckKeyStrength reports whether secret is strong enough to be stored: at
// least MinKeyLength characters and not one character repeated. The table
// custinfo.api_keys applies the same rule. The error never contains the key.
func CheckKeyStrength(secret string) error {
	n := utf8.RuneCountInString(secret)
	if n < MinKeyLength {
		return fmt.Errorf("%w: it has %d characters, a key needs at least %d", ErrWeakKey, n, MinKeyLength)
	}
	first, size := utf8.DecodeRuneInString(secret)
	same := true
	for _, r := range secret[size:] {
		if r != first {
			same = false
			break
		}
	}
	if same {
		return fmt.Errorf("%w: it is one character repeated", ErrWeakKey)
	}
	return nil
}
