package phone

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nyaruka/phonenumbers"
)

// spellingsCases is the matching matrix: every input, with every region
// spelling, must produce exactly want. Inputs starting with '+' (after an
// optional "tel:") are also tried with region "".
var spellingsCases = []struct {
	name    string
	regions []string
	inputs  []string
	want    []string
}{
	{
		name:    "KR mobile",
		regions: []string{"KR", "kr", "82", "+82", " 82 "},
		inputs: []string{
			"+821012345678", "+82 10 1234 5678", "+82 10-1234-5678", "+82-10-1234-5678", "tel:+82-10-1234-5678",
			"+82 010-1234-5678", "+82 (0)10 1234 5678", "010-1234-5678", "01012345678", " 010.1234.5678 ",
			"010 1234 5678", "(010) 1234-5678", "821012345678", "82 10 1234 5678", "1012345678", "0082 10 1234 5678",
			"010-1234-5678\n", "010\u00a01234\u00a05678",
		},
		want: []string{
			"+821012345678", "821012345678", "01012345678", "010-1234-5678", "+82 10-1234-5678",
			"1012345678", "010 1234 5678", "+82 10 1234 5678", "+82-10-1234-5678", "010.1234.5678",
		},
	},
	{
		name:    "KR Seoul landline",
		regions: []string{"KR", "kr", "82", "+82"},
		inputs: []string{
			"+8223123456", "+82 2 312 3456", "+82 2-312-3456", "(02) 312-3456", "02-312-3456", "023123456",
			"8223123456", "23123456", "0082-2-312-3456",
		},
		want: []string{
			"+8223123456", "8223123456", "023123456", "02-312-3456", "+82 2-312-3456",
			"23123456", "02 312 3456", "+82 2 312 3456", "+82-2-312-3456", "02.312.3456",
		},
	},
	{
		name:    "US",
		regions: []string{"US", "us", "1", "+1"},
		inputs: []string{
			"+14155552671", "+1 (415) 555-2671", "+1 415-555-2671", "+1-415-555-2671", "tel:+1-415-555-2671",
			"(415) 555-2671", "415-555-2671", "415.555.2671", "4155552671", "14155552671", "1-415-555-2671",
			"1 (415) 555-2671", "011 1 415 555 2671",
		},
		want: []string{
			"+14155552671", "14155552671", "4155552671", "(415) 555-2671", "+1 415-555-2671",
			"415 555 2671", "415-555-2671", "+1 415 555 2671", "+1-415-555-2671", "415.555.2671",
		},
	},
	{
		name:    "GB London landline",
		regions: []string{"GB", "gb", "UK", "44", "+44"},
		inputs: []string{
			"+442079460018", "+44 20 7946 0018", "+44 (0)20 7946 0018", "+44-20-7946-0018", "020 7946 0018",
			"02079460018", "(020) 7946 0018", "442079460018", "2079460018", "0044 20 7946 0018",
		},
		want: []string{
			"+442079460018", "442079460018", "02079460018", "020 7946 0018", "+44 20 7946 0018",
			"2079460018", "020-7946-0018", "+44-20-7946-0018", "020.7946.0018",
		},
	},
	{
		name:    "GB mobile",
		regions: []string{"GB", "44", "+44"},
		inputs:  []string{"+447911123456", "+44 7911 123456", "07911 123456", "07911123456", "447911123456", "7911 123456"},
		want: []string{
			"+447911123456", "447911123456", "07911123456", "07911 123456", "+44 7911 123456",
			"7911123456", "07911-123456", "+44-7911-123456", "07911.123456",
		},
	},
	{
		name:    "JP mobile",
		regions: []string{"JP", "jp", "81", "+81"},
		inputs:  []string{"+819012345678", "+81 90-1234-5678", "090-1234-5678", "09012345678", "819012345678", "9012345678"},
		want: []string{
			"+819012345678", "819012345678", "09012345678", "090-1234-5678", "+81 90-1234-5678",
			"9012345678", "090 1234 5678", "+81 90 1234 5678", "+81-90-1234-5678", "090.1234.5678",
		},
	},
	{
		name:    "DE Berlin landline",
		regions: []string{"DE", "de", "49", "+49"},
		inputs:  []string{"+49 30 1234567", "+49 (0)30 1234567", "030 1234567", "030/1234567", "0301234567", "49301234567"},
		want: []string{
			"+49301234567", "49301234567", "0301234567", "030 1234567", "+49 30 1234567",
			"301234567", "030-1234567", "+49-30-1234567", "030.1234567",
		},
	},
}

