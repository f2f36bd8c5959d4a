// Package phone reads a phone number as a caller types it or a CRM stores it.
// Keys gives the few normalised forms (see Key, the Go mirror of the SQL
// function custinfo.phone_key) that a stored value of the same number can
// have, and no other number's, so a lookup matches
// `custinfo.phone_key(col) = ANY($n)` over an expression index; Spellings
// gives the number's common spellings, for matching raw stored values.
//
// It stands on github.com/nyaruka/phonenumbers (libphonenumber's metadata):
// this package cleans the input, picks the right interpretation of digits
// given without a '+', and reads digits and judges validity from the
// library's metadata the way the library does (reading.go, valid.go; held
// equal to the library by differential tests), which costs a fraction of
// the library's general-purpose parse.
package phone

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// MaxInputLen is the longest number, in bytes, that Spellings accepts before any parsing.
const MaxInputLen = 64

// Digit-count bounds checked before the library parses anything: below
// minDigits no number is complete; above maxDigits even "00" + a 3-digit
// calling code + the longest national number (17) does not fit.
const (
	minDigits = 5
	maxDigits = 22
)

// Error is returned for input that is not a usable phone number or region; its Reason never contains the number.
type Error struct {
	Reason string
}

// Error returns the reason prefixed with "phone: ".
func (e *Error) Error() string { return "phone: " + e.Reason }

// Spellings returns every common spelling of number, deduplicated, in a fixed
// order, with the E.164 form first; region is the default region for numbers
// without a country calling code and may be an ISO code or a calling code (see ParseRegion).
//
// number may contain digits, one leading '+', a "tel:" prefix and the
// separators CRMs add (spaces, tabs, NBSP, '-', '.', '(', ')', '/'); anything
// else, or more than MaxInputLen bytes, is an *Error. Digits without a '+' are
// read, in this order of preference, as a national number of region (with or
// without trunk prefix, or with region's calling code in front, e.g.
// "821012345678" with "KR"), as an international number after a "00" prefix,
// and as an international number without its '+' (only when region is empty
// or the digits start with region's calling code). The first interpretation
// that is a valid number wins; failing that, the first that is at least a
// possible number (right length); failing that, an *Error.
//
// The spellings, in this order (a form equal to an earlier one is not
// repeated), shown for a KR mobile, a US and a GB London number:
//
//	 #  form                                KR                 US                 GB
//	 1  E.164                               +821012345678      +14155552671       +442079460018
//	 2  international digits, no '+'        821012345678       14155552671        442079460018
//	 3  national digits                     01012345678        4155552671         02079460018
//	 4  national, library format            010-1234-5678      (415) 555-2671     020 7946 0018
//	 5  international, library format       +82 10-1234-5678   +1 415-555-2671    +44 20 7946 0018
//	 6  national significant number         1012345678         (= 3)              2079460018
//	    (national digits without trunk prefix)
//	 7  national, groups split by spaces    010 1234 5678      415 555 2671       (= 4)
//	 8  national, groups split by dashes    (= 4)              415-555-2671       020-7946-0018
//	 9  international, split by spaces      +82 10 1234 5678   +1 415 555 2671    (= 5)
//	10  international, split by dashes      +82-10-1234-5678   +1-415-555-2671    +44-20-7946-0018
//	    (RFC 3966 without "tel:")
//	11  national, groups split by dots      010.1234.5678      415.555.2671       020.7946.0018
//
// Form 2 is left out when its digits, read as a national number of the
// number's country, are a different valid number ("49201000" is both
// +49 201000 and +49 49201000); likewise forms 3, 4, 7, 8, 11 and form 6 when
// their digits do not read back as the same number (AR mobiles). Numbers of
// non-geographic calling codes (+800, +808, +870, +88x, +979) have no
// national forms: only 1, 2, 5, 9 and 10. A number that is possible (right
// length) but not valid (libphonenumber does not know the range yet: its
// metadata lags new number blocks, and customers stored as "010-5970-1234"
// must still match) gets the same forms under the same read-back checks:
// a form whose digits could spell a different number is left out.
func Spellings(number, region string) ([]string, error) {
	n, valid, read, err := parse(number, region)
	if err != nil {
		return nil, err
	}
	return spellings(n, valid, read), nil
}

