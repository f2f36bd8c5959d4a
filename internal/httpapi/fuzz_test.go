package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/signature"
)

// fuzzMethods are the methods FuzzHandler picks from.
var fuzzMethods = []string{http.MethodPost, http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead}

// fuzzSigners sign a fuzzed request validly (index 0: send sig as given):
// the key of customer, the key of customer_by_id and customer_phone, and a
// uri_body key of customer.
var fuzzSigners = []struct {
	key    string
	scheme signature.Scheme
}{
	{},
	{keyMain, signature.SchemeBody},
	{keyByID, signature.SchemeBody},
	{keyURIOnly, signature.SchemeURIBody},
}

// fuzzStatuses are the statuses the handler may answer over healthy lookups.
var fuzzStatuses = map[int]bool{200: true, 400: true, 403: true, 404: true, 405: true, 413: true}

// FuzzHandler drives the whole handler, with the real database behind it,
// with arbitrary method, path, timestamp, signature and body. With signer
// non-zero the request carries the current time and a valid signature, so
// the body reaches the decoder and the database. The request is parsed from
// the wire bytes as net/http would; inputs it rejects never reach a handler.
// Every answer must be one of the expected statuses, and every non-200 the
// error envelope with its status's message.
func FuzzHandler(f *testing.F) {
	fx := newFixture(f, false)
	h := fx.handler(httpapi.Config{})
	// Seeds are in testdata/fuzz/FuzzHandler.
	f.Fuzz(func(t *testing.T, method uint8, path, ts, sig string, body []byte, signer uint8) {
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		s := fuzzSigners[int(signer)%len(fuzzSigners)]
		if s.key != "" {
			ts = fx.ts(0)
		}
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: custinfo.test\r\nContent-Type: application/json\r\nX-TC-Timestamp: %s\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n",
			m, path, ts, sig, len(body))
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:40000"
		if s.key != "" {
			p, _, _ := strings.Cut(req.RequestURI, "?")
			req.Header.Set("Authorization", signature.Sign([]byte(s.key), s.scheme, p, body, ts))
		}

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		out := rec.Body.Bytes()
		if !fuzzStatuses[rec.Code] {
			t.Fatalf("%s %q: status %d, want one of 200, 400, 403, 404, 405, 413 (body %s)", m, path, rec.Code, out)
		}
		if !utf8.Valid(out) {
			t.Fatalf("%s %q: status %d: body is not UTF-8: %q", m, path, rec.Code, out)
		}
		if rec.Code == http.StatusOK {
			if len(out) > 0 && !json.Valid(out) {
				t.Fatalf("%s %q: 200 with a body that is not JSON: %q", m, path, out)
			}
			return
		}
		e, err := parseEnvelope(out)
		if err != nil {
			t.Fatalf("%s %q: status %d: body %q is not the envelope: %v", m, path, rec.Code, out, err)
		}
		if want := messageFor(rec.Code, e.Code); e.Message != want {
			t.Fatalf("%s %q: status %d code %q: message %q, want %q", m, path, rec.Code, e.Code, e.Message, want)
		}
		if rec.Code == http.StatusForbidden && e.Detail != "signature does not verify" {
			t.Fatalf("%s %q: 403 detail %q, want the one generic detail", m, path, e.Detail)
		}
	})
}
