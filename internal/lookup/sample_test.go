package lookup_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/phone"
)

// sampleFixture stores phone numbers as a KR customer table holds them,
// with values no number can match and foreign numbers stored without their
// country code; big holds 5000 rows so that a sample of 100 is taken by
// TABLESAMPLE; a view over crm and one that sleeps past the time limit.
const sampleFixture = `
CREATE SCHEMA crm;
CREATE TABLE crm.people (id integer PRIMARY KEY, name text NOT NULL, phone text);
INSERT INTO crm.people VALUES
    (1, 'a', '010-1111-0001'),
    (2, 'b', '(010) 1111-0007'),
    (3, 'c', '+82 (0)10 1111 0010'),
    (4, 'd', '０１０-１１１１-００１４'),
    (5, 'e', '010-1111-0012 (mobile)'),
    (6, 'f', 'tel:+82-10-1111-0016'),
    (7, 'g', '(02) 1111-0018'),
    (8, 'h', '+1 (415) 555-0119'),
    (9, 'i', '+44 20 7946 0018'),
    (10, 'j', NULL),
    (11, 'k', '   '),
    (12, 'l', 'N/A'),
    (13, 'm', '119'),
    (14, 'n', '0101111000100010001'),
    (15, 'o', '090-4242-5151'),
    (16, 'p', '1-212-555-0123');
CREATE TABLE crm.big (id integer PRIMARY KEY, name text NOT NULL, phone text);
INSERT INTO crm.big SELECT i, 'n' || i, '010-' || lpad((1000 + i % 9000)::text, 4, '0') || '-' || lpad(i::text, 4, '0')
    FROM generate_series(1, 5000) i;
ANALYZE crm.big;
CREATE VIEW crm.people_view AS SELECT id, name, phone AS mobile FROM crm.people;
CREATE VIEW crm.slow AS SELECT p.* FROM crm.people p, pg_sleep(2) s;
INSERT INTO custinfo.lookups (name, source) VALUES
    ('people', 'crm.people'), ('big', 'crm.big'), ('view', 'crm.people_view'), ('slow', 'crm.slow'),
    ('noregion', 'crm.people');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('people', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('big', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('view', 'callNum', 'mobile', 'phone', true, 'nation', 'KR'),
    ('slow', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('noregion', 'callNum', 'phone', 'phone', true, 'nation', NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
    SELECT name, 'userName', 'name', 1 FROM custinfo.lookups;
`

// clearDigits are digit runs of sampleFixture's values that a masked
// example must never show.
var clearDigits = []string{"11110001", "42425151", "5550123", "0001000100"}

