package httpapi

import (
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/lookup"
)

// appendData appends {"data":{...}} with every field as a JSON string.
func appendData(buf []byte, fields []lookup.Field) []byte {
	buf = append(buf, `{"data":{`...)
	for i, f := range fields {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendString(buf, f.Name)
		buf = append(buf, ':')
		buf = appendString(buf, f.Value)
	}
	return append(buf, "}}\n"...)
}

// appendErrorEnvelope appends {"error":{"code":…,"message":…,"detail":…}}.
func appendErrorEnvelope(buf []byte, e apiError) []byte {
	buf = append(buf, `{"error":{"code":`...)
	buf = appendString(buf, e.Code)
	buf = append(buf, `,"message":`...)
	buf = appendString(buf, e.Message)
	buf = append(buf, `,"detail":`...)
	buf = appendString(buf, e.Detail)
	return append(buf, "}}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// control characters, U+2028 and U+2029 are escaped, as are <, > and & so the
// output is safe to embed in HTML.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
