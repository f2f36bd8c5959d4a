package phone

import (
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/unicode/norm"
)

// Inspection says how a value stored in a customer table reads as a phone
// number, for `lookups check`: which number it is, or why no asked number
// can ever match it.
type Inspection struct {
	// E164 is the number the value reads as; "" when it can never match.
	E164 string
	// Region is the ISO region of that number ("001" for non-geographic
	// calling codes; the calling code's main region for a number the
	// metadata does not know); "" when E164 is "".
	Region string
	// Valid reports whether the metadata knows the number's range.
	Valid bool
	// International reports whether the value carried its own country
	// calling code ('+' or "00").
	International bool
	// Problem says why the value can never match: ProblemNoDigits,
	// ProblemTooShort, ProblemTooLong or ProblemNotNumber; "" when E164 is set.
	Problem string
}

// The problems of Inspection.Problem.
const (
	ProblemNoDigits  = "no digits"
	ProblemTooShort  = "too short"
	ProblemTooLong   = "too long"
	ProblemNotNumber = "not a number"
)

// Inspect reads a stored value as the lookups read it: in region (an ISO
// code or a calling code) unless it carries its own country calling code.
// Full-width digits, dashes of every width, a "tel:" prefix and a trailing
// note or extension ("(mobile)", "ext. 12", "(본인)") are allowed.
func Inspect(value, region string) Inspection {
	s, digits := storedDigits(value)
	if digits == 0 {
		return Inspection{Problem: ProblemNoDigits}
	}
	if digits < minDigits {
		return Inspection{Problem: ProblemTooShort}
	}
	n, valid, _, err := parse(s, region)
	if err != nil {
		reason := ""
		if pe, ok := err.(*Error); ok {
			reason = pe.Reason
		}
		switch {
		case strings.Contains(reason, "too short") || strings.Contains(reason, "too few"):
			return Inspection{Problem: ProblemTooShort}
		case strings.Contains(reason, "too long") || strings.Contains(reason, "too many"):
			return Inspection{Problem: ProblemTooLong}
		default:
			return Inspection{Problem: ProblemNotNumber}
		}
	}
	t := strings.TrimLeft(s, " ")
	return Inspection{
		E164:          phonenumbers.Format(n, phonenumbers.E164),
		Region:        phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode())),
		Valid:         valid,
		International: strings.HasPrefix(t, "+") || strings.HasPrefix(Digits(t), "00"),
	}
}

// NationalElsewhere returns the regions among candidates, other than
// region, in which the digits of value, read as a national number, are a
// valid number: a hint that value is a foreign number stored without its
// country code. A value that carries a '+' or "00" returns nil.
func NationalElsewhere(value, region string, candidates []string) []string {
	s, digits := storedDigits(value)
	if digits < minDigits || digits > maxDigits {
		return nil
	}
	s = strings.TrimLeft(s, " ")
	d := Digits(s)
	if strings.HasPrefix(s, "+") || strings.HasPrefix(d, "00") {
		return nil
	}
	home, _ := ParseRegion(region)
	var out []string
	for _, r := range candidates {
		if r == home {
			continue
		}
		if n, err := phonenumbers.Parse(d, r); err == nil && phonenumbers.IsValidNumberForRegion(n, r) {
			out = append(out, r)
		}
	}
	return out
}

// storedDigits returns value cleaned as far as this package's parser needs
// (NFKC, dashes, "tel:", a trailing note or extension cut off) and its
// number of ASCII digits.
func storedDigits(value string) (string, int) {
	if len(value) > 4*MaxInputLen {
		value = value[:4*MaxInputLen]
	}
	s := norm.NFKC.String(value)
	s = strings.TrimSpace(s)
	if len(s) >= 4 && strings.EqualFold(s[:4], "tel:") {
		s = s[4:]
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "00") {
		// "+82 (0)10 …": the trunk prefix written after the calling code.
		s = strings.Replace(s, "(0)", "", 1)
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			n++
		case r == '+' || r == ' ' || r == '-' || r == '.' || r == '/' || r == '(' || r == ')':
			b.WriteRune(r)
		case unicode.Is(unicode.Pd, r) || unicode.IsSpace(r):
			b.WriteByte('-')
		default:
			// A letter, '#', ',' ...: the rest is a note or an extension.
			out := strings.TrimRight(b.String(), " -./(")
			return out, len(Digits(out))
		}
	}
	return b.String(), n
}
