package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/signature"
)

var (
	hong = []field{{"userName", "홍길동"}, {"id", "C-1001"}, {"email", "hong@example.com"}}
	kim  = []field{{"userName", "김민준"}, {"id", "C-1002"}, {"email", ""}} // email is NULL
	lee  = []field{{"userName", "이서연"}, {"id", "C-1003"}, {"email", "lee@example.com"}}
	park = []field{{"userName", `박"따옴표"<b>&amp;`}, {"id", "C-1004"}, {"email", ""}}
	jung = []field{{"userName", "정가족 첫째"}, {"id", "C-1006"}, {"email", "family@example.com"}}
)

// TestLookupOK covers the 200 row of DESIGN §1: the signed request as the
// helpdesk sends it, in every variant the contract accepts.
func TestLookupOK(t *testing.T) {
	t.Parallel()
	f := newFixture(t, false)
	srv := serve(t, f.handler(httpapi.Config{}))

	const hongBody = `{"callNum":"010-1234-5678","nation":"82"}`
	tests := []struct {
		name string
		call call
		want []field
	}{
		{"exact match", call{body: hongBody}, hong},
		{"NULL column is an empty string", call{body: `{"callNum":"+82 10-2222-3333"}`}, kim},
		{"values needing JSON escapes", call{body: `{"callNum":"821099998888"}`}, park},
		{"several matches pick the lowest primary key", call{body: `{"callNum":"02-555-1234"}`}, jung},
		{"callNum as a JSON number", call{body: `{"callNum":821099998888,"nation":82}`}, park},
		{"JSON number on a bigint column", call{path: "/v1/lookups/customer_by_id", key: keyByID, body: `{"id":3}`}, lee},
		{"JSON string on a bigint column", call{path: "/v1/lookups/customer_by_id", key: keyByID, body: `{"id":"3"}`}, lee},
		{"phone match finds another spelling", call{path: "/v1/lookups/customer_phone", key: keyByID, body: `{"callNum":"01022223333","nation":"82"}`}, kim},
		{"phone match with E.164 input", call{path: "/v1/lookups/customer_phone", key: keyByID, body: `{"callNum":"+82 10-1234-5678"}`}, hong},
		{"unknown fields ignored whatever their value", call{body: `{"agent":"kim","ticket":12345,"extra":{"a":[1,2,{"b":null}]},"flag":true,"none":null,"callNum":"010-1234-5678"}`}, hong},
		{"null hint is ignored", call{body: `{"callNum":"010-1234-5678","nation":null}`}, hong},
		{"Korean text in the body, signed over its UTF-8 bytes", call{body: `{"callNum":"010-1234-5678","memo":"홍길동 고객님 문의 ☎"}`}, hong},
		{"\\u escapes, signed over the escaped bytes", call{body: `{"callNum":"\u0030\u0031\u0030-1234-5678","memo":"\ud64d\uae38\ub3d9 \ud83d\ude00"}`}, hong},
		{"whitespace around the object", call{body: "\r\n\t {\"callNum\" : \"010-1234-5678\" } \n"}, hong},
		{"rotation: the old key", call{body: hongBody, key: keyMain}, hong},
		{"rotation: the new key (not ASCII)", call{body: hongBody, key: keyRotated}, hong},
		{"key revoked in the future is still active", call{body: hongBody, key: keyLaterOff}, hong},
		{"uri_body key", call{body: hongBody, key: keyURIOnly, scheme: signature.SchemeURIBody}, hong},
		{"uri_body ignores the query string", call{path: "/v1/lookups/customer?trace=1", body: hongBody, key: keyURIOnly, scheme: signature.SchemeURIBody}, hong},
		{"key with both schemes, body", call{body: hongBody, key: keyBoth}, hong},
		{"key with both schemes, uri_body", call{body: hongBody, key: keyBoth, scheme: signature.SchemeURIBody}, hong},
		{"timestamp exactly 5 min in the past", call{body: hongBody, ts: ptr(f.ts(-5 * time.Minute))}, hong},
		{"timestamp exactly 5 min in the future", call{body: hongBody, ts: ptr(f.ts(5 * time.Minute))}, hong},
		{"timestamp with leading zeros", call{body: hongBody, ts: ptr("000" + f.ts(0))}, hong},
		// HTTP strips optional whitespace around a header value, so these
		// arrive as the bare values.
		{"signature and timestamp with surrounding spaces", call{body: hongBody, header: http.Header{
			"Authorization":  {" " + helpdeskSign(keyMain, signature.SchemeBody, "", []byte(hongBody), f.ts(0)) + " "},
			"X-Tc-Timestamp": {"\t" + f.ts(0) + " "},
		}}, hong},
		// Content-Type is not checked: the body is always read as JSON (the
		// helpdesk always sends JSON, and the signature covers the raw
		// bytes whatever the header says), and no form parser ever consumes it.
		{"no Content-Type", call{body: hongBody, contentType: ptr("")}, hong},
		{"Content-Type text/plain", call{body: hongBody, contentType: ptr("text/plain")}, hong},
		{"Content-Type form-urlencoded", call{body: hongBody, contentType: ptr("application/x-www-form-urlencoded")}, hong},
		{"Content-Type multipart", call{body: hongBody, contentType: ptr("multipart/form-data; boundary=x")}, hong},
		{"Content-Type with another charset", call{body: hongBody, contentType: ptr("application/json; charset=EUC-KR")}, hong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, f.request(t, srv.URL, tt.call))
			if r.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			got, err := parseData(r.body)
			if err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(field{})); diff != "" {
				t.Errorf("data mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLookupErrors covers every error row of DESIGN §1 and HTTP's own
// statuses: status, envelope, code and message, and what the detail says;
// on the same database, a broken lookup beside healthy ones and a query
// past the timeout.
func TestLookupErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	srv := serve(t, f.handler(httpapi.Config{}))
	now := f.nowMs()

	tests := []struct {
		name       string
		call       call
		wantStatus int
		wantCode   string
		detailHas  []string
	}{
		// 400: timestamps, with the server time and the window in the detail.
		{"timestamp missing", call{body: `{"callNum":"010-1234-5678"}`, noTS: true},
			400, httpapi.CodeInvalidTimestamp, []string{"missing", "server time is " + now + " ms"}},
		{"timestamp empty", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr("")},
			400, httpapi.CodeInvalidTimestamp, []string{"missing", "server time is " + now + " ms"}},
		{"timestamp not numeric", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr("yesterday")},
			400, httpapi.CodeInvalidTimestamp, []string{`"yesterday"`, "digits only", "server time is " + now + " ms"}},
		{"timestamp with a fraction", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(now + ".5")},
			400, httpapi.CodeInvalidTimestamp, []string{"fraction"}},
		{"timestamp 6 min old", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(f.ts(-6 * time.Minute))},
			400, httpapi.CodeInvalidTimestamp, []string{"360 s in the past", "server time is " + now + " ms", "allowed window ±300 s"}},
		{"timestamp 1 ms past the window", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(f.ts(-5*time.Minute - time.Millisecond))},
			400, httpapi.CodeInvalidTimestamp, []string{"300.001 s in the past", "allowed window ±300 s"}},
		{"timestamp 1 ms beyond the future window", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(f.ts(5*time.Minute + time.Millisecond))},
			400, httpapi.CodeInvalidTimestamp, []string{"300.001 s in the future", "allowed window ±300 s"}},
		{"timestamp in seconds", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(now[:len(now)-3])},
			400, httpapi.CodeInvalidTimestamp, []string{"looks like seconds", "server time is " + now + " ms"}},
		{"timestamp of 30 digits", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr(strings.Repeat("9", 30))},
			400, httpapi.CodeInvalidTimestamp, []string{"30 digits", "server time is " + now + " ms"}},
		{"timestamp negative", call{body: `{"callNum":"010-1234-5678"}`, ts: ptr("-" + now)},
			400, httpapi.CodeInvalidTimestamp, []string{"sign", "server time is " + now + " ms"}},
		{"timestamp sent twice", call{body: `{"callNum":"010-1234-5678"}`, header: http.Header{"X-Tc-Timestamp": {now, now}}},
			400, httpapi.CodeInvalidTimestamp, []string{"more than once"}},

		// 400: bodies, signed, so they get past the signature check.
		{"body empty", call{body: ``},
			400, httpapi.CodeInvalidBody, []string{"empty"}},
		{"body not JSON", call{body: `callNum=010-1234-5678`},
			400, httpapi.CodeInvalidBody, []string{"not JSON"}},
		{"body not UTF-8", call{body: "{\"callNum\":\"010-1234-5678\",\"memo\":\"\xc8\xab\xb1\xe6\xb5\xbf\"}"}, // EUC-KR
			400, httpapi.CodeInvalidBody, []string{"UTF-8"}},
		{"body truncated", call{body: `{"callNum":"010-1234-5678"`},
			400, httpapi.CodeInvalidBody, []string{"not JSON"}},
		{"required field missing", call{body: `{"nation":"82"}`},
			400, httpapi.CodeMissingField, []string{`"callNum"`, "required"}},
		{"required field empty", call{body: `{"callNum":""}`},
			400, httpapi.CodeMissingField, []string{`"callNum"`, "required"}},
		{"required field blank", call{body: `{"callNum":"  \t"}`},
			400, httpapi.CodeMissingField, []string{`"callNum"`, "required"}},
		{"required field null", call{body: `{"callNum":null}`},
			400, httpapi.CodeMissingField, []string{`"callNum"`, "required"}},
		{"field value an object", call{body: `{"callNum":{"number":"010-1234-5678"}}`},
			400, httpapi.CodeInvalidBody, []string{`"callNum"`, "string or a number"}},
		{"field value an array", call{body: `{"callNum":["010-1234-5678"]}`},
			400, httpapi.CodeInvalidBody, []string{`"callNum"`, "string or a number"}},
		{"field value a boolean", call{body: `{"callNum":true}`},
			400, httpapi.CodeInvalidBody, []string{`"callNum"`, "string or a number"}},
		{"value that does not fit the column", call{path: "/v1/lookups/customer_by_id", key: keyByID, body: `{"id":"C-1001"}`},
			400, httpapi.CodeInvalidField, []string{"does not fit"}},
		{"phone that does not parse", call{path: "/v1/lookups/customer_phone", key: keyByID, body: `{"callNum":"no number here"}`},
			400, httpapi.CodeInvalidField, []string{`"callNum"`}},

		// 404: the lookup ran and nothing matched.
		{"no match", call{body: `{"callNum":"010-0000-0000"}`},
			404, httpapi.CodeNoData, []string{"no row of the lookup's source matches the query"}},
		{"no match for another spelling with exact", call{body: `{"callNum":"01012345678"}`},
			404, httpapi.CodeNoData, nil},

		// 500: a broken mapping answers with its problem once authenticated.
		{"mapping names a missing column", call{path: "/v1/lookups/broken", key: keyFaults, body: `{"callNum":"010-1234-5678"}`},
			500, httpapi.CodeLookupMisconfigured, []string{`"broken"`, `"nickname"`, "does not exist"}},

		// HTTP's own statuses, from the router and the body limit.
		{"route that does not exist", call{path: "/v2/customers", body: `{}`},
			404, httpapi.CodeNotFound, []string{"/v1/lookups/{name}"}},
		{"lookup route without a name", call{path: "/v1/lookups", body: `{}`},
			404, httpapi.CodeNotFound, nil},
		{"GET on a lookup", call{method: http.MethodGet, noSig: true, noTS: true},
			405, httpapi.CodeMethodNotAllowed, nil},
		{"PUT on a lookup", call{method: http.MethodPut, body: `{"callNum":"010-1234-5678"}`},
			405, httpapi.CodeMethodNotAllowed, nil},
		{"POST on healthz", call{path: "/healthz", body: `{}`},
			405, httpapi.CodeMethodNotAllowed, nil},
		{"body over 64 KiB", call{body: `{"callNum":"010-1234-5678","pad":"` + strings.Repeat("x", 64<<10) + `"}`},
			413, httpapi.CodeBodyTooLarge, []string{"65536"}},
	}
	t.Run("broken lookup leaves others serving", func(t *testing.T) {
		t.Parallel()
		testBrokenLookupLeavesOthersServing(t, f, srv)
	})
	t.Run("database timeout", func(t *testing.T) {
		t.Parallel()
		testDatabaseTimeout(t, f)
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, f.request(t, srv.URL, tt.call))
			e := checkError(t, r, tt.wantStatus, tt.wantCode)
			for _, s := range tt.detailHas {
				if !strings.Contains(e.Detail, s) {
					t.Errorf("detail %q does not contain %q", e.Detail, s)
				}
			}
			if tt.wantStatus == http.StatusMethodNotAllowed {
				if allow := r.header.Get("Allow"); allow == "" {
					t.Errorf("405 without an Allow header")
				}
			}
		})
	}
}