func TestSpellingsMatrix(t *testing.T) {
	for _, tt := range spellingsCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Every spelling Spellings produces must itself map back to the same set.
			inputs := append(append([]string(nil), tt.inputs...), tt.want...)
			for _, in := range inputs {
				regions := tt.regions
				if strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(in), "tel:"), "+") {
					regions = append(append([]string(nil), regions...), "")
				}
				for _, region := range regions {
					got, err := Spellings(in, region)
					if err != nil {
						t.Errorf("Spellings(%q, %q) error = %v, want nil", in, region, err)
						continue
					}
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("Spellings(%q, %q) mismatch (-want +got):\n%s", in, region, diff)
					}
				}
			}
		})
	}
}

func TestSpellingsOtherCases(t *testing.T) {
	tests := []struct {
		name   string
		number string
		region string
		want   []string
	}{
		{
			name:   "plus number wins over a different region",
			number: "+1 415 555 2671",
			region: "KR",
			want: []string{
				"+14155552671", "14155552671", "4155552671", "(415) 555-2671", "+1 415-555-2671",
				"415 555 2671", "415-555-2671", "+1 415 555 2671", "+1-415-555-2671", "415.555.2671",
			},
		},
		{
			name:   "international digits without region",
			number: "821012345678",
			want: []string{
				"+821012345678", "821012345678", "01012345678", "010-1234-5678", "+82 10-1234-5678",
				"1012345678", "010 1234 5678", "+82 10 1234 5678", "+82-10-1234-5678", "010.1234.5678",
			},
		},
		{
			name:   "00 prefix without region",
			number: "00 44 20 7946 0018",
			want: []string{
				"+442079460018", "442079460018", "02079460018", "020 7946 0018", "+44 20 7946 0018",
				"2079460018", "020-7946-0018", "+44-20-7946-0018", "020.7946.0018",
			},
		},
		{
			name:   "US IDD 011 to KR",
			number: "011 82 10 1234 5678",
			region: "US",
			want: []string{
				"+821012345678", "821012345678", "01012345678", "010-1234-5678", "+82 10-1234-5678",
				"1012345678", "010 1234 5678", "+82 10 1234 5678", "+82-10-1234-5678", "010.1234.5678",
			},
		},
		{
			name:   "non-geographic number has no national spellings",
			number: "+800 1234 5678",
			want:   []string{"+80012345678", "80012345678", "+800 1234 5678", "+800-1234-5678"},
		},
		{
			name:   "possible but not valid number gets the forms that read back",
			number: "010-1234-5678-9999",
			region: "KR",
			want:   []string{"+8210123456789999", "8210123456789999", "10123456789999", "+82 10123456789999", "+82-10123456789999"},
		},
		{
			name:   "KR mobile in a block the metadata does not know keeps its national forms",
			number: "010-5970-1234",
			region: "KR",
			want: []string{"+821059701234", "821059701234", "01059701234", "010-5970-1234", "+82 10-5970-1234", "1059701234",
				"010 5970 1234", "+82 10 5970 1234", "+82-10-5970-1234", "010.5970.1234"},
		},
		{
			name:   "DE international digits left out when they are also a national number",
			number: "0201 000",
			region: "DE",
			want: []string{
				"+49201000", "0201000", "0201 000", "+49 201 000", "201000", "0201-000", "+49-201-000", "0201.000",
			},
		},
		{
			name:   "AR mobile national format does not parse back, so national forms are left out",
			number: "+54 9 11 2345-6789",
			want: []string{
				"+5491123456789", "5491123456789", "+54 9 11 2345-6789", "91123456789", "+54 9 11 2345 6789", "+54-9-11-2345-6789",
			},
		},
		{
			name:   "Italian leading zero kept",
			number: "+39 06 1234 5678",
			region: "IT",
			want: []string{
				"+390612345678", "390612345678", "0612345678", "06 1234 5678", "+39 06 1234 5678",
				"06-1234-5678", "+39-06-1234-5678", "06.1234.5678",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Spellings(tt.number, tt.region)
			if err != nil {
				t.Fatalf("Spellings(%q, %q) error = %v, want nil", tt.number, tt.region, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Spellings(%q, %q) mismatch (-want +got):\n%s", tt.number, tt.region, diff)
			}
		})
	}
}

func TestSpellingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		number string
		region string
	}{
		{name: "empty", number: "", region: "KR"},
		{name: "blank", number: " \t ", region: "KR"},
		{name: "letters", number: "abc", region: "KR"},
		{name: "vanity letters", number: "1-800-FLOWERS", region: "US"},
		{name: "three digits", number: "123", region: "KR"},
		{name: "40 digits", number: strings.Repeat("1234567890", 4), region: "KR"},
		{name: "unknown calling code", number: "+999 123"},
		{name: "unknown calling code longer", number: "+999 1234 5678"},
		{name: "SQL metacharacters", number: "' OR 1=1 --", region: "KR"},
		{name: "SQL after digits", number: "010-1234-5678'; DROP TABLE customers; --", region: "KR"},
		{name: "NUL byte", number: "010-1234\x00-5678", region: "KR"},
		{name: "invalid UTF-8", number: "010-1234-\xff\xfe5678", region: "KR"},
		{name: "full-width digits", number: "０１０１２３４５６７８", region: "KR"},
		{name: "very long", number: strings.Repeat("0", 10000), region: "KR"},
		{name: "65 characters", number: "010-1234-5678" + strings.Repeat(" ", 52), region: "KR"},
		{name: "plus in the middle", number: "010+12345678", region: "KR"},
		{name: "two plus signs", number: "++821012345678"},
		{name: "only plus", number: "+"},
		{name: "extension", number: "010-1234-5678 ext. 12", region: "KR"},
		{name: "hash", number: "010-1234-5678#12", region: "KR"},
		{name: "national without region", number: "01012345678"},
		{name: "local number without area code", number: "312-3456", region: "KR"},
		{name: "too long for US", number: "415-555-2671-99", region: "US"},
		{name: "unknown region", number: "010-1234-5678", region: "XX"},
		{name: "unknown calling code as region", number: "010-1234-5678", region: "999"},
		{name: "non-geographic calling code as region", number: "1234 5678", region: "800"},
		{name: "tel URI with parameters", number: "tel:+82-10-1234-5678;ext=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Spellings(tt.number, tt.region)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Spellings(%q, %q) = %q, %v; want *Error", tt.number, tt.region, got, err)
			}
			if got != nil {
				t.Errorf("Spellings(%q, %q) = %q, want nil with error", tt.number, tt.region, got)
			}
			if pe.Reason == "" {
				t.Errorf("Spellings(%q, %q) error Reason is empty", tt.number, tt.region)
			}
			if d := Digits(tt.number); len(d) >= 5 && strings.Contains(Digits(pe.Reason), d) {
				t.Errorf("Spellings(%q, %q) error Reason %q echoes the number", tt.number, tt.region, pe.Reason)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := error(&Error{Reason: "number has no digits"})
	if got, want := err.Error(), "phone: number has no digits"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// benchNumbers are the inputs of the phone benchmarks: what the helpdesk
// sends, and one value that is no number.
var benchNumbers = []struct{ name, number, region string }{
	{"KR national", "010-1234-5678", "KR"},
	{"KR E.164", "+821012345678", ""},
	{"KR international digits", "821012345678", "82"},
	{"US formatted", "+1 (415) 555-2671", ""},
	{"GB national", "020 7946 0018", "GB"},
	{"invalid", "' OR 1=1 --", "KR"},
}

func BenchmarkSpellings(b *testing.B) {
	for _, c := range benchNumbers {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = Spellings(c.number, c.region)
			}
		})
	}
}

