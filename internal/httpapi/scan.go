package httpapi

import (
	"unicode/utf16"
	"unicode/utf8"
)

// maxScanDepth is the deepest nesting scanFields follows inside an ignored
// value; deeper bodies are left to decodeFieldsJSON, which bounds them as
// encoding/json does.
const maxScanDepth = 32

// scanFields is decodeFields in one pass over body, without reflection and
// with one allocation per wanted field. It reports ok only for a body that
// decodeFieldsJSON accepts, with the same values; for anything else (any
// error, a duplicate wanted field, nesting past maxScanDepth) it reports
// !ok, and decodeFields asks decodeFieldsJSON.
func scanFields(body []byte, wanted func(string) bool) (values map[string]string, ok bool) {
	if !utf8.Valid(body) {
		return nil, false
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	values = make(map[string]string, 4)
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return values, skipSpace(body, i+1) == len(body)
	}
	var keyBuf [32]byte
	for {
		if i >= len(body) || body[i] != '"' {
			return nil, false
		}
		var key []byte
		if key, i, ok = readString(body, i, keyBuf[:0]); !ok {
			return nil, false
		}
		i = skipSpace(body, i)
		if i >= len(body) || body[i] != ':' {
			return nil, false
		}
		i = skipSpace(body, i+1)
		if i >= len(body) {
			return nil, false
		}
		if k := string(key); wanted(k) {
			if _, dup := values[k]; dup {
				return nil, false
			}
			var v string
			if v, i, ok = readScalar(body, i); !ok {
				return nil, false
			}
			values[k] = v
		} else if i, ok = skipValue(body, i); !ok {
			return nil, false
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return values, skipSpace(body, i+1) == len(body)
		default:
			return nil, false
		}
	}
}

// readScalar reads the value of a wanted field at body[i]: a string's
// decoded text, a number's literal text, or "" for null.
func readScalar(body []byte, i int) (string, int, bool) {
	switch c := body[i]; {
	case c == '"':
		s, j, ok := readString(body, i, nil)
		return string(s), j, ok
	case c == '-' || '0' <= c && c <= '9':
		j, ok := skipNumber(body, i)
		if !ok {
			return "", 0, false
		}
		return string(body[i:j]), j, true
	case c == 'n':
		j, ok := skipLiteral(body, i, "null")
		return "", j, ok
	}
	return "", 0, false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// readString decodes the JSON string starting at the quote b[i] and returns
// its text, the index after its closing quote, and whether it is valid. The
// text is a slice of b when the string has no escapes, else it is built in
// buf (grown as needed).
func readString(b []byte, i int, buf []byte) ([]byte, int, bool) {
	i++
	start := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return b[start:i], i + 1, true
		case c == '\\':
			return readEscaped(b, start, i, buf)
		case c < 0x20:
			return nil, 0, false
		}
		i++
	}
	return nil, 0, false
}

// readEscaped continues readString from the first backslash at b[i],
// decoding escapes as encoding/json does: a lone or reversed UTF-16
// surrogate becomes U+FFFD.
func readEscaped(b []byte, start, i int, buf []byte) ([]byte, int, bool) {
	out := append(buf[:0], b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return out, i + 1, true
		case c < 0x20:
			return nil, 0, false
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			return nil, 0, false
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(b, i+2)
			if r < 0 {
				return nil, 0, false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if r2 := hex4Escape(b, i); r2 >= 0 {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, 0, false
		}
		i += 2
	}
	return nil, 0, false
}

// hex4 returns the value of the 4 hex digits at b[i:], or -1.
func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// hex4Escape returns the value of a \uXXXX escape at b[i:], or -1.
func hex4Escape(b []byte, i int) rune {
	if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return -1
	}
	return hex4(b, i+2)
}

// skipNumber returns the index after the JSON number at b[i] and whether
// it is one: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skipLiteral returns the index after lit at b[i] and whether it is there.
func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// skipValue returns the index after the JSON value at b[i] and whether it
// is valid and nests at most maxScanDepth deep. It does not recurse.
func skipValue(b []byte, i int) (int, bool) {
	var open [maxScanDepth]byte // the brackets we are inside of
	depth := 0
	for {
		// A value starts at b[i] (after white space).
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, false
		}
		var ok bool
		switch c := b[i]; {
		case c == '"':
			i, ok = skipString(b, i)
		case c == '-' || '0' <= c && c <= '9':
			i, ok = skipNumber(b, i)
		case c == 't':
			i, ok = skipLiteral(b, i, "true")
		case c == 'f':
			i, ok = skipLiteral(b, i, "false")
		case c == 'n':
			i, ok = skipLiteral(b, i, "null")
		case c == '{' || c == '[':
			if depth == maxScanDepth {
				return 0, false
			}
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '{'+2 == '}', '['+2 == ']'
				i, ok = i+1, true
				break
			}
			open[depth] = c
			depth++
			if c == '{' {
				if i, ok = skipKey(b, i); !ok {
					return 0, false
				}
			}
			continue
		}
		if !ok {
			return 0, false
		}
		// A value ended: close what it ends, or go on to the next member.
		for {
			if depth == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return 0, false
			}
			c := b[i]
			if c == open[depth-1]+2 {
				depth--
				i++
				continue
			}
			if c != ',' {
				return 0, false
			}
			i = skipSpace(b, i+1)
			if open[depth-1] == '{' {
				if i, ok = skipKey(b, i); !ok {
					return 0, false
				}
			}
			break
		}
	}
}

// skipKey returns the index after `"key" :` at b[i].
func skipKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	i, ok := skipString(b, i)
	if !ok {
		return 0, false
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return 0, false
	}
	return i + 1, true
}

// skipString returns the index after the valid JSON string at b[i].
func skipString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if hex4(b, i+2) < 0 {
					return 0, false
				}
				i += 5
			default:
				return 0, false
			}
		}
	}
	return 0, false
}