// testBrokenLookupLeavesOthersServing checks that one lookup with a missing
// column does not stop another lookup on the same server from answering.
func testBrokenLookupLeavesOthersServing(t *testing.T, f *fixture, srv *testServer) {

	snap := f.holder.Snapshot()
	broken, ok := snap.Get("broken")
	if !ok || !broken.Broken() {
		t.Fatalf(`snapshot lookup "broken": ok=%v, problems=%v; want broken`, ok, broken)
	}
	if p := strings.Join(snap.Problems(), "; "); !strings.Contains(p, `"broken"`) || !strings.Contains(p, `"nickname"`) {
		t.Errorf("Problems() = %q, want it to name lookup broken and column nickname", p)
	}

	r := do(t, f.request(t, srv.URL, call{path: "/v1/lookups/broken", key: keyFaults, body: `{"callNum":"010-1234-5678"}`}))
	checkError(t, r, http.StatusInternalServerError, httpapi.CodeLookupMisconfigured)
	r = do(t, f.request(t, srv.URL, call{body: `{"callNum":"010-1234-5678"}`}))
	if r.status != http.StatusOK {
		t.Fatalf("customer beside a broken lookup: status = %d, want 200 (body %s)", r.status, r.body)
	}
	// Before authentication, the broken lookup is as opaque as any other.
	r = do(t, f.request(t, srv.URL, call{path: "/v1/lookups/broken", key: keyMain, body: `{"callNum":"010-1234-5678"}`}))
	checkError(t, r, http.StatusForbidden, httpapi.CodeAccessDenied)
}