func FuzzSpellings(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzSpellings so plain `go test` runs them.
	f.Fuzz(func(t *testing.T, number, region string) {
		got, err := Spellings(number, region)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Spellings(%q, %q) error = %T %v, want *Error", number, region, err, err)
			}
			if got != nil {
				t.Fatalf("Spellings(%q, %q) = %q with error %v, want nil", number, region, got, err)
			}
			return
		}
		if len(got) == 0 || len(got) > 11 || !strings.HasPrefix(got[0], "+") {
			t.Fatalf("Spellings(%q, %q) = %q, want 1 to 11 spellings, E.164 first", number, region, got)
		}
		n, err := phonenumbers.Parse(got[0], "")
		if err != nil {
			t.Fatalf("phonenumbers.Parse(%q) error = %v, want nil", got[0], err)
		}
		// National spellings are read in the number's own country.
		home, err := ParseRegion(strconv.Itoa(int(n.GetCountryCode())))
		if err != nil {
			home = ""
		}
		seen := map[string]bool{}
		for _, s := range got {
			if seen[s] {
				t.Errorf("Spellings(%q, %q) = %q, has %q twice", number, region, got, s)
			}
			seen[s] = true
			again, err := Spellings(s, home)
			if err != nil {
				t.Errorf("Spellings(%q, %q) error = %v, want nil (spelling of %q)", s, home, err, got[0])
				continue
			}
			if again[0] != got[0] {
				t.Errorf("Spellings(%q, %q)[0] = %q, want %q (spelling of %q with region %q)", s, home, again[0], got[0], number, region)
			}
		}
	})
}
