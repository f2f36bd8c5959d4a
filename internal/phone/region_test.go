package phone

import (
	"errors"
	"testing"
)

func TestParseRegion(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "ISO upper", in: "KR", want: "KR"},
		{name: "ISO lower", in: "kr", want: "KR"},
		{name: "ISO mixed with spaces", in: " Kr ", want: "KR"},
		{name: "calling code", in: "82", want: "KR"},
		{name: "calling code with plus", in: "+82", want: "KR"},
		{name: "calling code with spaces", in: " 82 ", want: "KR"},
		{name: "NANPA main region", in: "1", want: "US"},
		{name: "44 main region", in: "44", want: "GB"},
		{name: "7 main region", in: "+7", want: "RU"},
		{name: "three-digit calling code", in: "380", want: "UA"},
		{name: "UK alias", in: "uk", want: "GB"},
		{name: "empty", in: "", want: ""},
		{name: "blank", in: "  ", want: ""},
		{name: "unknown ISO", in: "XX", wantErr: true},
		{name: "ZZ", in: "ZZ", wantErr: true},
		{name: "unknown calling code", in: "999", wantErr: true},
		{name: "calling code zero", in: "0", wantErr: true},
		{name: "leading zero", in: "082", wantErr: true},
		{name: "four digits", in: "8200", wantErr: true},
		{name: "non-geographic", in: "800", wantErr: true},
		{name: "001 world", in: "001", wantErr: true},
		{name: "plus only", in: "+", wantErr: true},
		{name: "three letters", in: "KOR", wantErr: true},
		{name: "name", in: "Korea", wantErr: true},
		{name: "non-ASCII", in: "ＫＲ", wantErr: true},
		{name: "SQL", in: "' OR 1=1 --", wantErr: true},
		{name: "NUL", in: "K\x00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRegion(tt.in)
			if tt.wantErr {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("ParseRegion(%q) = %q, %v; want *Error", tt.in, got, err)
				}
				if got != "" {
					t.Errorf("ParseRegion(%q) = %q, want \"\" with error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseRegion(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseRegionErrorTruncates(t *testing.T) {
	_, err := ParseRegion("0123456789012345")
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("ParseRegion(long) error = %v, want *Error", err)
	}
	if got, want := pe.Reason, `unknown region or calling code "01234567…"`; got != want {
		t.Errorf("ParseRegion(long) Reason = %q, want %q", got, want)
	}
}