// reading records that a valid number is what the library parsed from
// digits with default region: spellings need not parse those again.
type reading struct{ digits, region string }

// is reports whether the library, given digits and region, returns the
// number of the reading.
func (r reading) is(digits, region string) bool {
	return r.digits != "" && r.digits == digits && r.region == region
}

// parse cleans number and returns the best interpretation of it (see
// Spellings), whether that is a valid number, and, when it is the first
// interpretation (a national number of region), that reading.
func parse(number, region string) (n *phonenumbers.PhoneNumber, valid bool, read reading, err error) {
	if len(number) > MaxInputLen {
		return nil, false, reading{}, &Error{Reason: "number is longer than " + strconv.Itoa(MaxInputLen) + " characters"}
	}
	reg, err := ParseRegion(region)
	if err != nil {
		return nil, false, reading{}, err
	}
	digits, plus, perr := clean(number)
	if perr != nil {
		return nil, false, reading{}, perr
	}
	if plus {
		n, valid, perr := tryParse("+"+digits, "")
		if perr != nil {
			return nil, false, reading{}, perr
		}
		return n, valid, reading{}, nil
	}

	// Interpretations of digits without '+', best first.
	var (
		cands    [3]*phonenumbers.PhoneNumber
		firstErr *Error
	)
	try := func(i int, s, r string) bool {
		n, valid, perr := tryParse(s, r)
		if perr != nil {
			if firstErr == nil {
				firstErr = perr
			}
			return false
		}
		cands[i] = n
		return valid
	}
	if reg != "" && try(0, digits, reg) {
		return cands[0], true, reading{digits, reg}, nil
	}
	if len(digits) > 2 && digits[0] == '0' && digits[1] == '0' && try(1, "+"+digits[2:], "") {
		return cands[1], true, reading{}, nil
	}
	if (reg == "" || strings.HasPrefix(digits, callingCode(reg))) && try(2, "+"+digits, "") {
		return cands[2], true, reading{}, nil
	}
	for _, n := range cands {
		if n != nil {
			return n, false, reading{}, nil
		}
	}
	if reg == "" || firstErr == nil {
		return nil, false, reading{}, &Error{Reason: "no region given and the number is not an international number"}
	}
	return nil, false, reading{}, firstErr
}

// callingCode returns the calling code of region as decimal digits.
func callingCode(region string) string {
	return strconv.Itoa(phonenumbers.GetCountryCodeForRegion(region))
}

// clean strips a "tel:" prefix and separators from s and returns its ASCII
// digits and whether it started with '+'.
func clean(s string) (digits string, plus bool, err *Error) {
	s = strings.TrimLeft(s, " \t\r\n")
	if len(s) >= 4 && (s[0]|0x20) == 't' && (s[1]|0x20) == 'e' && (s[2]|0x20) == 'l' && s[3] == ':' {
		s = s[4:]
	}
	var buf [MaxInputLen]byte
	nd := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			if nd == len(buf) {
				// Unreachable while len(s) <= MaxInputLen; kept so clean
				// stays safe if called with longer input.
				return "", false, &Error{Reason: "too many digits"}
			}
			buf[nd] = c
			nd++
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/':
		case c == 0xC2 && i+1 < len(s) && s[i+1] == 0xA0: // U+00A0 NO-BREAK SPACE, common in spreadsheet exports
			i++
		case c == '+':
			if plus || nd > 0 {
				return "", false, &Error{Reason: "'+' is only allowed before the first digit"}
			}
			plus = true
		default:
			return "", false, &Error{Reason: "number contains characters other than digits, spaces and + - . ( ) /"}
		}
	}
	switch {
	case nd == 0:
		return "", false, &Error{Reason: "number has no digits"}
	case nd < minDigits:
		return "", false, &Error{Reason: "number has too few digits"}
	case nd > maxDigits:
		return "", false, &Error{Reason: "number has too many digits"}
	}
	return string(buf[:nd]), plus, nil
}

