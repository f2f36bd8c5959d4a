package phone

import (
	"math/rand/v2"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// validityProbes returns numbers to hold isValid to the library with: every
// region's example numbers of every type, each with one digit changed,
// shortened and lengthened, and random national numbers of every calling
// code, some with leading zeros.
func validityProbes(r *rand.Rand) []*phonenumbers.PhoneNumber {
	var out []*phonenumbers.PhoneNumber
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.PREMIUM_RATE, phonenumbers.SHARED_COST, phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER,
		phonenumbers.PAGER, phonenumbers.UAN, phonenumbers.VOICEMAIL}
	add := func(cc int32, nsn string) {
		if len(nsn) >= 2 && len(nsn) <= 17 && allDigits(nsn) {
			out = append(out, newNumber(cc, nsn))
		}
	}
	ccs := map[int32]bool{}
	for reg := range phonenumbers.GetSupportedRegions() {
		cc := int32(phonenumbers.GetCountryCodeForRegion(reg))
		ccs[cc] = true
		for _, typ := range types {
			ex := phonenumbers.GetExampleNumberForType(reg, typ)
			if ex == nil {
				continue
			}
			nsn := phonenumbers.GetNationalSignificantNumber(ex)
			add(cc, nsn)
			i := r.IntN(len(nsn))
			add(cc, nsn[:i]+string(rune('0'+r.IntN(10)))+nsn[i+1:])
			add(cc, nsn[:len(nsn)-1])
			add(cc, nsn+string(rune('0'+r.IntN(10))))
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		ccs[int32(cc)] = true
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForNonGeoEntity(cc); ex != nil && typ == types[0] {
				add(int32(cc), phonenumbers.GetNationalSignificantNumber(ex))
			}
		}
	}
	ccs[0], ccs[999] = true, true // no region
	for cc := range ccs {
		for range 40 {
			b := make([]byte, 2+r.IntN(14))
			for i := range b {
				b[i] = byte('0' + r.IntN(10))
			}
			add(cc, string(b))
		}
	}
	return out
}

// TestIsValidEqualsLibrary holds isValid to phonenumbers.IsValidNumber.
func TestIsValidEqualsLibrary(t *testing.T) {
	t.Parallel()
	probes := validityProbes(rand.New(rand.NewPCG(12, 3)))
	valid := 0
	for _, n := range probes {
		want := phonenumbers.IsValidNumber(n)
		if got := isValid(n); got != want {
			t.Errorf("isValid(+%d %s) = %v; the library says %v", n.GetCountryCode(), phonenumbers.GetNationalSignificantNumber(n), got, want)
		}
		if want {
			valid++
		}
	}
	t.Logf("%d numbers, %d of them valid, all judged as the library judges them", len(probes), valid)
	if valid < len(probes)/10 || valid == len(probes) {
		t.Errorf("%d valid of %d probes: the probes do not exercise both answers", valid, len(probes))
	}
}

// FuzzIsValid holds isValid to the library on any calling code and
// national significant number.
func FuzzIsValid(f *testing.F) {
	for _, s := range []struct {
		cc  uint16
		nsn string
	}{{82, "1012345678"}, {1, "4155552671"}, {1, "2642351234"}, {44, "7911123456"}, {44, "1481256789"},
		{7, "7012345678"}, {39, "0612345678"}, {39, "00"}, {800, "12345678"}, {979, "123456789"}, {0, "12"}, {262, "269123456"}} {
		f.Add(s.cc, s.nsn)
	}
	f.Fuzz(func(t *testing.T, cc uint16, nsn string) {
		if len(nsn) < 2 || len(nsn) > 17 || !allDigits(nsn) {
			return
		}
		n := newNumber(int32(cc), nsn)
		if got, want := isValid(n), phonenumbers.IsValidNumber(n); got != want {
			t.Errorf("isValid(+%d %s) = %v; the library says %v", cc, nsn, got, want)
		}
	})
}
