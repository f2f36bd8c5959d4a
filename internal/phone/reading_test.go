package phone

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

// libraryRead is what readKey predicts: the E.164 number the library parses
// key as, in region home.
func libraryRead(key, home string) (string, bool) {
	n, err := phonenumbers.Parse(key, home)
	if err != nil {
		return "", false
	}
	return phonenumbers.Format(n, phonenumbers.E164), true
}

// readKeyProbes returns keys to hold readKey to the library with: variations
// of every region's example numbers (with and without trunk prefix and
// calling code, one digit changed, shortened and lengthened) and random
// digit strings.
func readKeyProbes(r *rand.Rand) []string {
	var out []string
	regions := make([]string, 0, 256)
	for reg := range phonenumbers.GetSupportedRegions() {
		regions = append(regions, reg)
	}
	slices.Sort(regions)
	for _, reg := range regions {
		m := metaForRegion(reg)
		for _, typ := range []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE} {
			ex := phonenumbers.GetExampleNumberForType(reg, typ)
			if ex == nil {
				continue
			}
			nsn := phonenumbers.GetNationalSignificantNumber(ex)
			forms := []string{nsn, m.np + nsn, m.ccDigits + nsn, m.ccDigits + m.np + nsn, "00" + m.ccDigits + nsn}
			for _, f := range forms {
				out = append(out, f, "+"+f)
				if len(f) > 3 {
					i := r.IntN(len(f))
					switch r.IntN(3) {
					case 0:
						out = append(out, f[:i]+strconv.Itoa(r.IntN(10))+f[i+1:])
					case 1:
						out = append(out, f[:len(f)-1])
					default:
						out = append(out, f+strconv.Itoa(r.IntN(10)))
					}
				}
			}
		}
	}
	for range 800 {
		b := make([]byte, 2+r.IntN(16))
		for i := range b {
			b[i] = byte('0' + r.IntN(10))
		}
		out = append(out, string(b), "+"+string(b))
	}
	return out
}

// TestReadKeyAgreesWithParse holds readKey to the library: whenever it
// answers, the library parses the key as the same number.
func TestReadKeyAgreesWithParse(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 1))
	probes := readKeyProbes(r)
	homes := []string{"KR", "US", "GB", "JP", "EG", "CN", "DE", "IT", "BR", "AR", "CA", "GG"}
	var answered, known, agree int
	for _, home := range homes {
		m := metaForRegion(home)
		for _, k := range probes {
			got, ok := readKey(k, m)
			want, lok := libraryRead(k, home)
			if lok {
				known++
			}
			if !ok {
				continue
			}
			answered++
			if !lok || got != want {
				t.Errorf("readKey(%q, %s) = %q; the library reads %q (ok=%v)", k, home, got, want, lok)
				continue
			}
			agree++
		}
	}
	t.Logf("%d probes × %d regions: the library reads %d; readKey answers %d, all agreeing: %d", len(probes), len(homes), known, answered, agree)
	// It declines keys that start with an international prefix (the "00"
	// forms among the probes), and little else.
	if answered < known*8/10 {
		t.Errorf("readKey answers %d of the %d keys the library reads; want at least 80 %%", answered, known)
	}
}

// TestParseDigitsEqualsLibrary holds parseDigits to phonenumbers.Parse: for
// every probe, '+' probes read with no region too, it returns the number the
// library returns, field for field, or the library's error.
func TestParseDigitsEqualsLibrary(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(11, 2))
	probes := readKeyProbes(r)
	regions := []string{"", "KR", "US", "GB", "JP", "EG", "CN", "DE", "IT", "BR", "AR", "CA", "GG", "SG", "RU", "FR"}
	var fast, total int
	for _, region := range regions {
		m := metaForRegion(region)
		for _, p := range probes {
			total++
			if _, _, ok := readNumber(p, m); ok {
				fast++
			}
			checkParseDigits(t, p, region)
		}
	}
	t.Logf("%d probes × regions: %d read from the metadata, the rest parsed by the library", total, fast)
	if fast < total/2 {
		t.Errorf("only %d of %d probes took the metadata path; want at least half", fast, total)
	}
}

// checkParseDigits fails t unless parseDigits(s, region) and
// phonenumbers.Parse(s, region) agree.
func checkParseDigits(t *testing.T, s, region string) {
	t.Helper()
	got, gerr := parseDigits(s, region)
	want, werr := phonenumbers.Parse(s, region)
	switch {
	case (gerr == nil) != (werr == nil):
		t.Errorf("parseDigits(%q, %q): error %v; the library's %v", s, region, gerr, werr)
	case gerr != nil:
		if gerr.Error() != werr.Error() {
			t.Errorf("parseDigits(%q, %q): error %v; the library's %v", s, region, gerr, werr)
		}
	case !proto.Equal(got, want):
		t.Errorf("parseDigits(%q, %q) = %v; the library parses %v", s, region, got, want)
	}
}

// FuzzParseDigits holds parseDigits to the library on any digit string,
// with and without '+', in a few regions.
func FuzzParseDigits(f *testing.F) {
	for _, s := range []string{"01012345678", "+821012345678", "8201012345678", "00821012345678",
		"4155550123", "14155550123", "+14155550123", "02079460018", "442079460018", "0000", "+800 1234 5678",
		"0612345678", "390612345678", "+390612345678", "0012", "+0", "1", "+", ""} {
		f.Add(s, uint8(0))
	}
	regions := []string{"", "KR", "US", "GB", "IT", "AR", "DE", "EG"}
	f.Fuzz(func(t *testing.T, s string, ri uint8) {
		if len(s) > MaxInputLen {
			return
		}
		checkParseDigits(t, s, regions[int(ri)%len(regions)])
	})
}