// testDatabaseTimeout checks that a query running past QueryTimeout answers
// 500 database_timeout, and that the server answers normally afterwards.
func testDatabaseTimeout(t *testing.T, f *fixture) {
	srv := serve(t, f.handler(httpapi.Config{QueryTimeout: 200 * time.Millisecond}))

	r := do(t, f.request(t, srv.URL, call{path: "/v1/lookups/slow", key: keyFaults, body: `{"callNum":"010-1234-5678"}`}))
	e := checkError(t, r, http.StatusInternalServerError, httpapi.CodeDatabaseTimeout)
	if !strings.Contains(e.Detail, "200ms") {
		t.Errorf("detail %q does not name the timeout 200ms", e.Detail)
	}
	if o, ok := f.outcome(r.header.Get("X-Request-Id")); !ok || o.Code != httpapi.CodeDatabaseTimeout || o.Lookup != "slow" {
		t.Errorf("outcome = %+v (found %v), want lookup slow with code %s", o, ok, httpapi.CodeDatabaseTimeout)
	}
	for range 3 { // the pool is usable afterwards
		r = do(t, f.request(t, srv.URL, call{body: `{"callNum":"010-1234-5678"}`}))
		if r.status != http.StatusOK {
			t.Fatalf("after a timeout: status = %d, want 200 (body %s)", r.status, r.body)
		}
	}
}

