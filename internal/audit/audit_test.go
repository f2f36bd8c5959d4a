package audit

import (
	"strings"
	"testing"
	"unicode/utf8"
)

const testKey = "audit-test-key-0123456789"

// Known answers, computed with:
//
//	printf '+821012345678' | openssl dgst -sha256 -hmac 'audit-test-key-0123456789'
//	printf 'C-1001' | openssl dgst -sha256 -hmac 'audit-test-key-0123456789'
const (
	hashKRMobile = "29feab4e537a69bb1a2a83951838f77f4a116c70292a1f3a5f46d26c185eadda"
	hashC1001    = "7e8b8587eac62ec9395291c46aec6e447bf966a51ee290f95ba2bdc83671a99c"
)

func TestHashQuery(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		value  string
		region string
		want   string
	}{
		{name: "KR national formatted", key: testKey, value: "010-1234-5678", region: "KR", want: hashKRMobile},
		{name: "KR national digits", key: testKey, value: "01012345678", region: "KR", want: hashKRMobile},
		{name: "E.164", key: testKey, value: "+821012345678", region: "KR", want: hashKRMobile},
		{name: "international formatted", key: testKey, value: " +82 10 1234 5678 ", region: "KR", want: hashKRMobile},
		{name: "international digits without plus", key: testKey, value: "821012345678", region: "KR", want: hashKRMobile},
		{name: "E.164 under another region", key: testKey, value: "+82-10-1234-5678", region: "US", want: hashKRMobile},
		{name: "calling code as region", key: testKey, value: "010 1234 5678", region: "82", want: hashKRMobile},
		{name: "empty region reads KR", key: testKey, value: "010.1234.5678", region: "", want: hashKRMobile},
		{name: "not a number is trimmed", key: testKey, value: "  C-1001\t", region: "KR", want: hashC1001},
		{name: "no key, no hash", key: "", value: "010-1234-5678", region: "KR", want: ""},
		{name: "empty value, no hash", key: testKey, value: "", region: "KR", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := HashQuery(tt.key, tt.value, tt.region); got != tt.want {
				t.Errorf("HashQuery(key, %q, %q) = %q, want %q", tt.value, tt.region, got, tt.want)
			}
		})
	}
}

func TestHashDiffers(t *testing.T) {
	base := HashQuery(testKey, "010-1234-5678", "KR")
	tests := []struct {
		name         string
		key, value   string
		region       string
		wantSameBase bool
	}{
		{name: "other number", key: testKey, value: "010-1234-5679", region: "KR"},
		{name: "other key", key: testKey + "x", value: "010-1234-5678", region: "KR"},
		{name: "same number, other spelling", key: testKey, value: "+82 10-1234-5678", region: "KR", wantSameBase: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := HashQuery(tt.key, tt.value, tt.region)
			if (got == base) != tt.wantSameBase {
				t.Errorf("HashQuery(%q) == HashQuery(\"010-1234-5678\") is %v, want %v", tt.value, got == base, tt.wantSameBase)
			}
		})
	}
}

func TestHasherQuery(t *testing.T) {
	tests := []struct {
		name       string
		key, value string
		normalized string
		wantMasked string
		wantHash   string
	}{
		{name: "keyed", key: testKey, value: "010-1234-5678", wantMasked: "010****5678", wantHash: hashKRMobile},
		{name: "keyed, normalized by the lookup", key: testKey, value: "010-1234-5678", normalized: "+821012345678", wantMasked: "010****5678", wantHash: hashKRMobile},
		// The lookup read the number in its request's region; the Hasher's
		// region (KR) would read these digits as another number.
		{name: "normalized in another region", key: testKey, value: "(415) 555-2671", normalized: "+14155552671", wantMasked: "415***2671", wantHash: HashQuery(testKey, "+14155552671", "")},
		{name: "unkeyed", key: "", value: "010-1234-5678", wantMasked: "010****5678", wantHash: ""},
		{name: "unkeyed, normalized", key: "", value: "010-1234-5678", normalized: "+821012345678", wantMasked: "010****5678", wantHash: ""},
		{name: "empty value", key: testKey, value: "", wantMasked: "", wantHash: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := NewHasher(tt.key, "KR")
			masked, hash := h.Query(tt.value, tt.normalized)
			if masked != tt.wantMasked || hash != tt.wantHash {
				t.Errorf("Query(%q, %q) = %q, %q, want %q, %q", tt.value, tt.normalized, masked, hash, tt.wantMasked, tt.wantHash)
			}
			if h.Keyed() != (tt.key != "") {
				t.Errorf("Keyed() = %v, want %v", h.Keyed(), tt.key != "")
			}
		})
	}
}

func TestEntryClean(t *testing.T) {
	tests := []struct {
		name   string
		lookup string
		want   string
	}{
		{name: "plain name kept", lookup: "customer", want: "customer"},
		{name: "korean kept", lookup: "고객", want: "고객"},
		{name: "invalid UTF-8 replaced", lookup: "cust\xffomer", want: "cust\uFFFDomer"},
		{name: "NUL removed", lookup: "cust\x00omer", want: "customer"},
		{name: "long name cut", lookup: strings.Repeat("a", 300), want: strings.Repeat("a", maxLookupLen)},
		{name: "cut on a rune boundary", lookup: "a" + strings.Repeat("고", 100), want: "a" + strings.Repeat("고", 42)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := Entry{Lookup: tt.lookup}
			e.clean()
			if e.Lookup != tt.want {
				t.Errorf("clean(%q) = %q, want %q", tt.lookup, e.Lookup, tt.want)
			}
			if !utf8.ValidString(e.Lookup) {
				t.Errorf("clean(%q) = %q, not valid UTF-8", tt.lookup, e.Lookup)
			}
		})
	}
}
