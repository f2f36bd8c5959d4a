package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// countingReader serves r and counts the bytes it handed out.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadBody(t *testing.T) {
	t.Parallel()
	const limit = 64
	tests := []struct {
		name          string
		body          string
		contentLength int64 // -1: unknown (chunked)
		wantTooLarge  bool
		wantMaxRead   int64
	}{
		{"empty", "", 0, false, 0},
		{"small, declared", "{}", 2, false, 2},
		{"small, chunked", "{}", -1, false, 2},
		{"exactly the limit, declared", strings.Repeat("a", limit), limit, false, limit},
		{"exactly the limit, chunked", strings.Repeat("a", limit), -1, false, limit},
		{"one over, declared", strings.Repeat("a", limit+1), limit + 1, true, 0},
		{"one over, chunked", strings.Repeat("a", limit+1), -1, true, limit + 1},
		{"far over, chunked", strings.Repeat("a", 100*limit), -1, true, limit + 1},
		{"declared huge, nothing sent", "", 1 << 40, true, 0},
		{"declared small, more sent", strings.Repeat("a", 10*limit), 10, false, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cr := &countingReader{r: strings.NewReader(tt.body)}
			req := httptest.NewRequest(http.MethodPost, "/v1/lookups/x", nil)
			req.ContentLength = tt.contentLength
			req.Body = io.NopCloser(cr)
			if tt.contentLength >= 0 {
				// As net/http does: the body ends at Content-Length.
				req.Body = io.NopCloser(io.LimitReader(cr, tt.contentLength))
			}
			got, err := readBody(req, limit)
			var tl *tooLargeError
			if tt.wantTooLarge {
				if !errors.As(err, &tl) || tl.Limit != limit {
					t.Errorf("readBody = %q, %v; want *tooLargeError{Limit: %d}", got, err, limit)
				}
			} else {
				want := tt.body
				if tt.contentLength >= 0 && int64(len(want)) > tt.contentLength {
					want = want[:tt.contentLength]
				}
				if err != nil || string(got) != want {
					t.Errorf("readBody = %q, %v; want %q, nil", got, err, want)
				}
			}
			if cr.n > tt.wantMaxRead {
				t.Errorf("readBody read %d bytes, want at most %d", cr.n, tt.wantMaxRead)
			}
		})
	}
}

func TestReadBodyError(t *testing.T) {
	t.Parallel()
	boom := errors.New("connection reset")
	req := httptest.NewRequest(http.MethodPost, "/v1/lookups/x", nil)
	req.ContentLength = -1
	req.Body = io.NopCloser(&failingReader{data: []byte(`{"callNum":`), err: boom})
	_, err := readBody(req, 64)
	if !errors.Is(err, boom) {
		t.Errorf("readBody error = %v, want it to wrap %v", err, boom)
	}
	var tl *tooLargeError
	if errors.As(err, &tl) {
		t.Errorf("readBody error = %v, want not a *tooLargeError", err)
	}
}

// wantCallNum is the field set of the helpdesk's customer lookup.
func wantCallNum(k string) bool { return k == "callNum" || k == "nation" }

func TestDecodeFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    map[string]string
		wantErr string // a part of the error's detail; "" for success
	}{
		{"string", `{"callNum":"010-1234-5678"}`, map[string]string{"callNum": "010-1234-5678"}, ""},
		{"both fields", `{"callNum":"010-1234-5678","nation":"82"}`, map[string]string{"callNum": "010-1234-5678", "nation": "82"}, ""},
		{"integer", `{"callNum":1012345678,"nation":82}`, map[string]string{"callNum": "1012345678", "nation": "82"}, ""},
		{"number literal text", `{"callNum":-1.50e+3}`, map[string]string{"callNum": "-1.50e+3"}, ""},
		{"number with a leading zero", `{"callNum":01}`, nil, "not JSON"},
		{"huge number", `{"callNum":123456789012345678901234567890}`, map[string]string{"callNum": "123456789012345678901234567890"}, ""},
		{"null is empty", `{"callNum":null}`, map[string]string{"callNum": ""}, ""},
		{"escapes decoded", `{"callNum":"\u0030\u0031\u0030 \ud64d\t\"\\\/"}`, map[string]string{"callNum": "010 홍\t\"\\/"}, ""},
		{"lone surrogate becomes U+FFFD", `{"callNum":"\ud800"}`, map[string]string{"callNum": "\ufffd"}, ""},
		{"Korean", `{"callNum":"공일공"}`, map[string]string{"callNum": "공일공"}, ""},
		{"unknown fields of every kind ignored", `{"a":{"b":[1,{"c":null}]},"d":true,"e":null,"f":1e9,"callNum":"1"}`, map[string]string{"callNum": "1"}, ""},
		{"duplicate unknown field", `{"a":1,"a":{},"callNum":"1"}`, map[string]string{"callNum": "1"}, ""},
		{"no wanted field", `{"a":1}`, map[string]string{}, ""},
		{"empty object", `{}`, map[string]string{}, ""},
		{"whitespace around", " \n{ \"callNum\" : \"1\" }\r\n\t", map[string]string{"callNum": "1"}, ""},
		{"key match is exact", `{"callnum":"1","CallNum":"2"}`, map[string]string{}, ""},
		{"surrogate pairs and escapes", `{"callNum":"\ud83d\ude00\u00e9\n\/","nation":"\ud800x"}`, map[string]string{"callNum": "😀é\n/", "nation": "\ufffdx"}, ""},
		{"escaped key", `{"call\u004eum":"1"}`, map[string]string{"callNum": "1"}, ""},
		{"reversed surrogate pair", `{"callNum":"\udc00\ud800"}`, map[string]string{"callNum": "\ufffd\ufffd"}, ""},
		{"high surrogate then a plain escape", `{"callNum":"\ud800\u0041"}`, map[string]string{"callNum": "\ufffdA"}, ""},
		{"ignored values with brackets in strings", ` {"a":{"b":[1,-2.5e+3,{},[],{"c":null}],"d":"\"}"},"e":true,"f":false,"callNum":"1"} `, map[string]string{"callNum": "1"}, ""},
		{"deep ignored value", `{"a":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `,"callNum":"1"}`, map[string]string{"callNum": "1"}, ""},

		{"empty", ``, nil, "empty"},
		{"blank", " \n\t", nil, "empty"},
		{"not UTF-8", "{\"callNum\":\"\xff\"}", nil, "UTF-8"},
		{"not UTF-8 in an unknown field", "{\"a\":\"\xc0\xaf\",\"callNum\":\"1\"}", nil, "UTF-8"},
		{"array", `[]`, nil, "not a JSON object"},
		{"string", `"x"`, nil, "not a JSON object"},
		{"number", `1`, nil, "not a JSON object"},
		{"null", `null`, nil, "not a JSON object"},
		{"garbage", `callNum=1`, nil, "not JSON"},
		{"truncated", `{"callNum":"1"`, nil, "not JSON"},
		{"truncated in a string", `{"callNum":"1`, nil, "not JSON"},
		{"truncated in an unknown value", `{"a":[1,`, nil, "not JSON"},
		{"trailing comma", `{"callNum":"1",}`, nil, "not JSON"},
		{"missing colon", `{"callNum" "1"}`, nil, "not JSON"},
		{"non-string key", `{1:"1"}`, nil, "not JSON"},
		{"data after the object", `{"callNum":"1"} x`, nil, "after the JSON object"},
		{"second object", `{"callNum":"1"}{}`, nil, "after the JSON object"},
		{"duplicate wanted field", `{"callNum":"1","callNum":"2"}`, nil, `"callNum" appears more than once`},
		{"duplicate wanted field via escape", `{"callNum":"1","\u0063allNum":"2"}`, nil, `"callNum" appears more than once`},
		{"duplicate null then value", `{"callNum":null,"callNum":"2"}`, nil, "more than once"},
		{"object value", `{"callNum":{}}`, nil, "string or a number"},
		{"array value", `{"callNum":["1"]}`, nil, "string or a number"},
		{"bool value", `{"callNum":false}`, nil, "string or a number"},
		{"NUL byte", "{\"callNum\":\"1\"}\x00", nil, "after the JSON object"},
		{"raw control character in a string", "{\"callNum\":\"1\n\"}", nil, "not JSON"},
		{"too deep", `{"a":` + strings.Repeat("[", 10_001) + strings.Repeat("]", 10_001) + `}`, nil, "not JSON"},
		{"too deep in a wanted value", `{"callNum":` + strings.Repeat("[", 10_001), nil, "not JSON"},
		{"byte order mark", "\ufeff{}", nil, "not JSON"},
		{"second empty object", `{} {}`, nil, "after the JSON object"},
		{"trailing comma in an ignored field", `{"a":1,}`, nil, "not JSON"},
		{"leading zero in an ignored field", `{"a":01}`, nil, "not JSON"},
		{"bare minus", `{"a":-}`, nil, "not JSON"},
		{"dot without digits", `{"a":1.}`, nil, "not JSON"},
		{"exponent without digits", `{"a":1e+}`, nil, "not JSON"},
		{"bad escape", `{"a":"\x"}`, nil, "not JSON"},
		{"short unicode escape", `{"a":"\u12"}`, nil, "not JSON"},
		{"raw tab in a string", "{\"a\":\"\t\"}", nil, "not JSON"},
		{"unterminated array", `{"a":[1,2`, nil, "not JSON"},
		{"mismatched bracket", `{"a":[1}`, nil, "not JSON"},
		{"wanted number cut short", `{"callNum":12`, nil, "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeFields([]byte(tt.body), wantCallNum)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodeFields(%.80q) error = %v, want nil", tt.body, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("decodeFields(%.80q) mismatch (-want +got):\n%s", tt.body, diff)
				}
				return
			}
			var be *bodyError
			if !errors.As(err, &be) {
				t.Fatalf("decodeFields(%.80q) = %v, %v; want a *bodyError", tt.body, got, err)
			}
			if !strings.Contains(be.Detail, tt.wantErr) {
				t.Errorf("decodeFields(%.80q) detail = %q, want it to contain %q", tt.body, be.Detail, tt.wantErr)
			}
			if len(be.Detail) > 300 {
				t.Errorf("detail is %d bytes, want a short sentence", len(be.Detail))
			}
		})
	}
}