// TestForbiddenIsUniform checks every 403 cause: each answers the same bytes
// (no oracle for which lookups or keys exist), while DoneFunc, which feeds
// the server log and access log, is told the precise reason.
func TestForbiddenIsUniform(t *testing.T) {
	t.Parallel()
	f := newFixture(t, true)
	srv := serve(t, f.handler(httpapi.Config{}))

	const body = `{"callNum":"010-1234-5678","nation":"82"}`
	hexKey, err := hex.DecodeString(keyMain)
	if err != nil {
		t.Fatal(err)
	}
	good := helpdeskSign(keyMain, signature.SchemeBody, "", []byte(body), f.ts(0))
	raw, _ := base64.StdEncoding.DecodeString(good)
	unpadded := base64.RawStdEncoding.EncodeToString(raw)
	// A body whose signature has '+' or '/', so its URL-safe form differs.
	var urlBody, urlSafe string
	for i := 0; urlSafe == ""; i++ {
		urlBody = fmt.Sprintf(`{"callNum":"010-1234-5678","n":%d}`, i)
		sig := helpdeskSign(keyMain, signature.SchemeBody, "", []byte(urlBody), f.ts(0))
		if strings.ContainsAny(sig, "+/") {
			raw, _ := base64.StdEncoding.DecodeString(sig)
			urlSafe = base64.URLEncoding.EncodeToString(raw)
		}
	}
	escaped := `{"callNum":"\u0030\u0031\u0030-1234-5678"}`

	tests := []struct {
		name       string
		call       call
		wantReason string // a word of the reason given to DoneFunc
	}{
		{"no Authorization", call{body: body, noSig: true}, "missing"},
		{"empty Authorization", call{body: body, sig: ptr("")}, "missing"},
		{"wrong key", call{body: body, key: "not-the-key"}, "no key verifies"},
		{"key hex-decoded by mistake", call{body: body, secret: hexKey}, "no key verifies the signature (tried 5): signature does not verify; the signature verifies with key 1 hex-decoded"},
		{"key with a stray newline", call{body: body, key: keyMain + "\n"}, "verifies with key 1 with a trailing newline added to the key"},
		{"tampered body", call{body: `{"callNum":"010-1234-5679","nation":"82"}`, signBody: ptr(body)}, "no key verifies"},
		{"tampered timestamp", call{body: body, signTS: ptr(f.ts(-time.Second))}, "no key verifies"},
		{"timestamp in seconds", call{body: body, signTS: ptr(f.ts(0)[:10])}, "the signed timestamp is in seconds"},
		{"timestamp left out", call{body: body, signTS: ptr("")}, "the timestamp is left out"},
		{"signature in hex", call{body: body, sig: ptr(hex.EncodeToString(raw))}, "key 1 verifies the signature hex-encoded"},
		{"signed over the unescaped body", call{body: escaped, signBody: ptr(`{"callNum":"010-1234-5678"}`)}, "no key verifies"},
		{"signed over a re-serialised body", call{body: "{ \"callNum\": \"010-1234-5678\" }", signBody: ptr(`{"callNum":"010-1234-5678"}`)}, "re-serialises the JSON"},
		{"URL-safe Base64", call{body: urlBody, sig: ptr(urlSafe)}, "key 1 verifies the signature in URL-safe Base64"},
		{"Base64 without padding", call{body: body, sig: ptr(unpadded)}, "key 1 verifies the signature without Base64 padding"},
		{"Bearer prefix", call{body: body, sig: ptr("Bearer " + good)}, "key 1 verifies the signature with an auth-scheme prefix"},
		{"signature with a tab inside", call{body: body, sig: ptr(good[:20] + "\t" + good[20:])}, "signature"},
		{"Authorization sent twice", call{body: body, header: http.Header{"Authorization": {good, good}}}, "more than once"},
		{"revoked key", call{body: body, key: keyRevoked}, "no key verifies"},
		{"expired key", call{body: body, key: keyExpired}, "no key verifies"},
		{"key of another lookup", call{body: body, key: keyOther}, "no key verifies"},
		{"uri_body-only key with scheme body", call{body: body, key: keyURIOnly}, "would verify as body (body + timestamp) under key 3, which accepts only uri_body"},
		{"body-only key with scheme uri_body", call{body: body, key: keyMain, scheme: signature.SchemeURIBody}, "would verify as uri_body (path + body + timestamp) under key 1"},
		{"uri_body over another path", call{body: body, key: keyURIOnly, scheme: signature.SchemeURIBody, signPath: ptr("/v1/lookups/other")}, "no key verifies"},
		{"uri_body over the path with its query", call{path: "/v1/lookups/customer?x=1", body: body, sig: ptr(signature.Sign([]byte(keyURIOnly), signature.SchemeURIBody, "/v1/lookups/customer?x=1", []byte(body), f.ts(0)))}, "no key verifies"},
		{"unknown lookup", call{path: "/v1/lookups/nope", body: body}, "unknown lookup"},
		{"unknown lookup, differing only in case", call{path: "/v1/lookups/Customer", body: body}, "unknown lookup"},
		// The router's last parameter takes the rest of the path, slashes
		// included: such a name is just another unknown lookup.
		{"lookup name with a trailing slash", call{path: "/v1/lookups/customer/", body: body}, "unknown lookup"},
		{"lookup name with a trailing segment", call{path: "/v1/lookups/customer/x", body: body}, "unknown lookup"},
		{"lookup name percent-encoded", call{path: "/v1/lookups/cust%6Fmer", body: body}, "unknown lookup"},
		{"disabled lookup with its own key", call{path: "/v1/lookups/disabled", key: keyDisabled, body: body}, "disabled"},
		{"lookup without keys", call{path: "/v1/lookups/keyless", body: body}, "no active key"},
		{"caller outside allowed_networks", call{path: "/v1/lookups/restricted", key: keyRestricted, body: body}, "allowed_networks"},
		{"misconfigured lookup, wrong key", call{path: "/v1/lookups/broken", body: body}, "no key verifies"},
	}
	var first []byte
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, f.request(t, srv.URL, tt.call))
			e := checkError(t, r, http.StatusForbidden, httpapi.CodeAccessDenied)
			if e.Detail != "signature does not verify" {
				t.Errorf("detail = %q, want %q", e.Detail, "signature does not verify")
			}
			if first == nil {
				first = r.body
			} else if !bytes.Equal(r.body, first) {
				t.Errorf("body = %q, want the same bytes as every 403: %q", r.body, first)
			}
			o, ok := f.outcome(r.header.Get("X-Request-Id"))
			if !ok {
				t.Fatalf("DoneFunc was not called for request %q", r.header.Get("X-Request-Id"))
			}
			if !strings.Contains(o.Reason, tt.wantReason) {
				t.Errorf("outcome reason = %q, want it to contain %q", o.Reason, tt.wantReason)
			}
			if o.KeyID != 0 {
				t.Errorf("outcome key id = %d, want 0 for a request no key verified", o.KeyID)
			}
			for _, secret := range []string{keyMain, keyOther, keyDisabled, keyRestricted, good} {
				if strings.Contains(o.Reason, secret) || bytes.Contains(r.body, []byte(secret)) {
					t.Errorf("reason %q or body reveals a secret or signature", o.Reason)
				}
			}
		})
	}
}

