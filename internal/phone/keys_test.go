package phone

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"
)

// homes are the default regions the property tests store numbers under.
var homes = []string{"KR", "US", "GB", "JP", "EG"}

// TestKeysIssueCases pins the keys of the numbers the contract is about:
// every stored spelling of the number found, and the look-alike numbers of
// other countries refused.
func TestKeysIssueCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		number, reg  string
		home         string
		stored       []string // each must match
		storedOthers []string // none may match
	}{
		{
			name: "KR mobile, KR table", number: "01011110002", reg: "KR", home: "KR",
			stored: []string{"010-1111-0002", "(010) 1111-0002", "82-10-1111-0002", "+82 (0)10 1111 0002", "0082-10-1111-0002",
				"010-1111-0002 (mobile)", "010-1111-0002 ", "０１０-１１１１-０００２", "010–1111–0002", "tel:+82-10-1111-0002",
				"82 10 1111 0002", "010-1111-0002(본인)", "+82 010-1111-0002", "1011110002", "+821011110002", "010 1111 0002 내선 12"},
			storedOthers: []string{"010-1111-0003", "+20 10 1111 0002", "20 10 1111 0002", "0020 10 1111 0002"},
		},
		{
			name: "Egypt caller, KR table", number: "+20 10 1111 0002", home: "KR",
			stored:       []string{"+20 10 1111 0002", "0020-10-1111-0002", "+20 (0)10 1111 0002", "+20 010 1111 0002"},
			storedOthers: []string{"01011110002", "010-1111-0002", "1011110002", "201011110002", "+821011110002"},
		},
		{
			name: "Egypt caller as national digits and nation", number: "1011110002", reg: "20", home: "KR",
			stored:       []string{"+201011110002"},
			storedOthers: []string{"01011110002", "1011110002", "201011110002"},
		},
		{
			name: "Egypt caller as national form and ISO nation", number: "01011110002", reg: "EG", home: "KR",
			stored:       []string{"+201011110002"},
			storedOthers: []string{"01011110002", "1011110002", "201011110002"},
		},
		{
			name: "KR landline", number: "(02) 1111-0018", reg: "KR", home: "KR",
			stored: []string{"02-1111-0018", "(02) 1111-0018", "+82 2 1111 0018", "82-2-1111-0018", "021111 0018 ext. 3"},
		},
		{
			name: "US number, KR table", number: "+1 (415) 555-0119", home: "KR",
			stored:       []string{"+1 (415) 555-0119", "001-415-555-0119", "+1 415.555.0119 x12"},
			storedOthers: []string{"1-415-555-0119", "4155550119", "(415) 555-0119"},
		},
		{
			name: "US number, US table", number: "4155550120", reg: "US", home: "US",
			stored: []string{"1-415-555-0120", "(415) 555-0120", "415.555.0120", "+1 415 555 0120", "14155550120"},
		},
		{
			name: "+1 380 against a Chinese 138, CN table", number: "+1 380 123 4567", home: "CN",
			stored:       []string{"+1 380-123-4567"},
			storedOthers: []string{"138 0123 4567", "13801234567", "013801234567", "+86 138 0123 4567"},
		},
		{
			name: "Singapore caller, US table", number: "+65 6212 4567", home: "US",
			stored:       []string{"+65 6212 4567", "0065 6212 4567"},
			storedOthers: []string{"6562124567", "656-212-4567", "(656) 212-4567", "1 656 212 4567"},
		},
		{
			name: "GB London, GB table", number: "020 7946 0018", reg: "GB", home: "GB",
			stored: []string{"020 7946 0018", "+44 (0)20 7946 0018", "+44 20 7946 0018", "0044 20 7946 0018", "44 20 7946 0018", "(020) 7946-0018"},
		},
		{
			name: "JP mobile, JP table", number: "090-1234-5678", reg: "JP", home: "JP",
			stored: []string{"090-1234-5678", "０９０ー１２３４ー５６７８", "+81 90 1234 5678", "+81 (0)90-1234-5678", "81-90-1234-5678"},
		},
		{
			name: "CN mobile, CN table", number: "13801234567", reg: "CN", home: "CN",
			stored:       []string{"138 0123 4567", "+86 138 0123 4567", "86 13801234567", "0086-138-0123-4567"},
			storedOthers: []string{"+1 380 123 4567", "13801234568"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := Keys(tt.number, tt.reg, tt.home)
			if err != nil {
				t.Fatalf("Keys(%q, %q, %q): %v", tt.number, tt.reg, tt.home, err)
			}
			for _, s := range tt.stored {
				if !slices.Contains(keys, Key(s)) {
					t.Errorf("stored %q (key %q) is not found by Keys(%q, %q, %q) = %q", s, Key(s), tt.number, tt.reg, tt.home, keys)
				}
			}
			for _, s := range tt.storedOthers {
				if slices.Contains(keys, Key(s)) {
					t.Errorf("stored %q (key %q) is another number, but matches Keys(%q, %q, %q) = %q", s, Key(s), tt.number, tt.reg, tt.home, keys)
				}
			}
		})
	}
}

