package phone

import (
	"strconv"

	"github.com/nyaruka/phonenumbers"
)

// minUnknownNSN is the shortest national number Keys accepts for a number
// the metadata does not know (possible, not valid): subscriber numbers the
// metadata lags on are longer; short codes are shorter.
const minUnknownNSN = 7

// Keys returns the keys (see Key) that a stored value has when it reads as
// the same number as number: the lookup matches `custinfo.phone_key(col) =
// ANY(keys)`. The first key is the number's E.164 form.
//
// number is read as Spellings reads it, in region (an ISO code or a calling
// code; "" for none) unless it carries its own country code. home is the
// lookup's default_region: the country that stored values without a country
// code belong to ("" for none: such values then match nothing).
//
// The contract: a stored value s matches when, and only when, s and number
// read as the same E.164 number, s read in home unless it carries its own
// country code. Each key is kept only when the library reads it as number
// (checked against the metadata, see readKey), so a stored value can never
// match another number however alike the digits. The keys, for
// +82 10-1234-5678 with home KR, and for +44 20 7946 0018 with home GB:
//
//	+CC NSN             +821012345678     +442079460018    always
//	+CC 0 NSN           +8201012345678    +4402079460018   trunk prefix kept after +CC ("+82 010-…", "+44 (0)…" is the first)
//	0 NSN               01012345678       02079460018      only when number's calling code is home's
//	NSN                 1012345678        2079460018       only when number's calling code is home's
//	CC NSN              821012345678      442079460018     only when number's calling code is home's
//
// Numbers that do not parse, or shorter than 7 digits and not known to the
// metadata (short codes, emergency numbers), are an *Error: they match
// nobody.
//
// A number of another country has only the '+' keys: a stored value
// without country code is a number of home, so it is never the caller from
// abroad whose national digits look the same (+20 10 1111 0002 against a KR
// customer stored as 010-1111-0002; +65 6212 4567 against a US customer
// stored as 6562124567). Such a stored value is reported by `lookups check`.
func Keys(number, region, home string) ([]string, error) {
	n, valid, _, err := parse(number, region)
	if err != nil {
		return nil, err
	}
	if !valid && len(phonenumbers.GetNationalSignificantNumber(n)) < minUnknownNSN {
		// Short codes and service numbers ("10086", "118 118") have a
		// possible length in some countries; they are nobody's number.
		return nil, &Error{Reason: "number is too short to be a subscriber's number"}
	}
	h, err := ParseRegion(home)
	if err != nil {
		return nil, err
	}
	return keys(n, metaForRegion(h)), nil
}

// keys returns the keys of n, a number parse returned; home is the
// metadata of the lookup's default region, or nil.
func keys(n *phonenumbers.PhoneNumber, home *regionMeta) []string {
	cc := strconv.Itoa(int(n.GetCountryCode()))
	nsn := phonenumbers.GetNationalSignificantNumber(n)
	e164 := "+" + cc + nsn
	out := make([]string, 1, 5)
	out[0] = e164
	add := func(k string, m *regionMeta) {
		for _, o := range out {
			if o == k {
				return
			}
		}
		// A key starting with 00 never comes out of Key: stored, it
		// would read as an international number.
		if len(k) > 1 && k[0] == '0' && k[1] == '0' {
			return
		}
		if r, ok := readKey(k, m); ok && r == e164 {
			out = append(out, k)
		}
	}
	if m := metaForCallingCode(int(n.GetCountryCode())); m != nil && m.np != "" {
		add("+"+cc+m.np+nsn, nil)
	}
	if home != nil && home.ccDigits == cc {
		if home.np != "" {
			add(home.np+nsn, home)
		}
		add(nsn, home)
		add(cc+nsn, home)
	}
	return out
}

// E164 returns the E.164 form of number read in region (see Spellings for
// how number is read), or an *Error.
func E164(number, region string) (string, error) {
	n, _, _, err := parse(number, region)
	if err != nil {
		return "", err
	}
	return "+" + strconv.Itoa(int(n.GetCountryCode())) + phonenumbers.GetNationalSignificantNumber(n), nil
}
