package phone

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/nyaruka/phonenumbers"
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