// TestKeysShortAndEmergencyNumbers: no short or emergency number, asked in
// any of the home regions, gives keys.
func TestKeysShortAndEmergencyNumbers(t *testing.T) {
	t.Parallel()
	short := []string{"112", "911", "119", "999", "000", "110", "100", "15", "17", "18", "122", "1588", "114",
		"118 118", "08", "1", "0", "10086", "1330", "116 123", "106", "01", "+82 112", "+1 911"}
	for _, home := range homes {
		for _, region := range append([]string{""}, homes...) {
			for _, s := range short {
				if keys, err := Keys(s, region, home); err == nil {
					t.Errorf("Keys(%q, %q, %q) = %q, want an error", s, region, home, keys)
				}
			}
		}
	}
}

// keysNumbers returns the numbers of the property test: the library's example
// numbers of every type for every region and non-geographic calling code,
// numbers generated from them (other subscriber digits, kept when valid),
// numbers one digit apart from them, and the look-alikes of the issue.
func keysNumbers(r *rand.Rand) []*phonenumbers.PhoneNumber {
	seen := map[string]bool{}
	var out []*phonenumbers.PhoneNumber
	add := func(n *phonenumbers.PhoneNumber) {
		if n == nil {
			return
		}
		e := phonenumbers.Format(n, phonenumbers.E164)
		if !seen[e] {
			seen[e] = true
			out = append(out, n)
		}
	}
	regions := make([]string, 0, 256)
	for reg := range phonenumbers.GetSupportedRegions() {
		regions = append(regions, reg)
	}
	slices.Sort(regions)
	types := []phonenumbers.PhoneNumberType{phonenumbers.FIXED_LINE, phonenumbers.MOBILE, phonenumbers.TOLL_FREE,
		phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.UAN}
	var examples []*phonenumbers.PhoneNumber
	for _, reg := range regions {
		for _, typ := range types {
			if ex := phonenumbers.GetExampleNumberForType(reg, typ); ex != nil {
				examples = append(examples, ex)
			}
		}
	}
	for cc := range phonenumbers.GetSupportedGlobalNetworkCallingCodes() {
		examples = append(examples, phonenumbers.GetExampleNumberForNonGeoEntity(cc))
	}
	for _, ex := range examples {
		add(ex)
		nsn := phonenumbers.GetNationalSignificantNumber(ex)
		e := "+" + strconv.Itoa(int(ex.GetCountryCode()))
		for range 3 { // generated: other subscriber digits
			b := []byte(nsn)
			for i := len(b) / 2; i < len(b); i++ {
				b[i] = byte('0' + r.IntN(10))
			}
			if n, err := phonenumbers.Parse(e+string(b), ""); err == nil && phonenumbers.IsValidNumber(n) {
				add(n)
			}
		}
		i := r.IntN(len(nsn)) // one digit apart
		b := []byte(nsn)
		b[i] = byte('0' + (int(b[i]-'0')+1+r.IntN(9))%10)
		if n, err := phonenumbers.Parse(e+string(b), ""); err == nil && phonenumbers.IsPossibleNumber(n) {
			add(n)
		}
	}
	for _, s := range []string{"+20 10 1111 0002", "+82 10 1111 0002", "+82 10 1111 0003", "+1 380 123 4567", "+86 138 0123 4567",
		"+65 6212 4567", "+1 656 212 4567", "+82 2 1111 0018", "+44 20 7946 0018", "+81 90 1234 5678", "+1 415 555 0120"} {
		n, err := phonenumbers.Parse(s, "")
		if err != nil {
			panic(s + ": " + err.Error())
		}
		add(n)
	}
	return out
}

