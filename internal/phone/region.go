package phone

import (
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ParseRegion accepts an ISO 3166 region code ("KR", "kr") or a country calling code ("82", "+82", " 82 ") and returns the ISO region ("KR").
//
// A calling code shared by several regions maps to libphonenumber's main
// region for it (1 → US, 44 → GB, 7 → RU); "UK", reserved in ISO 3166 for
// the United Kingdom, maps to GB. Empty or blank input returns "", nil.
// Anything else, including non-geographic calling codes such as 800, is an
// *Error.
func ParseRegion(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if len(s) == 2 && isLetter(s[0]) && isLetter(s[1]) {
		r := string([]byte{s[0] &^ 0x20, s[1] &^ 0x20}) // ASCII upper case
		if r == "UK" {
			r = "GB"
		}
		if phonenumbers.GetSupportedRegions()[r] {
			return r, nil
		}
		return "", regionError(s)
	}
	d := strings.TrimPrefix(s, "+")
	if len(d) < 1 || len(d) > 3 || d[0] == '0' {
		return "", regionError(s)
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", regionError(s)
		}
	}
	cc, _ := strconv.Atoi(d) // 1–3 ASCII digits: cannot fail
	switch r := phonenumbers.GetRegionCodeForCountryCode(cc); r {
	case phonenumbers.UNKNOWN_REGION:
		return "", regionError(s)
	case nonGeoRegion:
		return "", &Error{Reason: "calling code +" + d + " is not a country's"}
	default:
		return r, nil
	}
}

// isLetter reports whether c is an ASCII letter.
func isLetter(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// regionError reports an unknown region, quoting at most its first 8 bytes.
func regionError(s string) *Error {
	if len(s) > 8 {
		s = s[:8] + "…"
	}
	return &Error{Reason: "unknown region or calling code " + strconv.Quote(s)}
}
