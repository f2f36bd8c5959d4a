package phone

import (
	"slices"
	"strings"
	"testing"
)

func TestInspect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value, region string
		want          Inspection
	}{
		{"010-1111-0001", "KR", Inspection{E164: "+821011110001", Region: "KR", Valid: true}},
		{"(010) 1111-0007", "KR", Inspection{E164: "+821011110007", Region: "KR", Valid: true}},
		{"82-10-1111-0009", "KR", Inspection{E164: "+821011110009", Region: "KR", Valid: true}},
		{"+82 (0)10 1111 0010", "KR", Inspection{E164: "+821011110010", Region: "KR", Valid: true, International: true}},
		{"0082-10-1111-0011", "KR", Inspection{E164: "+821011110011", Region: "KR", Valid: true, International: true}},
		{"010-1111-0012 (mobile)", "KR", Inspection{E164: "+821011110012", Region: "KR", Valid: true}},
		{" 010-1111-0013 ", "KR", Inspection{E164: "+821011110013", Region: "KR", Valid: true}},
		{"０１０-１１１１-００１４", "KR", Inspection{E164: "+821011110014", Region: "KR", Valid: true}},
		{"010–1111–0015", "KR", Inspection{E164: "+821011110015", Region: "KR", Valid: true}},
		{"tel:+82-10-1111-0016", "KR", Inspection{E164: "+821011110016", Region: "KR", Valid: true, International: true}},
		{"010-1111-0025(본인)", "KR", Inspection{E164: "+821011110025", Region: "KR", Valid: true}},
		{"010 1111 0026 ext. 12", "KR", Inspection{E164: "+821011110026", Region: "KR", Valid: true}},
		{"(02) 1111-0018", "KR", Inspection{E164: "+82211110018", Region: "KR", Valid: true}},
		{"+1 (415) 555-0119", "KR", Inspection{E164: "+14155550119", Region: "US", Valid: true, International: true}},
		{"(415) 555-0119", "US", Inspection{E164: "+14155550119", Region: "US", Valid: true}},
		{"N/A", "KR", Inspection{Problem: ProblemNoDigits}},
		{"", "KR", Inspection{Problem: ProblemNoDigits}},
		{"119", "KR", Inspection{Problem: ProblemTooShort}},
		{"0101111000100010001", "KR", Inspection{Problem: ProblemTooLong}},
		{"010-1111-0001", "", Inspection{Problem: ProblemNotNumber}},
	}
	for _, tt := range tests {
		if got := Inspect(tt.value, tt.region); got != tt.want {
			t.Errorf("Inspect(%q, %q) = %+v, want %+v", tt.value, tt.region, got, tt.want)
		}
	}
}

func TestNationalElsewhere(t *testing.T) {
	t.Parallel()
	cands := []string{"KR", "US", "JP"}
	tests := []struct {
		value, region string
		want          []string
	}{
		{"090-4242-5151", "KR", []string{"JP"}},  // a JP mobile stored without +81
		{"1-212-555-0123", "KR", []string{"US"}}, // a US number without its +
		{"+1 212-555-0123", "KR", nil},           // carries its country code
		{"0081-90-4242-5151", "KR", nil},         // likewise, after 00
		{"(212) 555-0123", "US", nil},            // region itself is not tried
		{"12", "KR", nil},
	}
	for _, tt := range tests {
		got := NationalElsewhere(tt.value, tt.region, cands)
		if !slices.Equal(got, tt.want) {
			t.Errorf("NationalElsewhere(%q, %q) = %q, want %q", tt.value, tt.region, got, tt.want)
		}
	}
}

// FuzzInspect feeds Inspect what a customer table may hold: it never
// panics, a value that reads as a number has an E.164 form that reads back
// as itself, and a value that does not says why.
func FuzzInspect(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzInspect so plain `go test` runs them.
	f.Fuzz(func(t *testing.T, value, region string) {
		got := Inspect(value, region)
		if (got.E164 == "") == (got.Problem == "") {
			t.Fatalf("Inspect(%q, %q) = %+v: want a number or a problem, not both or neither", value, region, got)
		}
		if got.E164 != "" {
			again := Inspect(got.E164, "")
			if again.E164 != got.E164 || !again.International {
				t.Fatalf("Inspect(%q, %q) = %s, which reads back as %+v", value, region, got.E164, again)
			}
			if !strings.HasPrefix(got.E164, "+") || got.Region == "" {
				t.Fatalf("Inspect(%q, %q) = %+v", value, region, got)
			}
		}
		_ = NationalElsewhere(value, region, []string{"US", "JP"})
	})
}