// FuzzDecodeFields checks decodeFields against encoding/json: it never
// panics, fails only with a *bodyError, accepts exactly the valid UTF-8 JSON
// objects whose wanted fields are strings, numbers or null and appear once,
// and returns the values encoding/json finds.
func FuzzDecodeFields(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzDecodeFields.
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeFields(body, wantCallNum)
		want, ok := decodeOracle(body)
		if err != nil {
			var be *bodyError
			if !errors.As(err, &be) {
				t.Fatalf("decodeFields(%q) error = %T %v, want a *bodyError", body, err, err)
			}
			if ok {
				t.Fatalf("decodeFields(%q) error = %v, want %v", body, err, want)
			}
			if !utf8.ValidString(be.Detail) {
				t.Fatalf("decodeFields(%q) detail %q is not UTF-8", body, be.Detail)
			}
			return
		}
		if !ok {
			t.Fatalf("decodeFields(%q) = %v, want an error", body, got)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decodeFields(%q) mismatch (-want +got):\n%s", body, diff)
		}
	})
}

// decodeOracle is what decodeFields should return, worked out with
// encoding/json's own validity check and map decoding.
func decodeOracle(body []byte) (map[string]string, bool) {
	if !utf8.Valid(body) || !json.Valid(body) {
		return nil, false
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, false // valid JSON but not an object
	}
	// Count the wanted names among the top-level members (json.Unmarshal
	// keeps the last of duplicates silently).
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil, false
	}
	count := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
		if k := tok.(string); wantCallNum(k) {
			count[k]++
		}
	}
	out := map[string]string{}
	for k, n := range count {
		if n > 1 {
			return nil, false
		}
		d := json.NewDecoder(bytes.NewReader(top[k]))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, false
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = string(v)
		case nil:
			out[k] = ""
		default:
			return nil, false
		}
	}
	return out, true
}
