package bench

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/phone"
)

// The demo data (custinfo demo) gives customer i the national number 010
// followed by the 8 digits of (i*numberMul + numberAdd) mod 10^8. numberMul is
// coprime with 10^8, so the map is a bijection and a customer id past the
// table's last row spells a valid number that no customer has: a miss.
const (
	numberMul = 7919
	numberAdd = 12345678
	numberMod = 100_000_000
)

// MaxRows is the largest table the workload can draw misses for.
const MaxRows = 50_000_000

// eightDigits returns the 8 subscriber digits of customer i's number.
func eightDigits(i int64) string {
	n := (i*numberMul + numberAdd) % numberMod
	s := strconv.FormatInt(n, 10)
	for len(s) < 8 {
		s = "0" + s
	}
	return s
}

// customerNo returns the demo customer_no of customer i.
func customerNo(i int64) string {
	return fmt.Sprintf("C-%07d", i)
}

// item is one request of the workload: the body the helpdesk sends, the
// values the lookup reads from it, and the expected answer.
type item struct {
	body   []byte
	values map[string]string
	hit    bool
	id     []byte // customer_no of a hit as a JSON string, as the answer holds it
	idText string // customer_no of a hit
	sql    string // the lookup's statement for the request, for the pgx baseline
	args   []any  // the lookup's bound arguments, for the pgx baseline
	// prep is the request bound by the lookup, for the coalesced pgx baseline.
	prep lookup.Prepared
}

// spelling is one way a helpdesk may send a caller's number.
type spelling struct {
	name string
	// callNum renders the number from the 8 subscriber digits a and b (4 each).
	callNum func(a, b string) string
	nation  string // "" leaves the field out
	number  bool   // sent as a JSON number instead of a string
	extra   bool   // the body carries fields the lookup does not read
}

var spellings = []spelling{
	{name: "national dashes", callNum: func(a, b string) string { return "010-" + a + "-" + b }, nation: "82"},
	{name: "national digits", callNum: func(a, b string) string { return "010" + a + b }},
	{name: "international formatted", callNum: func(a, b string) string { return "+82 10-" + a + "-" + b }, nation: "KR"},
	{name: "E.164", callNum: func(a, b string) string { return "+8210" + a + b }, nation: "82"},
	{name: "international digits as a number", callNum: func(a, b string) string { return "8210" + a + b }, nation: "82", number: true},
	{name: "national spaces, extra fields", callNum: func(a, b string) string { return "010 " + a + " " + b }, nation: "82", extra: true},
}

// newWorkload returns n requests over a table of rows customers: about
// hitPercent of them name an existing customer, the rest a number nobody has;
// the spellings rotate through every form above.
func newWorkload(rng *rand.Rand, n int, rows int64, hitPercent int) []item {
	items := make([]item, n)
	for k := range items {
		hit := rng.IntN(100) < hitPercent
		sp := spellings[k%len(spellings)]
		var i int64
		if hit {
			// A few ranges of 010 numbers are possible but not valid in the
			// phone metadata; those match only their '+' spellings, so a hit
			// is drawn among the numbers that match as stored.
			for i = 1 + rng.Int64N(rows); !matchesStored(i, sp); i = 1 + rng.Int64N(rows) {
			}
		} else {
			// Misses come from the ids just past the table, a quarter of its size.
			i = rows + 1 + rng.Int64N(max(rows/4, 1))
		}
		items[k] = makeItem(i, hit, sp, k)
	}
	return items
}

// messyResidues are the values of i mod 50 for which the demo data stores
// customer i's number as people type it ("(010) 1234-5678", full-width
// digits, "010-1234-5678 (mobile)" ...; see demoFill in cmd/custinfo). The
// workload draws no hits among them, so that builds from before those
// spellings were matched answer the same requests correctly.
var messyResidues = [50]bool{5: true, 11: true, 17: true, 23: true, 29: true, 31: true, 37: true, 41: true, 43: true, 47: true, 49: true}

// storedPhone returns customer i's phone as the demo data stores it, or ""
// for a messy spelling (see messyResidues).
func storedPhone(i int64) string {
	if messyResidues[i%50] {
		return ""
	}
	d := eightDigits(i)
	switch i % 4 {
	case 0:
		return "010-" + d[:4] + "-" + d[4:]
	case 1:
		return "010" + d
	case 2:
		return "+82 10-" + d[:4] + "-" + d[4:]
	default:
		return "+8210" + d
	}
}

// matchesStored reports whether customer i's number, sent as sp spells it, is
// matched by the phone package to the spelling the demo data stored.
func matchesStored(i int64, sp spelling) bool {
	if messyResidues[i%50] {
		return false
	}
	d := eightDigits(i)
	region := sp.nation
	if region == "" {
		region = "KR"
	}
	got, err := phone.Spellings(sp.callNum(d[:4], d[4:]), region)
	return err == nil && slices.Contains(got, storedPhone(i))
}

func makeItem(i int64, hit bool, sp spelling, k int) item {
	d := eightDigits(i)
	num := sp.callNum(d[:4], d[4:])
	values := map[string]string{"callNum": num}
	b := []byte{'{'}
	if sp.extra {
		b = fmt.Appendf(b, `"ticketId":"T-%d","agent":{"name":"상담원 %d","ext":[%d,null,true]},`, k, k%50, 1000+k%100)
	}
	if sp.number {
		b = fmt.Appendf(b, `"callNum":%s`, num)
	} else {
		b = fmt.Appendf(b, `"callNum":%q`, num)
	}
	if sp.nation != "" {
		b = fmt.Appendf(b, `,"nation":%q`, sp.nation)
		values["nation"] = sp.nation
	}
	b = append(b, '}')
	it := item{body: b, values: values, hit: hit}
	if hit {
		it.idText = customerNo(i)
		it.id = []byte(`"` + it.idText + `"`)
	}
	return it
}
