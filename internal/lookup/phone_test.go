package lookup_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nyaruka/phonenumbers"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/phone"
)

// phoneCorpus is a customer table of a KR helpdesk: one customer per row,
// each number stored as people type them. Foreign numbers carry their
// country code: stored without it they would be Korean numbers.
var phoneCorpus = []struct{ stored, e164 string }{
	{"010-1111-0001", "+821011110001"},
	{"01011110002", "+821011110002"},
	{"+82 10-1111-0003", "+821011110003"},
	{"+821011110004", "+821011110004"},
	{"821011110005", "+821011110005"},
	{"010 1111 0006", "+821011110006"},
	{"(010) 1111-0007", "+821011110007"},
	{"010.1111.0008", "+821011110008"},
	{"82-10-1111-0009", "+821011110009"},
	{"+82 (0)10 1111 0010", "+821011110010"},
	{"0082-10-1111-0011", "+821011110011"},
	{"010-1111-0012 (mobile)", "+821011110012"},
	{"010-1111-0013 ", "+821011110013"},
	{"０１０-１１１１-００１４", "+821011110014"},
	{"010–1111–0015", "+821011110015"},
	{"tel:+82-10-1111-0016", "+821011110016"},
	{"+82 010-1111-0017", "+821011110017"},
	{"1011110018", "+821011110018"},
	{"  010-1111-0019", "+821011110019"},
	{"010-1111-0020 ext. 12", "+821011110020"},
	{"010-1111-0021 x12", "+821011110021"},
	{"010/1111/0022", "+821011110022"},
	{"010-1111-0023 내선 12", "+821011110023"},
	{"82 10 1111 0024", "+821011110024"},
	{"010-1111-0025(본인)", "+821011110025"},
	{"010—1111—0026", "+821011110026"},
	{"'01011110027", "+821011110027"},
	{"\u00a0010\u00a01111\u00a00028", "+821011110028"},
	{"TEL:010-1111-0029", "+821011110029"},
	{"(02) 1111-0030", "+82211110030"},
	{"02-1111-0031", "+82211110031"},
	{"+82 2 1111 0032", "+82211110032"},
	{"031-724-0033", "+82317240033"},
	{"(051) 888-0034", "+82518880034"},
	{"+1 (415) 555-0135", "+14155550135"},
	{"001-415-555-0136", "+14155550136"},
	{"+1 415.555.0137 x12", "+14155550137"},
	{"tel:+1-415-555-0138", "+14155550138"},
	{"+44 (0)20 7946 0038", "+442079460038"},
	{"0044 20 7946 0039", "+442079460039"},
	{"+44 20 7946 0040", "+442079460040"},
	{"+81 90-1234-0041", "+819012340041"},
	{"+81 (0)3-1234-0042", "+81312340042"},
	{"0081 90 1234 0043", "+819012340043"},
	{"+86 138 0123 0044", "+8613801230044"},
	{"0086-138-0123-0045", "+8613801230045"},
	{"+86 (0)10 6552 0046", "+861065520046"},
}

// phoneCollisions are numbers that must not find anyone in phoneFixture:
// each looks like a stored customer's number and is another.
var phoneCollisions = []struct {
	lookup string
	values map[string]string
}{
	{"kr", map[string]string{"callNum": "+20 10 1111 0002"}},            // Egypt; 010-1111-0002 in Korea is stored
	{"kr", map[string]string{"callNum": "1011110002", "nation": "20"}},  // the same, as national digits
	{"kr", map[string]string{"callNum": "01011110002", "nation": "EG"}}, // the same, with its trunk prefix
	{"kr", map[string]string{"callNum": "+20 10 1111 0018"}},            // 1011110018 stored: a Korean number
	{"kr", map[string]string{"callNum": "010-1111-0099"}},               // one digit from nobody, not stored
	{"kr", map[string]string{"callNum": "010-1111-0101"}},               // one digit apart from 0001
	{"kr", map[string]string{"callNum": "+82 10 1111 0002 1"}},          // one digit longer than 0002
	{"cn", map[string]string{"callNum": "+1 380 123 4567"}},             // the stored Chinese 138 0123 4567
	{"cn", map[string]string{"callNum": "3801234567", "nation": "1"}},
	{"us", map[string]string{"callNum": "+65 6212 4567"}}, // the stored US 656-212-4567
	{"us", map[string]string{"callNum": "62124567", "nation": "SG"}},
}