// storedSpellings returns ways a customer table may hold n: international
// ones, and national ones as if n were a number of every home region (for a
// number of another country, a national spelling is that region's own
// number: the look-alike the keys must not reach).
func storedSpellings(n *phonenumbers.PhoneNumber) []string {
	cc := strconv.Itoa(int(n.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
	nat := phonenumbers.Format(n, phonenumbers.NATIONAL)
	out := []string{"+" + cc + nsn, intl, "00" + cc + " " + nsn, phonenumbers.Format(n, phonenumbers.RFC3966),
		intl + " (mobile)", cc + nsn, cc + "-" + nsn, nsn, nat, Digits(nat), "0" + nsn, "1" + nsn, nat + " ext. 12"}
	for _, np := range []string{"0", "1", "8"} {
		out = append(out, "+"+cc+" ("+np+")"+nsn, "+"+cc+" "+np+nsn)
	}
	return out
}

// TestKeysNeverAnotherNumber is the property of the contract: for numbers of
// every region stored in every spelling under each home region, a stored
// value matches an asked number only when the library reads the stored value
// (its key, in the home region) as that very number. So no pair of
// different numbers ever matches, whatever their digits.
func TestKeysNeverAnotherNumber(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 2))
	numbers := keysNumbers(r)
	for _, home := range homes {
		// key → the numbers the library reads the stored values with that key as.
		readings := map[string]string{}
		var storedCount int
		for _, n := range numbers {
			for _, s := range storedSpellings(n) {
				k := Key(s)
				if k == "" {
					continue
				}
				storedCount++
				if _, done := readings[k]; done {
					continue
				}
				readings[k], _ = libraryRead(k, home)
			}
		}
		matched, asked := 0, 0
		for _, a := range numbers {
			e164 := phonenumbers.Format(a, phonenumbers.E164)
			region := phonenumbers.GetRegionCodeForNumber(a)
			forms := []struct{ number, region string }{{e164, ""}}
			if region != "" && region != nonGeoRegion {
				forms = append(forms, struct{ number, region string }{phonenumbers.GetNationalSignificantNumber(a), region})
			}
			for _, f := range forms {
				keys, err := Keys(f.number, f.region, home)
				if err != nil {
					continue
				}
				asked++
				// The national digits alone may read as another number
				// ("8601234567" with CN is +86 1234567): keys[0] is the
				// number asked.
				if f.region == "" && keys[0] != e164 {
					t.Errorf("Keys(%q, \"\", %s)[0] = %q, want %q", f.number, home, keys[0], e164)
				}
				for _, k := range keys {
					got, stored := readings[k]
					if !stored {
						continue
					}
					matched++
					if got != keys[0] {
						t.Errorf("home %s: asked %q (region %q) = %s has key %q, which stored values of %q have", home, f.number, f.region, keys[0], k, got)
					}
				}
			}
		}
		t.Logf("home %s: %d numbers, %d stored values, %d asks, %d key matches", home, len(numbers), storedCount, asked, matched)
		if asked < len(numbers) {
			t.Errorf("home %s: only %d asks of %d numbers parsed", home, asked, len(numbers))
		}
	}
}

// TestKeysFindEveryInternationalSpelling: whatever the home region, a number
// stored with its country code is found in every spelling.
func TestKeysFindEveryInternationalSpelling(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 4))
	for _, n := range keysNumbers(r) {
		if !phonenumbers.IsValidNumber(n) || phonenumbers.IsPossibleNumberWithReason(n) != phonenumbers.IS_POSSIBLE {
			continue // a local-only number (US 310-xxxx) needs its area code
		}
		e164 := phonenumbers.Format(n, phonenumbers.E164)
		intl := phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
		cc := strconv.Itoa(int(n.GetCountryCode()))
		nsn := phonenumbers.GetNationalSignificantNumber(n)
		for _, home := range homes {
			keys, err := Keys(e164, "", home)
			if err != nil {
				t.Errorf("Keys(%q, \"\", %s): %v", e164, home, err)
				continue
			}
			for _, s := range []string{e164, intl, "00" + cc + "-" + nsn, phonenumbers.Format(n, phonenumbers.RFC3966), intl + " (본인)"} {
				if !slices.Contains(keys, Key(s)) {
					t.Errorf("home %s: stored %q (key %q) not found by Keys(%q) = %q", home, s, Key(s), e164, keys)
				}
			}
		}
	}
}

