package phone

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// keyMaxRunes is how much of a stored value Key reads, in characters.
const keyMaxRunes = 256

// Key returns the key of a stored phone number, exactly as the SQL function
// custinfo.phone_key (db/migrations/00003_phone_key.sql) computes it in a
// UTF8 database: "+" and the digits of an international number ("+82 (0)10
// 1234 5678", "0082-10-1234-5678", "tel:+82-10-1234-5678" →
// "+821012345678"), the digits of a national one ("(010) 1234-5678 (mobile)"
// → "01012345678"), "" when there are no digits. A national value never
// gets a '+', so it never equals another country's international number.
//
// The steps, the same in both:
//  1. only the first 256 characters are read;
//  2. NFKC, then Arabic-Indic digits become 0-9, Unicode dashes and the
//     katakana prolonged sound mark become '-', zero-width characters and the
//     soft hyphen are dropped;
//  3. leading blanks and a "tel:" prefix (any case) are dropped;
//  4. the number is the longest prefix of digits, '+', blanks and ( ) . / ' " -;
//     from the first other character on, the rest is a note or an extension;
//  5. "(0)" is dropped ("+44 (0)20 …", "(0)30 123456");
//  6. the number is international when its first digit-or-plus is '+', or
//     its digits start with 00; the key is '+' and the digits (after the 00
//     when there was no '+') of an international number, else the digits.
//
// A key is its own key: Key(Key(s)) == Key(s).
//
// Key serves tests and tools that must predict what the database computes;
// matching itself happens in SQL. Invalid UTF-8 is read as the database
// never stores it: each bad byte as U+FFFD, which ends the number.
func Key(stored string) string {
	v := stored
	if utf8.RuneCountInString(v) > keyMaxRunes {
		n := 0
		for i := range v {
			if n == keyMaxRunes {
				v = v[:i]
				break
			}
			n++
		}
	}
	v = keyTranslate(norm.NFKC.String(v))

	v = strings.TrimLeft(v, " \t\r\n")
	if len(v) >= 4 && v[0]|0x20 == 't' && v[1]|0x20 == 'e' && v[2]|0x20 == 'l' && v[3] == ':' {
		v = v[4:]
	}
	end := len(v)
	for i := 0; i < len(v); i++ {
		if !isKeyChar(v[i]) {
			end = i
			break
		}
	}
	v = v[:end]

	v = strings.ReplaceAll(v, "(0)", "")
	digits := Digits(v)
	if digits == "" {
		return ""
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return r == '+' || '0' <= r && r <= '9' }); v[i] == '+' {
		return "+" + digits
	}
	if strings.HasPrefix(digits, "00") {
		if len(digits) == 2 {
			return ""
		}
		return "+" + digits[2:]
	}
	return digits
}

// isKeyChar reports whether c may be part of the number in Key's step 4.
func isKeyChar(c byte) bool {
	switch {
	case '0' <= c && c <= '9':
		return true
	case c == '+', c == ' ', c == '\t', c == '\r', c == '\n', c == '(', c == ')', c == '.', c == '/', c == '\'', c == '"', c == '-':
		return true
	}
	return false
}

// keyTranslate does the translate() of Key's step 2.
func keyTranslate(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case 0x0660 <= r && r <= 0x0669:
			b.WriteByte(byte('0' + r - 0x0660))
		case 0x06F0 <= r && r <= 0x06F9:
			b.WriteByte(byte('0' + r - 0x06F0))
		case 0x2010 <= r && r <= 0x2015, r == 0x2212, r == 0x30FC:
			b.WriteByte('-')
		case r == 0x00AD, 0x200B <= r && r <= 0x200D, r == 0x2060, r == 0xFEFF:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