func phoneFixture() string {
	var b strings.Builder
	b.WriteString(`
CREATE TABLE crm_kr (id int PRIMARY KEY, phone text, name text);
-- 5,000 other customers, so that the planner has a reason to use an index.
INSERT INTO crm_kr SELECT 1000 + i, '010-9' || lpad(i::text, 7, '0'), 'other'
FROM generate_series(1, 5000) i;
CREATE TABLE crm_cn (id int PRIMARY KEY, phone text, name text);
INSERT INTO crm_cn VALUES (1, '138 0123 4567', 'Wang');
CREATE TABLE crm_us (id int PRIMARY KEY, phone text, name text);
INSERT INTO crm_us VALUES (1, '6562124567', 'Miller'), (2, '1-415-555-0120', 'A'), (3, '(415) 555-0121', 'B'),
  (4, '415.555.0122', 'C'), (5, '+1 415 555 0123', 'D'), (6, '14155550124', 'E'), (7, '415-555-0125 ext. 3', 'F');
INSERT INTO custinfo.lookups (name, source) VALUES ('kr', 'crm_kr'), ('cn', 'crm_cn'), ('us', 'crm_us');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
  ('kr', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
  ('cn', 'callNum', 'phone', 'phone', true, 'nation', 'CN'),
  ('us', 'callNum', 'phone', 'phone', true, 'nation', 'US');
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('kr', 'id', 'id'), ('cn', 'id', 'id'), ('us', 'id', 'id');
`)
	for i, c := range phoneCorpus {
		fmt.Fprintf(&b, "INSERT INTO crm_kr VALUES (%d, '%s', 'C%d');\n", i+1, strings.ReplaceAll(c.stored, "'", "''"), i+1)
	}
	b.WriteString("ANALYZE crm_kr;\n")
	return b.String()
}

// helpdeskAsks returns the ways the helpdesk sends the number e164: its
// national digits with the calling code in nation, and E.164 with no nation.
func helpdeskAsks(t *testing.T, e164 string) []map[string]string {
	t.Helper()
	n, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(n) {
		t.Fatalf("test number %s is not valid: %v", e164, err)
	}
	national := phone.Digits(phonenumbers.Format(n, phonenumbers.NATIONAL))
	return []map[string]string{
		{"callNum": national, "nation": fmt.Sprint(n.GetCountryCode())},
		{"callNum": e164},
	}
}

// TestPhoneCorpus asks for every stored spelling's number as the helpdesk
// sends it and expects that customer; asks for every look-alike and expects
// nobody; first without an index on custinfo.phone_key(phone), then with one
// (and the plan using it); then with the mapping edited live.
func TestPhoneCorpus(t *testing.T) {
	t.Parallel()
	if len(phoneCorpus) < 40 {
		t.Fatalf("corpus has %d spellings; want at least 40", len(phoneCorpus))
	}
	pool, snap := setup(t, phoneFixture())
	ctx := context.Background()
	check := func(t *testing.T, snap *lookup.Snapshot) {
		t.Helper()
		kr := get(t, snap, "kr")
		for i, c := range phoneCorpus {
			for _, ask := range helpdeskAsks(t, c.e164) {
				res, err := kr.Run(ctx, pool, ask)
				if err != nil {
					t.Errorf("stored %q, asked %v: %v", c.stored, ask, err)
					continue
				}
				if got, want := fields(res)["id"], fmt.Sprint(i+1); got != want || res.Matches != 1 {
					t.Errorf("stored %q, asked %v: id %s (%d matches), want %s (1 match)", c.stored, ask, got, res.Matches, want)
				}
			}
		}
		us := get(t, snap, "us")
		for id, e164 := range map[int]string{1: "+16562124567", 2: "+14155550120", 3: "+14155550121", 4: "+14155550122", 5: "+14155550123", 6: "+14155550124", 7: "+14155550125"} {
			for _, ask := range helpdeskAsks(t, e164) {
				res, err := us.Run(ctx, pool, ask)
				if err != nil || fields(res)["id"] != fmt.Sprint(id) {
					t.Errorf("us: asked %v: %v, %v; want id %d", ask, fields(res), err, id)
				}
			}
		}
		if res, err := get(t, snap, "cn").Run(ctx, pool, map[string]string{"callNum": "13801234567", "nation": "86"}); err != nil || fields(res)["id"] != "1" {
			t.Errorf("cn: asked 13801234567 nation 86: %v, %v; want id 1", fields(res), err)
		}
		for _, c := range phoneCollisions {
			res, err := get(t, snap, c.lookup).Run(ctx, pool, c.values)
			var ie *lookup.InputError
			if !errors.Is(err, lookup.ErrNoMatch) && !errors.As(err, &ie) {
				t.Errorf("%s: asked %v: %v, %v; want no customer", c.lookup, c.values, fields(res), err)
			}
		}
	}
	t.Run("without index", func(t *testing.T) { check(t, snap) })

	if _, err := pool.Exec(ctx, `CREATE INDEX crm_kr_phone_key_idx ON crm_kr (custinfo.phone_key(phone)); ANALYZE crm_kr`); err != nil {
		t.Fatal(err)
	}
	t.Run("with index", func(t *testing.T) {
		check(t, snap)
		prep, err := get(t, snap, "kr").Bind(map[string]string{"callNum": "01011110001", "nation": "82"})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := lookup.Explain(ctx, pool, prep, false)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan, "crm_kr_phone_key_idx") {
			t.Errorf("plan does not use crm_kr_phone_key_idx:\n%s", plan)
		}
	})

	// The mapping edited live: the lookup now reads another column, holding
	// the same numbers in the same spellings.
	if _, err := pool.Exec(ctx, `
ALTER TABLE crm_kr ADD COLUMN mobile text;
UPDATE crm_kr SET mobile = phone, phone = NULL;
CREATE INDEX ON crm_kr (custinfo.phone_key(mobile));
UPDATE custinfo.lookup_params SET source_column = 'mobile' WHERE lookup = 'kr'`); err != nil {
		t.Fatal(err)
	}
	t.Run("mapping edited", func(t *testing.T) { check(t, compile(t, pool)) })
}

