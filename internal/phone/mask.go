package phone

import "strings"

// maxMaskStars caps the run of '*' Mask writes, so a huge value cannot flood a log line.
const maxMaskStars = 16

// Mask returns a form of the phone-like string s that is safe for logs: its digits, with all but at most the first 3 and last 4 replaced by '*'.
//
// Only a leading '+', digits and '*' appear in the result; separators and any
// other characters are dropped ("010-1234-5678" → "010****5678"). Values with
// fewer than 8 digits keep only their last 2 digits, and values with fewer
// than 4 digits keep none, so Mask never returns all digits of its input.
// Runs of '*' are capped at 16.
func Mask(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if '0' <= s[i] && s[i] <= '9' {
			n++
		}
	}
	head, tail := 3, 4
	switch {
	case n < 4:
		head, tail = 0, 0
	case n < 8:
		head, tail = 0, 2
	}
	var b strings.Builder
	b.Grow(1 + head + maxMaskStars + tail)
	if t := strings.TrimLeft(s, " \t\r\n"); t != "" && t[0] == '+' {
		b.WriteByte('+')
	}
	stars := 0
	k := 0 // index of the current digit
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		switch {
		case k < head || k >= n-tail:
			b.WriteByte(c)
		case stars < maxMaskStars:
			b.WriteByte('*')
			stars++
		}
		k++
	}
	return b.String()
}
