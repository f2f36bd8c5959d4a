package phone

import (
	"strings"

	"github.com/nyaruka/phonenumbers"
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

// Inspect reads a stored value as the lookups read it: its key (see Key),
// in region (an ISO code or a calling code) unless the value carries its
// own country calling code ('+' or "00").
func Inspect(value, region string) Inspection {
	k := Key(value)
	digits := strings.TrimPrefix(k, "+")
	switch {
	case digits == "":
		return Inspection{Problem: ProblemNoDigits}
	case len(digits) < minDigits:
		return Inspection{Problem: ProblemTooShort}
	case len(digits) > maxDigits:
		return Inspection{Problem: ProblemTooLong}
	}
	n, valid, _, err := parse(k, region)
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
	return Inspection{
		E164:          phonenumbers.Format(n, phonenumbers.E164),
		Region:        phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode())),
		Valid:         valid,
		International: k[0] == '+',
	}
}

// NationalElsewhere returns the regions among candidates, other than
// region, in which the digits of value, read as a national number, are a
// valid number: a hint that value is a foreign number stored without its
// country code. A value that carries a '+' or "00" returns nil.
func NationalElsewhere(value, region string, candidates []string) []string {
	k := Key(value)
	if len(k) < minDigits || len(k) > maxDigits || k[0] == '+' {
		return nil
	}
	home, _ := ParseRegion(region)
	var out []string
	for _, r := range candidates {
		if r == home {
			continue
		}
		if n, err := phonenumbers.Parse(k, r); err == nil && phonenumbers.IsValidNumberForRegion(n, r) {
			out = append(out, r)
		}
	}
	return out
}
