package httpapi

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func wantScanFields(k string) bool { return k == "callNum" || k == "nation" }

// TestScanFieldsFastPath checks that the bodies the helpdesk sends take the
// one-pass path, and that what it leaves to encoding/json is what it should.
func TestScanFieldsFastPath(t *testing.T) {
	t.Parallel()
	deep := `{"a":` + strings.Repeat("[", maxScanDepth+1) + strings.Repeat("]", maxScanDepth+1) + `,"callNum":"1"}`
	tests := []struct {
		name string
		body string
		want map[string]string // nil: left to decodeFieldsJSON
	}{
		{"helpdesk", `{"callNum":"010-1234-5678","nation":"82"}`, map[string]string{"callNum": "010-1234-5678", "nation": "82"}},
		{"numbers", `{"callNum":821012345678,"nation":82}`, map[string]string{"callNum": "821012345678", "nation": "82"}},
		{"escapes and pairs", `{"callNum":"\ud83d\ude00\u00e9\n\/","nation":"\ud800x"}`, map[string]string{"callNum": "😀é\n/", "nation": "\ufffdx"}},
		{"escaped key", `{"call\u004eum":"1"}`, map[string]string{"callNum": "1"}},
		{"reversed pair", `{"callNum":"\udc00\ud800"}`, map[string]string{"callNum": "\ufffd\ufffd"}},
		{"high then plain escape", `{"callNum":"\ud800\u0041"}`, map[string]string{"callNum": "\ufffdA"}},
		{"null", `{"callNum":null}`, map[string]string{"callNum": ""}},
		{"skipped values", ` {"a":{"b":[1,-2.5e+3,{},[],{"c":null}],"d":"\"}"},"e":true,"f":false,"callNum":"1"} `, map[string]string{"callNum": "1"}},
		{"empty object", `{}`, map[string]string{}},
		{"nesting at the limit", `{"a":` + strings.Repeat("[", maxScanDepth) + strings.Repeat("]", maxScanDepth) + `}`, map[string]string{}},

		{"nesting past the limit", deep, nil},
		{"duplicate", `{"callNum":"1","callNum":"2"}`, nil},
		{"bool value", `{"callNum":true}`, nil},
		{"object value", `{"callNum":{}}`, nil},
		{"trailing data", `{} {}`, nil},
		{"trailing comma", `{"a":1,}`, nil},
		{"leading zero", `{"a":01}`, nil},
		{"bare minus", `{"a":-}`, nil},
		{"dot without digits", `{"a":1.}`, nil},
		{"exponent without digits", `{"a":1e+}`, nil},
		{"bad escape", `{"a":"\x"}`, nil},
		{"short unicode escape", `{"a":"\u12"}`, nil},
		{"control character", "{\"a\":\"\t\"}", nil},
		{"unterminated", `{"a":[1,2`, nil},
		{"mismatched bracket", `{"a":[1}`, nil},
		{"not UTF-8", "{\"a\":\"\xff\"}", nil},
		{"array", `[]`, nil},
		{"empty", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := scanFields([]byte(tt.body), wantScanFields)
			if tt.want == nil {
				if ok {
					t.Errorf("scanFields(%.80q) = %v, true; want it left to decodeFieldsJSON", tt.body, got)
				}
				return
			}
			if !ok {
				t.Fatalf("scanFields(%.80q) = not ok, want %v", tt.body, tt.want)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("scanFields(%.80q) mismatch (-want +got):\n%s", tt.body, diff)
			}
			ref, err := decodeFieldsJSON([]byte(tt.body), wantScanFields)
			if err != nil || !cmp.Equal(ref, got) {
				t.Errorf("decodeFieldsJSON(%.80q) = %v, %v; want %v, nil as scanFields", tt.body, ref, err, got)
			}
		})
	}
}

// FuzzScanFields checks the one-pass decoder against encoding/json: whatever
// it accepts, decodeFieldsJSON accepts with the same values.
func FuzzScanFields(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzScanFields.
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := scanFields(body, wantScanFields)
		if !ok {
			return
		}
		want, err := decodeFieldsJSON(body, wantScanFields)
		if err != nil {
			t.Fatalf("scanFields(%q) = %v, but decodeFieldsJSON rejects it: %v", body, got, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("scanFields(%q) mismatch (-decodeFieldsJSON +scanFields):\n%s", body, diff)
		}
	})
}