// tryParse parses s with default region r and reports whether the result is
// a valid number; a result that is not even a possible number is an *Error.
func tryParse(s, r string) (n *phonenumbers.PhoneNumber, valid bool, err *Error) {
	n, perr := parseDigits(s, r)
	if perr != nil {
		return nil, false, &Error{Reason: parseReason(perr)}
	}
	if n.GetExtension() != "" {
		// clean lets no extension marker through; this is a safety net.
		return nil, false, &Error{Reason: "number has an extension"}
	}
	switch phonenumbers.IsPossibleNumberWithReason(n) {
	case phonenumbers.IS_POSSIBLE:
	case phonenumbers.INVALID_COUNTRY_CODE:
		return nil, false, &Error{Reason: "unknown country calling code"}
	case phonenumbers.TOO_SHORT:
		return nil, false, &Error{Reason: "number is too short for its country"}
	case phonenumbers.IS_POSSIBLE_LOCAL_ONLY:
		return nil, false, &Error{Reason: "number is too short for its country (area code missing?)"}
	case phonenumbers.TOO_LONG:
		return nil, false, &Error{Reason: "number is too long for its country"}
	default:
		return nil, false, &Error{Reason: "number has the wrong length for its country"}
	}
	if isValid(n) {
		return n, true, nil
	}
	// libphonenumber may strip a trunk prefix from an unknown range each
	// time it parses it ("+82 0000…"): such a number has no stable E.164 form.
	e164 := phonenumbers.Format(n, phonenumbers.E164)
	m, perr := parseDigits(e164, "")
	if perr != nil || phonenumbers.Format(m, phonenumbers.E164) != e164 {
		return nil, false, &Error{Reason: "not a valid phone number"}
	}
	return n, false, nil
}

// parseReason turns a phonenumbers parse error into a Reason that does not echo the input.
func parseReason(err error) string {
	switch {
	case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
		return "unknown country calling code"
	case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
		return "number is too short"
	case errors.Is(err, phonenumbers.ErrNumTooLong):
		return "number is too long"
	default:
		return "not a phone number"
	}
}

// spellings renders the spellings documented on Spellings for n; valid
// reports whether n is a valid number (see Spellings).
//
// A spelling is only worth matching if it denotes n: every spelling listed
// must, given back to Spellings with n's country as region, yield n again.
// Spellings that share their digits parse alike (clean drops separators), so
// there are four digit strings to vouch for: "+"+cc+NSN (forms 1, 5, 9, 10:
// the library's own E.164 round trip, checked for invalid numbers in
// tryParse), cc+NSN (form 2, intlDigitsAmbiguous), the national digits (forms
// 3, 4, 7, 8, 11) and the NSN (form 6), the last two checked here by parsing
// them. Some countries' national formats do not survive that (AR mobiles,
// numbers whose national prefix doubles as a carrier code ...); their
// national forms are left out rather than risk matching another customer.
//
// read, when set, is a parse already done: its digits need no second look.
func spellings(n *phonenumbers.PhoneNumber, valid bool, read reading) []string {
	out := make([]string, 0, 11)
	// addBytes appends string(b) unless it is empty or already present;
	// comparing string(b) with a string does not allocate, so a duplicate
	// costs no allocation.
	addBytes := func(b []byte) {
		if len(b) == 0 {
			return
		}
		for _, o := range out {
			if o == string(b) {
				return
			}
		}
		out = append(out, string(b))
	}
	addString := func(s string) {
		if s == "" || slices.Contains(out, s) {
			return
		}
		out = append(out, s)
	}
	var buf [2 * MaxInputLen]byte

	e164 := phonenumbers.Format(n, phonenumbers.E164)
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	addString(e164) // 1
	if isNonGeo(n) {
		if valid && !intlDigitsAmbiguous(n, e164) {
			addString(e164[1:]) // 2
		}
		addString(intl)                       // 5
		addBytes(regroup(buf[:0], intl, ' ')) // 9
		addBytes(regroup(buf[:0], intl, '-')) // 10
		return out
	}

	home := phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode()))
	nat := phonenumbers.Format(n, phonenumbers.NATIONAL)
	natDigits := string(digitsOnly(buf[:0], nat))
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	// A number the metadata does not know is checked through this package's
	// own reading of digits (which also tries "00" and "+" readings), not
	// just the library's, since that is what a spelling given back meets.
	check := denotes
	if !valid {
		check = readsBack
	}
	natOK := read.is(natDigits, home) || check(natDigits, home, e164)
	nsnOK := natOK
	if nsn != natDigits {
		nsnOK = read.is(nsn, home) || check(nsn, home, e164)
	}

	// Form 2 of a number the metadata does not know must read back itself:
	// "is it another valid number" cannot rule out another possible one.
	if read.is(e164[1:], home) || valid && !intlDigitsAmbiguous(n, e164) || !valid && readsBack(e164[1:], home, e164) {
		addString(e164[1:]) // 2
	}
	if natOK {
		addString(natDigits) // 3
		addString(nat)       // 4
	}
	addString(intl) // 5
	if nsnOK {
		addString(nsn) // 6
	}
	if natOK {
		addBytes(regroup(buf[:0], nat, ' ')) // 7
		addBytes(regroup(buf[:0], nat, '-')) // 8
	}
	addBytes(regroup(buf[:0], intl, ' ')) // 9
	addBytes(regroup(buf[:0], intl, '-')) // 10
	if natOK {
		addBytes(regroup(buf[:0], nat, '.')) // 11
	}
	return out
}