func TestSampleData(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, sampleFixture)
	ctx := context.Background()
	sample := func(name string, opt lookup.SampleOptions) lookup.DataReport {
		t.Helper()
		reps, err := get(t, snap, name).SampleData(ctx, pool, opt)
		if err != nil {
			t.Fatalf("SampleData(%s) = %v", name, err)
		}
		if len(reps) != 1 {
			t.Fatalf("SampleData(%s) = %d reports, want 1 (one phone param)", name, len(reps))
		}
		return reps[0]
	}

	r := sample("people", lookup.SampleOptions{})
	if r.Sampled != 16 || r.Blank != 2 || r.Method != "LIMIT 2000" || r.TimedOut {
		t.Errorf("people: sampled %d, blank %d, method %q, timed out %v; want 16, 2, LIMIT 2000, false", r.Sampled, r.Blank, r.Method, r.TimedOut)
	}
	wantNever := map[string]int{phone.ProblemNoDigits: 1, phone.ProblemTooShort: 1, phone.ProblemTooLong: 1}
	if diff := cmp.Diff(wantNever, r.Never); diff != "" {
		t.Errorf("people: values never matched, by problem (-want +got):\n%s", diff)
	}
	// 090-4242-5151 (JP mobile) and 1-212-555-0123 (US, no '+') are no KR
	// numbers; each reads as a national number elsewhere.
	if r.ForeignValues != 2 || r.Foreign["JP"] != 1 || r.Foreign["US"] != 1 {
		t.Errorf("people: foreign values %d %v, want 2 with JP 1 and US 1", r.ForeignValues, r.Foreign)
	}
	countries := map[string]int{}
	for _, c := range r.Countries {
		countries[c.Region] = c.Count
	}
	if countries["KR"] < 7 || countries["US"] != 1 || countries["GB"] != 1 {
		t.Errorf("people: countries %v, want KR at least 7, US 1 (+1 415 …), GB 1", countries)
	}
	text := strings.Join(r.Lines(), "\n")
	for _, want := range []string{
		`data: param "callNum" (phone on "phone", default_region KR): 16 values sampled (LIMIT 2000)`,
		"countries: KR ",
		"empty: 2 (12.5%) NULL or blank",
		"warning: 3 of 16 values (18.8%) can never be matched: no digits 1, too short 1, too long 1",
		"(no digits, 3 characters)",
		"warning: 2 of 16 values (12.5%) are not numbers of KR but are national numbers of ",
		"JP 1", "US 1", "store them with + and the calling code",
		"090****5151",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("people report has no %q:\n%s", want, text)
		}
	}
	for _, d := range clearDigits {
		if strings.Contains(text, d) {
			t.Errorf("people report shows the clear digits %s:\n%s", d, text)
		}
	}

	r = sample("big", lookup.SampleOptions{Size: 100})
	if !strings.HasPrefix(r.Method, "TABLESAMPLE SYSTEM (") || r.Sampled == 0 || r.Sampled > 400 {
		t.Errorf("big: method %q, %d sampled; want TABLESAMPLE SYSTEM, 1 to 400 values", r.Method, r.Sampled)
	}
	if r.NeverTotal() != 0 || r.ForeignValues != 0 || len(r.Countries) != 1 || r.Countries[0].Region != "KR" {
		t.Errorf("big: never %v, foreign %d, countries %v; want only KR numbers", r.Never, r.ForeignValues, r.Countries)
	}

	if r := sample("view", lookup.SampleOptions{}); r.Sampled != 16 || r.Column != "mobile" || r.Method != "LIMIT 2000" {
		t.Errorf("view: %d sampled of column %q by %q, want 16 of mobile by LIMIT 2000", r.Sampled, r.Column, r.Method)
	}

	// Without a default_region only values with their own country code read.
	r = sample("noregion", lookup.SampleOptions{})
	if r.Region != "none" || r.Never[phone.ProblemNotNumber] == 0 {
		t.Errorf("noregion: region %q, never %v; want none, national values not numbers", r.Region, r.Never)
	}

	start := time.Now()
	r = sample("slow", lookup.SampleOptions{Timeout: 200 * time.Millisecond})
	if !r.TimedOut || !strings.Contains(r.Lines()[0], "cut short by the time limit") {
		t.Errorf("slow: timed out %v, report %q; want cut short", r.TimedOut, r.Lines())
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("slow: SampleData took %s with a 200ms limit", took)
	}
}

// phoneKeyStandIn defines custinfo.phone_key when the migrations have not,
// so the index advice can be checked; its body does not matter here.
const phoneKeyStandIn = `
DO $$ BEGIN
  IF to_regprocedure('custinfo.phone_key(text)') IS NULL THEN
    CREATE FUNCTION custinfo.phone_key(v text) RETURNS text IMMUTABLE LANGUAGE sql
      AS 'SELECT regexp_replace(v, ''[^0-9+]'', '''', ''g'')';
  END IF;
END $$;
`

func TestPhoneKeyIndexLines(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, sampleFixture+phoneKeyStandIn)
	ctx := context.Background()
	lines := func(name string) string {
		t.Helper()
		out, err := get(t, snap, name).PhoneKeyIndexLines(ctx, pool)
		if err != nil {
			t.Fatalf("PhoneKeyIndexLines(%s) = %v", name, err)
		}
		return strings.Join(out, "\n")
	}
	want := `warning: param "callNum": no index on custinfo.phone_key("phone"): every lookup reads "crm"."people" in full. ` +
		`Run: CREATE INDEX CONCURRENTLY "people_phone_phone_key_idx" ON "crm"."people" (custinfo.phone_key("phone"));`
	if got := lines("people"); got != want {
		t.Errorf("people without the index:\n got %s\nwant %s", got, want)
	}
	if got := lines("view"); !strings.Contains(got, `ON "crm"."people" (custinfo.phone_key("phone")); ("crm"."people_view" is a view; the index belongs on its table)`) {
		t.Errorf("view without the index: %s", got)
	}
	// The statement printed is the one to run: with it, the index serves.
	stmt := want[strings.Index(want, "CREATE INDEX"):]
	if _, err := pool.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
	for _, name := range []string{"people", "view"} {
		if got := lines(name); got != `index: param "callNum": an index on custinfo.phone_key("phone") serves the match` &&
			got != `index: param "callNum": an index on custinfo.phone_key("mobile") serves the match` {
			t.Errorf("%s with the index: %s", name, got)
		}
	}
}
