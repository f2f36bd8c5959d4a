package phone

import (
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// This file predicts, from libphonenumber's metadata alone, which number the
// library reads a key as (see readKey). It follows phonenumbers.Parse step by
// step for the only inputs it is given, '+' and digits or bare digits, so a
// candidate key can be checked without parsing it: parsing runs the
// library's expensive extension and punctuation expressions, which a string
// of digits does not need. Where following the library would take more than
// a few expressions (an international prefix inside a national key), readKey
// answers "unknown" and the key is not used: a miss, never another number.
// TestReadKeyAgreesWithParse holds readKey to the library.

// regionMeta is what readKey needs of one region's metadata, with its
// expressions compiled once.
type regionMeta struct {
	region      string // ISO code, or "001" for a non-geographic entity
	cc          int
	ccDigits    string
	np          string         // national prefix as formatted ("0"), may be ""
	npParse     *regexp.Regexp // ^(?:national_prefix_for_parsing), nil when none
	npTransform string         // national_prefix_transform_rule, may be ""
	general     *regexp.Regexp // ^(?:general national number pattern)$
	idd         *regexp.Regexp // international prefix, nil for none
	lengths     []int32        // possible lengths of the general description, ascending
	localOnly   []int32

	md        *phonenumbers.PhoneMetadata
	validOnce sync.Once
	valid     *validity // see validity, compiled on first use
}

var (
	metaOnce     sync.Once
	metaByRegion map[string]*regionMeta
	metaNonGeo   map[int]*regionMeta
)

// loadMeta builds the regionMeta of every region from the library's embedded metadata.
func loadMeta() {
	metaByRegion = map[string]*regionMeta{}
	metaNonGeo = map[int]*regionMeta{}
	coll, err := phonenumbers.MetadataCollection()
	if err != nil {
		// The library panics at init when its embedded metadata does not
		// load, so this cannot happen; without metadata no key is checked.
		return
	}
	for _, m := range coll.GetMetadata() {
		rm := &regionMeta{
			region:      m.GetId(),
			cc:          int(m.GetCountryCode()),
			ccDigits:    strconv.Itoa(int(m.GetCountryCode())),
			np:          m.GetNationalPrefix(),
			npTransform: m.GetNationalPrefixTransformRule(),
			general:     regexp.MustCompile("^(?:" + m.GetGeneralDesc().GetNationalNumberPattern() + ")$"),
			lengths:     m.GetGeneralDesc().GetPossibleLength(),
			localOnly:   m.GetGeneralDesc().GetPossibleLengthLocalOnly(),
			md:          m,
		}
		if p := m.GetNationalPrefixForParsing(); p != "" {
			rm.npParse = regexp.MustCompile("^(?:" + p + ")")
		}
		if p := m.GetInternationalPrefix(); p != "" {
			rm.idd = regexp.MustCompile(p)
		}
		if m.GetId() == nonGeoRegion {
			metaNonGeo[rm.cc] = rm
		} else {
			metaByRegion[m.GetId()] = rm
		}
	}
}

// metaForRegion returns the metadata of an ISO region, or nil.
func metaForRegion(region string) *regionMeta {
	metaOnce.Do(loadMeta)
	return metaByRegion[region]
}

// metaForCallingCode returns the metadata the library reads a number of
// calling code cc with: its main region's, or the non-geographic entity's.
func metaForCallingCode(cc int) *regionMeta {
	metaOnce.Do(loadMeta)
	r := phonenumbers.GetRegionCodeForCountryCode(cc)
	if r == nonGeoRegion {
		return metaNonGeo[cc]
	}
	return metaByRegion[r]
}

// Length check results, as the library's testNumberLength gives them.
const (
	lenPossible = iota
	lenLocalOnly
	lenTooShort
	lenTooLong
	lenInvalid
)

// testLength is the library's testNumberLength for the general description.
func (m *regionMeta) testLength(n int) int {
	if len(m.lengths) == 0 || m.lengths[0] == -1 {
		return lenInvalid
	}
	l := int32(n)
	for _, x := range m.localOnly {
		if x == l {
			return lenLocalOnly
		}
	}
	switch {
	case l < m.lengths[0]:
		return lenTooShort
	case l > m.lengths[len(m.lengths)-1]:
		return lenTooLong
	}
	for _, x := range m.lengths {
		if x == l {
			return lenPossible
		}
	}
	return lenInvalid
}

// stripNationalPrefix is the library's maybeStripNationalPrefixAndCarrierCode:
// number without its national prefix (and carrier code), or number itself.
func (m *regionMeta) stripNationalPrefix(number string) string {
	if number == "" || m.npParse == nil {
		return number
	}
	groups := m.npParse.FindStringSubmatchIndex(number)
	if groups == nil {
		return number
	}
	viable := m.general.MatchString(number)
	last := len(groups)/2 - 1
	if m.npTransform == "" || groups[last*2] < 0 {
		if viable && !m.general.MatchString(number[groups[1]:]) {
			return number
		}
		return number[groups[1]:]
	}
	transformed := m.npParse.ReplaceAllString(number, m.npTransform)
	if viable && !m.general.MatchString(transformed) {
		return number
	}
	return transformed
}

// readKey returns the E.164 number the library reads key as, key being '+'
// and digits (read with no region) or digits read in region home, and ok.
// ok is false when the library does not read key as a number, or when
// readKey cannot tell without parsing.
func readKey(key string, home *regionMeta) (e164 string, ok bool) {
	m, national, ok := readNumber(key, home)
	if !ok {
		return "", false
	}
	return "+" + m.ccDigits + national, true
}

// readNumber is readKey's reading: the metadata of the calling code the
// library reads key with and the national significant number, digits with
// any leading zeros, or ok false.
func readNumber(key string, home *regionMeta) (m *regionMeta, national string, ok bool) {
	if d, plus := strings.CutPrefix(key, "+"); plus {
		if len(d) <= 2 { // MIN_LENGTH_FOR_NSN after the '+'
			return nil, "", false
		}
		m, national = callingCodePrefix(d)
		if m == nil {
			return nil, "", false
		}
	} else {
		if home == nil || len(key) < 2 {
			return nil, "", false
		}
		if home.idd != nil {
			if loc := home.idd.FindStringIndex(key); loc != nil && loc[0] == 0 {
				// An international prefix: the library reads what follows
				// as a country code (unless it starts with 0). Not followed.
				return nil, "", false
			}
		}
		m, national = home, key
		if rest, found := strings.CutPrefix(key, home.ccDigits); found {
			pot := home.stripNationalPrefix(rest)
			if (!home.general.MatchString(key) && home.general.MatchString(pot)) || home.testLength(len(key)) == lenTooLong {
				// Read as home's calling code and a national number, with
				// the metadata of that calling code's main region.
				national = pot
				m = metaForCallingCode(home.cc)
				if m == nil {
					return nil, "", false
				}
			}
		}
	}
	if len(national) < 2 {
		return nil, "", false
	}
	if pot := m.stripNationalPrefix(national); pot != national {
		switch m.testLength(len(pot)) {
		case lenTooShort, lenLocalOnly, lenInvalid:
		default:
			national = pot
		}
	}
	if len(national) < 2 || len(national) > 17 {
		return nil, "", false
	}
	for i := 0; i < len(national); i++ {
		if national[i] < '0' || national[i] > '9' {
			return nil, "", false
		}
	}
	return m, national, true
}

// callingCodePrefix splits d, the digits after a '+', into the metadata of
// its calling code (the first 1 to 3 digits that are one) and the rest.
func callingCodePrefix(d string) (*regionMeta, string) {
	if d == "" || d[0] == '0' {
		return nil, ""
	}
	for i := 1; i <= 3 && i <= len(d); i++ {
		cc, _ := strconv.Atoi(d[:i])
		if phonenumbers.GetRegionCodeForCountryCode(cc) != phonenumbers.UNKNOWN_REGION {
			m := metaForCallingCode(cc)
			if m == nil {
				return nil, ""
			}
			return m, d[i:]
		}
	}
	return nil, ""
}

// parseDigits is phonenumbers.Parse(s, region) for s made only of digits,
// with or without a leading '+': what parse hands the library once clean has
// run. When readNumber can tell how the library reads s, the number is built
// from the metadata, as the library builds it, without the library's
// extraction and extension expressions; otherwise the library parses s.
// TestParseDigitsEqualsLibrary and FuzzParseDigits hold the two equal.
func parseDigits(s, region string) (*phonenumbers.PhoneNumber, error) {
	if !allDigits(strings.TrimPrefix(s, "+")) {
		return phonenumbers.Parse(s, region)
	}
	var home *regionMeta
	if region != "" {
		home = metaForRegion(region)
	}
	m, national, ok := readNumber(s, home)
	if !ok {
		return phonenumbers.Parse(s, region)
	}
	return newNumber(int32(m.cc), national), nil
}

// newNumber is the number the library's parse fills in for calling code cc
// and national significant number national (digits, leading zeros kept):
// its setItalianLeadingZerosForPhoneNumber and national number.
func newNumber(cc int32, national string) *phonenumbers.PhoneNumber {
	nn, _ := strconv.ParseUint(national, 10, 64) // at most 17 digits
	n := &phonenumbers.PhoneNumber{CountryCode: &cc, NationalNumber: &nn}
	if len(national) > 1 && national[0] == '0' {
		lead := true
		n.ItalianLeadingZero = &lead
		zeros := int32(1)
		// An all-zero number's last 0 is not a leading zero.
		for int(zeros) < len(national)-1 && national[zeros] == '0' {
			zeros++
		}
		if zeros != 1 {
			n.NumberOfLeadingZeros = &zeros
		}
	}
	return n
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