// readsBack reports whether s, given to Spellings with region, is the number e164.
func readsBack(s, region, e164 string) bool {
	m, _, _, err := parse(s, region)
	return err == nil && phonenumbers.Format(m, phonenumbers.E164) == e164
}

// denotes reports whether the digits s, read as a number of region, are the number e164.
// Like Spellings' own input rules, it wants minDigits to maxDigits digits.
func denotes(s, region, e164 string) bool {
	if len(s) < minDigits || len(s) > maxDigits {
		return false
	}
	m, err := phonenumbers.Parse(s, region)
	return err == nil && phonenumbers.Format(m, phonenumbers.E164) == e164
}

// intlDigitsAmbiguous reports whether the international digits of n
// (e164 without '+', form 2) read as a national number of n's country would
// be a different number: in a country with variable-length numbers (DE, AT,
// IT ...) "49201000" is both +49 201000 and +49 49201000. A cheap length check
// settles most numbers; only when the digits have a possible national length
// are they parsed.
func intlDigitsAmbiguous(n *phonenumbers.PhoneNumber, e164 string) bool {
	digits := e164[1:]
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return true
	}
	cc := n.GetCountryCode()
	probe := &phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &v}
	if phonenumbers.IsPossibleNumberWithReason(probe) != phonenumbers.IS_POSSIBLE {
		return false
	}
	home := phonenumbers.GetRegionCodeForCountryCode(int(cc))
	// parse reads the digits first as the library does with region home;
	// when that gives n back (so a valid number), parse returns it too.
	if m, err := phonenumbers.Parse(digits, home); err == nil && phonenumbers.Format(m, phonenumbers.E164) == e164 {
		return false
	}
	m, _, _, perr := parse(digits, home)
	return perr != nil || phonenumbers.Format(m, phonenumbers.E164) != e164
}

// isNonGeo reports whether n belongs to a non-geographic calling code (region "001").
func isNonGeo(n *phonenumbers.PhoneNumber) bool {
	return phonenumbers.GetRegionCodeForCountryCode(int(n.GetCountryCode())) == nonGeoRegion
}

// nonGeoRegion is the region libphonenumber gives non-geographic calling codes.
const nonGeoRegion = "001"

// Digits returns the ASCII digits of s, in order: "+82 10-1234-5678" → "821012345678".
func Digits(s string) string { return string(digitsOnly(nil, s)) }

// digitsOnly appends the ASCII digits of s to dst.
func digitsOnly(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; '0' <= c && c <= '9' {
			dst = append(dst, c)
		}
	}
	return dst
}

// regroup appends s to dst with every run of non-digits between two digits
// replaced by sep; a leading '+' is kept and anything else before the first
// or after the last digit is dropped: "(415) 555-2671" → "415 555 2671".
func regroup(dst []byte, s string, sep byte) []byte {
	if len(s) > 0 && s[0] == '+' {
		dst = append(dst, '+')
	}
	pending := false
	seen := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if '0' <= c && c <= '9' {
			if pending && seen {
				dst = append(dst, sep)
			}
			dst = append(dst, c)
			pending, seen = false, true
			continue
		}
		pending = true
	}
	return dst
}
