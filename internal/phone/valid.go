package phone

import (
	"regexp"
	"slices"

	"github.com/nyaruka/phonenumbers"
)

// This file is phonenumbers.IsValidNumber with its expressions compiled once.
// The library builds each number-type pattern's text anew for every check,
// looks it up in a cache behind a lock, and matches it twice (once while
// checking the possible lengths, once more after); a request's validity check
// was most of what is left of the phone work on the request path. The rules,
// their order and the metadata are the library's own;
// TestIsValidEqualsLibrary and FuzzIsValid hold the two equal.

// typeDesc is one number-type description of a region: its possible lengths
// (none: those of the general description) and its pattern, compiled.
type typeDesc struct {
	lengths []int32
	pattern *regexp.Regexp // ^(?:national number pattern)$; nil for an empty pattern
}

// matches is the library's isNumberMatchingDesc.
func (d *typeDesc) matches(nsn string) bool {
	if len(d.lengths) > 0 && !slices.Contains(d.lengths, int32(len(nsn))) {
		return false
	}
	if d.pattern == nil {
		return nsn == ""
	}
	return d.pattern.MatchString(nsn)
}

// validity is what the validity check needs of one region's metadata.
type validity struct {
	leading *regexp.Regexp // ^(?:leading digits), nil when the region has none
	general typeDesc
	// special are premium rate, toll free, shared cost, VoIP, personal,
	// pager, UAN and voicemail, in the library's order.
	special    [8]typeDesc
	fixed      typeDesc
	mobile     typeDesc
	sameFixMob bool
}

// validity returns m's compiled validity, compiling it on first use.
func (m *regionMeta) validity() *validity {
	m.validOnce.Do(func() { m.valid = compileValidity(m.md) })
	return m.valid
}

// compileValidity compiles the number-type descriptions of md.
func compileValidity(md *phonenumbers.PhoneMetadata) *validity {
	desc := func(d *phonenumbers.PhoneNumberDesc) typeDesc {
		td := typeDesc{lengths: d.GetPossibleLength()}
		if p := d.GetNationalNumberPattern(); p != "" {
			td.pattern = regexp.MustCompile("^(?:" + p + ")$")
		}
		return td
	}
	v := &validity{
		general: desc(md.GetGeneralDesc()),
		special: [8]typeDesc{
			desc(md.GetPremiumRate()), desc(md.GetTollFree()), desc(md.GetSharedCost()), desc(md.GetVoip()),
			desc(md.GetPersonalNumber()), desc(md.GetPager()), desc(md.GetUan()), desc(md.GetVoicemail()),
		},
		fixed:      desc(md.GetFixedLine()),
		mobile:     desc(md.GetMobile()),
		sameFixMob: md.GetSameMobileAndFixedLinePattern(),
	}
	if ld := md.GetLeadingDigits(); ld != "" {
		v.leading = regexp.MustCompile("^(?:" + ld + ")")
	}
	return v
}

// known is the library's getNumberTypeHelper(nsn, m) != UNKNOWN.
func (v *validity) known(nsn string) bool {
	if !v.general.matches(nsn) {
		return false
	}
	for i := range v.special {
		if v.special[i].matches(nsn) {
			return true
		}
	}
	if v.fixed.matches(nsn) {
		return true
	}
	return !v.sameFixMob && v.mobile.matches(nsn)
}

// isValid is phonenumbers.IsValidNumber(n): n's region is the one its
// calling code belongs to (for a code shared by several regions, the first
// whose leading digits or number types fit), and n is valid when its
// national significant number is of a known type there.
func isValid(n *phonenumbers.PhoneNumber) bool {
	cc := int(n.GetCountryCode())
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	if len(regions) == 0 {
		return false
	}
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	if len(regions) == 1 {
		m := metaForRegionOrCallingCode(cc, regions[0])
		if m == nil {
			return phonenumbers.IsValidNumber(n)
		}
		return m.validity().known(nsn)
	}
	for _, r := range regions {
		m := metaForRegionOrCallingCode(cc, r)
		if m == nil {
			return phonenumbers.IsValidNumber(n)
		}
		v := m.validity()
		if v.leading != nil {
			if v.leading.MatchString(nsn) {
				return v.known(nsn)
			}
		} else if v.known(nsn) {
			return true
		}
	}
	return false
}

// metaForRegionOrCallingCode is the library's getMetadataForRegionOrCallingCode.
func metaForRegionOrCallingCode(cc int, region string) *regionMeta {
	if region == nonGeoRegion {
		metaOnce.Do(loadMeta)
		return metaNonGeo[cc]
	}
	return metaForRegion(region)
}
