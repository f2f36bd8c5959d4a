package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/lookup"
)

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `""`},
		{"ASCII", "Hong Gildong", `"Hong Gildong"`},
		{"Korean kept as UTF-8", "홍길동", `"홍길동"`},
		{"emoji kept as UTF-8", "☎😀", `"☎😀"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"short escapes", "a\nb\rc\td", `"a\nb\rc\td"`},
		{"other control characters", "\x00\x01\x08\x0c\x1f\x7f", `"\u0000\u0001\u0008\u000c\u001f` + "\x7f" + `"`},
		{"HTML-sensitive", "<b>&amp;</b>", `"\u003cb\u003e\u0026amp;\u003c/b\u003e"`},
		{"line and paragraph separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"invalid byte", "a\xffb", `"a\ufffdb"`},
		{"truncated multi-byte", "홍\xea\xb8", `"홍\ufffd\ufffd"`},
		{"overlong encoding", "\xc0\xaf", `"\ufffd\ufffd"`},
		{"surrogate half as UTF-8", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"forward slash not escaped", "a/b", `"a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(appendString([]byte("prefix:"), tt.in))
			if got != "prefix:"+tt.want {
				t.Errorf("appendString(%q) = %s, want %s", tt.in, got, "prefix:"+tt.want)
			}
			checkJSONString(t, tt.in, []byte(got[len("prefix:"):]))
		})
	}
}

// checkJSONString checks that out is a JSON string that decodes to in (each
// invalid byte as U+FFFD), is valid UTF-8, and is safe to embed in HTML.
func checkJSONString(t *testing.T, in string, out []byte) {
	t.Helper()
	if !utf8.Valid(out) {
		t.Errorf("appendString(%q) = %q, not valid UTF-8", in, out)
	}
	var back string
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("appendString(%q) = %s, not a JSON string: %v", in, out, err)
	}
	if want := perByteReplacement(in); back != want {
		t.Errorf("appendString(%q) decodes to %q, want %q", in, back, want)
	}
	if strings.ContainsAny(string(out), "<>&\u2028\u2029") {
		t.Errorf("appendString(%q) = %s, has characters unsafe in HTML or JavaScript", in, out)
	}
	for _, c := range out {
		if c < 0x20 {
			t.Errorf("appendString(%q) = %q, has a raw control byte %#x", in, out, c)
		}
	}
}

// perByteReplacement replaces every byte of s that is not part of valid
// UTF-8 with U+FFFD, as ranging over a string does.
func perByteReplacement(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestAppendStringAllBytes(t *testing.T) {
	t.Parallel()
	// Every single byte, every pair of bytes after a lead byte, and runes
	// at the encoding boundaries.
	var in []string
	for c := range 256 {
		in = append(in, string([]byte{byte(c)}), "x"+string([]byte{byte(c)})+"y")
	}
	for lead := 0xc0; lead <= 0xff; lead++ {
		for c := 0x70; c <= 0xc0; c++ {
			in = append(in, string([]byte{byte(lead), byte(c)}), string([]byte{byte(lead), byte(c), 0x80, 0x80}))
		}
	}
	for _, r := range []rune{0x7f, 0x80, 0x7ff, 0x800, 0xfffd, 0xffff, 0x10000, 0x10ffff, 0x2027, 0x202a} {
		in = append(in, string(r))
	}
	for _, s := range in {
		checkJSONString(t, s, appendString(nil, s))
	}
}

func TestAppendData(t *testing.T) {
	t.Parallel()
	fields := []lookup.Field{
		{Name: "userName", Value: "홍길동"},
		{Name: "id", Value: "C-1001"},
		{Name: "email", Value: ""},
		{Name: "note", Value: "<\"quoted\">\n\xff"},
		{Name: "이름", Value: "김"},
	}
	got := string(appendData(nil, fields))
	want := `{"data":{"userName":"홍길동","id":"C-1001","email":"","note":"\u003c\"quoted\"\u003e\n\ufffd","이름":"김"}}` + "\n"
	if got != want {
		t.Errorf("appendData = %s, want %s", got, want)
	}
	var v struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(got), &v); err != nil || len(v.Data) != len(fields) {
		t.Errorf("appendData = %s: decodes to %v, %v; want %d string members", got, v.Data, err, len(fields))
	}
	if got := string(appendData(nil, nil)); got != `{"data":{}}`+"\n" {
		t.Errorf("appendData(nil) = %q, want {\"data\":{}}", got)
	}
}

func TestAppendErrorEnvelope(t *testing.T) {
	t.Parallel()
	e := apiError{Status: 400, Code: CodeInvalidTimestamp, Message: "Invalid request",
		Detail: "timestamp \"x\\y\" is not digits only; <server>\x00\xff"}
	got := string(appendErrorEnvelope(nil, e))
	want := `{"error":{"code":"invalid_timestamp","message":"Invalid request","detail":"timestamp \"x\\y\" is not digits only; \u003cserver\u003e\u0000\ufffd"}}` + "\n"
	if got != want {
		t.Errorf("appendErrorEnvelope = %s, want %s", got, want)
	}
	var v map[string]map[string]string
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Fatalf("appendErrorEnvelope = %s: %v", got, err)
	}
	if len(v) != 1 || len(v["error"]) != 3 || v["error"]["code"] != e.Code || v["error"]["message"] != e.Message {
		t.Errorf("appendErrorEnvelope = %s, decodes to %v", got, v)
	}
}

// TestResolveEnvelopes checks that every error the handler can
// return resolves to a status and a code the README documents, with the
// message of its status, and that the envelope is valid JSON.
func TestResolveEnvelopes(t *testing.T) {
	t.Parallel()
	errs := []error{
		&bodyError{"x"}, &deniedError{"x"}, &tooLargeError{Limit: 1}, &timeoutError{After: "1s", Err: errInTest},
		&lookup.InputError{Field: "callNum", Reason: "is required"}, &lookup.InputError{Reason: "x"},
		&lookup.BrokenError{Lookup: "l", Problems: []string{"p"}}, &lookup.QueryError{Lookup: "l", Err: errInTest},
		lookup.ErrNoMatch, errInTest, nil,
	}
	codes := map[string]bool{CodeInvalidTimestamp: true, CodeInvalidBody: true, CodeMissingField: true,
		CodeInvalidField: true, CodeAccessDenied: true, CodeNoData: true, CodeNotFound: true,
		CodeMethodNotAllowed: true, CodeBodyTooLarge: true, CodeLookupMisconfigured: true,
		CodeDatabaseTimeout: true, CodeDatabaseError: true, CodeInternal: true}
	for _, err := range errs {
		ae := resolve(err)
		if !codes[ae.Code] || ae.Message == "" || ae.Detail == "" || ae.Status < 400 {
			t.Errorf("resolve(%v) = %+v, want a known code, a message and a detail", err, ae)
		}
		var v map[string]map[string]string
		if jerr := json.Unmarshal(appendErrorEnvelope(nil, ae), &v); jerr != nil {
			t.Errorf("envelope of %v: %v", err, jerr)
		}
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errInTest = testError("boom")