// TestKeysFindNationalSpellingsAtHome: a valid number of the home region
// stored in its national format, as digits, without trunk prefix, or with the
// calling code and no '+', is found whenever the library reads that stored
// value as the number (in countries with numbers of variable length, "49
// 34123456" is itself a German national number, and is rightly not found).
func TestKeysFindNationalSpellingsAtHome(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 5))
	missed := map[string][]string{}
	found := 0
	for _, n := range keysNumbers(r) {
		home := phonenumbers.GetRegionCodeForNumber(n)
		if !slices.Contains([]string{"KR", "US", "GB", "JP", "EG", "CN", "DE", "FR", "IN", "BR", "AR", "MX", "RU", "IT", "AU"}, home) || !phonenumbers.IsValidNumber(n) {
			continue
		}
		e164 := phonenumbers.Format(n, phonenumbers.E164)
		nat := phonenumbers.Format(n, phonenumbers.NATIONAL)
		keys, err := Keys(nat, home, home)
		if err != nil {
			t.Errorf("Keys(%q, %s, %s): %v", nat, home, home, err)
			continue
		}
		if keys[0] != e164 {
			continue // the library's national format does not read back (AR mobiles)
		}
		nsn := phonenumbers.GetNationalSignificantNumber(n)
		for _, s := range []string{nat, Digits(nat), nsn, strconv.Itoa(int(n.GetCountryCode())) + " " + nsn} {
			if got, _ := libraryRead(Key(s), home); got != e164 {
				continue
			}
			if slices.Contains(keys, Key(s)) {
				found++
			} else {
				missed[home] = append(missed[home], s)
			}
		}
	}
	for home, m := range missed {
		t.Errorf("home %s: stored national spellings that read as the number, not found: %s", home, strings.Join(m, ", "))
	}
	if found < 500 {
		t.Errorf("found %d national spellings; want at least 500", found)
	}
}

// FuzzKeys: Keys never panics, and every key it gives is its own key (a
// stored value can equal it) and reads, in the home region, as the number
// itself.
func FuzzKeys(f *testing.F) {
	for _, s := range []struct{ number, region, home string }{
		{"010-1234-5678", "KR", "KR"}, {"+20 10 1111 0002", "", "KR"}, {"01011110002", "EG", "KR"}, {"1011110002", "20", "KR"},
		{"+1 380 123 4567", "", "CN"}, {"+65 6212 4567", "", "US"}, {"4155550120", "US", "US"}, {"020 7946 0018", "GB", "GB"},
		{"090-1234-5678", "JP", "JP"}, {"0082 10 1234 5678", "US", "JP"}, {"+7 800 123 4567", "", "RU"}, {"8 800 123 4567", "RU", "RU"},
		{"011 54 9 11 1234 5678", "US", "AR"}, {"+39 06 1234 5678", "", "IT"}, {"+800 1234 5678", "", "KR"}, {"112", "KR", "KR"},
		{"+49 30 123456", "", "DE"}, {"030 123456", "DE", "DE"}, {"+55 11 91234 5678", "", "BR"}, {"(11) 91234-5678", "BR", "BR"},
	} {
		f.Add(s.number, s.region, s.home)
	}
	f.Fuzz(func(t *testing.T, number, region, home string) {
		keys, err := Keys(number, region, home)
		if err != nil {
			return
		}
		h, _ := ParseRegion(home)
		for i, k := range keys {
			if Key(k) != k {
				t.Fatalf("Keys(%q, %q, %q) key %q: Key(key) = %q", number, region, home, k, Key(k))
			}
			if i == 0 || !strings.HasPrefix(k, "+") && h == "" {
				continue
			}
			if got, ok := libraryRead(k, h); !ok || got != keys[0] {
				t.Fatalf("Keys(%q, %q, %q) = %q: key %q reads as %q (ok=%v), want %q", number, region, home, keys, k, got, ok, keys[0])
			}
		}
	})
}

// BenchmarkKeys measures Keys on the shapes the helpdesk sends, with home KR.
func BenchmarkKeys(b *testing.B) {
	for _, c := range benchNumbers {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Keys(c.number, c.region, "KR")
			}
		})
	}
}