// TestPhoneNoDefaultRegion: a lookup without default_region reads stored
// values only with their country code; a national one belongs to no country.
func TestPhoneNoDefaultRegion(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE c (id int PRIMARY KEY, phone text);
INSERT INTO c VALUES (1, '010-1111-0001'), (2, '+82 10 1111 0002');
INSERT INTO custinfo.lookups (name, source) VALUES ('n', 'c');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field) VALUES ('n', 'callNum', 'phone', 'phone', true, 'nation');
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('n', 'id', 'id');`)
	l := get(t, snap, "n")
	ctx := context.Background()
	if _, err := l.Run(ctx, pool, map[string]string{"callNum": "01011110001", "nation": "KR"}); !errors.Is(err, lookup.ErrNoMatch) {
		t.Errorf("national value without default_region: %v, want ErrNoMatch", err)
	}
	if res, err := l.Run(ctx, pool, map[string]string{"callNum": "01011110002", "nation": "KR"}); err != nil || fields(res)["id"] != "2" {
		t.Errorf("international value without default_region: %v, %v; want id 2", fields(res), err)
	}
}

// TestPhoneIndexWarning: a phone param on a table of more than 100,000 rows
// with no index on custinfo.phone_key(column) is warned about at load, with
// the statement to run; the index silences it.
func TestPhoneIndexWarning(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, `
CREATE TABLE "Big" (id int PRIMARY KEY, "Phone No" text);
INSERT INTO "Big" SELECT i, '010' || lpad(i::text, 8, '0') FROM generate_series(1, 100100) i;
ANALYZE "Big";
CREATE INDEX ON "Big" ("Phone No");
INSERT INTO custinfo.lookups (name, source) VALUES ('big', '"Big"');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region) VALUES ('big', 'callNum', 'Phone No', 'phone', true, 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column) VALUES ('big', 'id', 'id');`)
	w := get(t, snap, "big").Warnings
	if len(w) != 1 || !strings.Contains(w[0], `CREATE INDEX CONCURRENTLY ON "public"."Big" (custinfo.phone_key("Phone No"))`) {
		t.Errorf("Warnings without the phone_key index = %q, want one naming the index to create", w)
	}
	if _, err := pool.Exec(context.Background(), `CREATE INDEX ON "Big" (custinfo.phone_key("Phone No"))`); err != nil {
		t.Fatal(err)
	}
	if w := get(t, compile(t, pool), "big").Warnings; len(w) != 0 {
		t.Errorf("Warnings with the phone_key index = %q, want none", w)
	}
	if w := get(t, snap, "big").Warnings; len(w) == 0 || len(snap.Warnings()) != 1 || !strings.HasPrefix(snap.Warnings()[0], `lookup "big": `) {
		t.Errorf("Snapshot.Warnings() = %q, want the lookup's warning naming it", snap.Warnings())
	}
}