// TestOptions documents the router's answer to OPTIONS: 204 with Allow, no
// body; it is not an error, so it carries no envelope.
func TestOptions(t *testing.T) {
	t.Parallel()
	srv := serve(t, httpapi.New(httpapi.Config{}))
	req, err := http.NewRequest(http.MethodOptions, srv.URL+"/v1/lookups/customer", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := do(t, req)
	if r.status != http.StatusNoContent || !strings.Contains(r.header.Get("Allow"), http.MethodPost) || len(r.body) != 0 {
		t.Errorf("OPTIONS = %d, Allow %q, body %q; want 204, Allow with POST, no body", r.status, r.header.Get("Allow"), r.body)
	}
}

// TestNotLoaded checks the envelope before any configuration is loaded: a
// lookup answers 500 and /readyz 503.
func TestNotLoaded(t *testing.T) {
	t.Parallel()
	h := httpapi.New(httpapi.Config{SnapshotFunc: func() *lookup.Snapshot { return nil }})
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	body := `{"callNum":"010-1234-5678"}`
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/lookups/customer", strings.NewReader(body))
	req.Header.Set("X-TC-Timestamp", ts)
	req.Header.Set("Authorization", helpdeskSign(keyMain, signature.SchemeBody, "", []byte(body), ts))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	checkError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}, http.StatusInternalServerError, httpapi.CodeInternal)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz before a load = %d, want 503 (body %s)", rec.Code, rec.Body)
	}
}
