package phone

import (
	"strings"
	"testing"
)

func TestMask(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "KR national formatted", in: "010-1234-5678", want: "010****5678"},
		{name: "KR national digits", in: "01012345678", want: "010****5678"},
		{name: "E.164 keeps plus", in: "+821012345678", want: "+821*****5678"},
		{name: "plus after spaces", in: "  +82 10 1234 5678", want: "+821*****5678"},
		{name: "US formatted", in: "(415) 555-2671", want: "415***2671"},
		{name: "eight digits", in: "12345678", want: "123*5678"},
		{name: "seven digits", in: "312-3456", want: "*****56"},
		{name: "four digits", in: "1234", want: "**34"},
		{name: "three digits", in: "123", want: "***"},
		{name: "one digit", in: "7", want: "*"},
		{name: "no digits", in: "abc", want: ""},
		{name: "empty", in: "", want: ""},
		{name: "other characters dropped", in: "' OR 1=1 -- 010-1234-5678", want: "110******5678"},
		{name: "invalid UTF-8 dropped", in: "\xff010\x001234\xfe5678", want: "010****5678"},
		{name: "long value capped", in: strings.Repeat("1234567890", 10), want: "123" + strings.Repeat("*", 16) + "7890"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzMask(f *testing.F) {
	f.Add("010-1234-5678")
	f.Add("+821012345678")
	f.Add("12")
	f.Fuzz(func(t *testing.T, s string) {
		got := Mask(s)
		d := Digits(s)
		if d != "" && strings.Contains(got, d) {
			t.Errorf("Mask(%q) = %q, contains all digits %q", s, got, d)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; (c < '0' || c > '9') && c != '*' && !(c == '+' && i == 0) {
				t.Fatalf("Mask(%q) = %q, has byte %q", s, got, c)
			}
		}
	})
}
