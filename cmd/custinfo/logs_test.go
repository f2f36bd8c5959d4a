package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/phone"
	"github.com/custinfo/custinfo/internal/signature"
)

// TestLogsCarryNoSecrets runs the server through successful, unsigned,
// wrongly signed and malformed requests and reads its whole JSON log: no
// key, no signature sent or expected, and no full phone number may be in it.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	s := opsStart(t, serveFlags{databaseURL: opsSeed(t)})
	path := "/v1/lookups/customer"
	var sent []string // every Authorization value sent
	var expected []string
	send := func(body, sig string, mutate func(*http.Request)) int {
		req := opsLookup(t, s.base, "customer", opsKey, body, sig)
		if mutate != nil {
			mutate(req)
		}
		ts := req.Header.Get("X-TC-Timestamp")
		expected = append(expected, signature.Sign([]byte(opsKey), signature.SchemeBody, path, []byte(body), ts))
		sent = append(sent, req.Header.Get("Authorization"))
		status, _ := opsDo(t, opsClient, req)
		return status
	}
	wrongSig := func(body string) string {
		return signature.Sign([]byte("not-the-key"), signature.SchemeBody, path, []byte(body), strconv.FormatInt(time.Now().UnixMilli(), 10))
	}
	// The expected signature, sent with a prefix or in another encoding, must not show either.
	bearer := func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+signature.Sign([]byte(opsKey), signature.SchemeBody, path, []byte(`{"callNum":"01098761357"}`), r.Header.Get("X-TC-Timestamp")))
	}
	urlSafe := func(r *http.Request) {
		sig := signature.Sign([]byte(opsKey), signature.SchemeBody, path, []byte(`{"callNum":"01098761357"}`), r.Header.Get("X-TC-Timestamp"))
		// Unpadded URL-safe Base64: never equal to the standard form.
		r.Header.Set("Authorization", strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(sig), "="))
	}
	keyAsSig := func(r *http.Request) { r.Header.Set("Authorization", opsKey) }

	tests := []struct {
		name   string
		body   string
		sig    string
		mutate func(*http.Request)
		want   int
	}{
		{"ok formatted", `{"callNum":"010-9876-1357","nation":"82"}`, "", nil, 200},
		{"ok digits", `{"callNum":"01098761357"}`, "", nil, 200},
		{"ok e164", `{"callNum":"+821098761357","nation":"KR"}`, "", nil, 200},
		{"ok number literal", `{"callNum":821098761357,"nation":82}`, "", nil, 200},
		{"ok spaced international", `{"callNum":"+82 10-9876-1357"}`, "", nil, 200},
		{"wrong key", `{"callNum":"01098761357"}`, wrongSig(`{"callNum":"01098761357"}`), nil, 403},
		{"signature of another body", `{"callNum":"010-9876-1357"}`, wrongSig(`{"callNum":"010-9876-1358"}`), nil, 403},
		{"bearer prefix", `{"callNum":"01098761357"}`, "", bearer, 403},
		{"url-safe alphabet", `{"callNum":"01098761357"}`, "", urlSafe, 403},
		{"key sent as the signature", `{"callNum":"01098761357"}`, "", keyAsSig, 403},
		{"no signature", `{"callNum":"01098761357"}`, "", func(r *http.Request) { r.Header.Del("Authorization") }, 403},
		{"stale timestamp", `{"callNum":"01098761357"}`, "", func(r *http.Request) { r.Header.Set("X-TC-Timestamp", "1000") }, 400},
		{"missing callNum", `{"nation":"82"}`, "", nil, 400},
		{"not JSON", `callNum=01098761357`, "", nil, 400},
		{"invalid number literal", `{"callNum":01098761357}`, "", nil, 400},
		{"number in the region field", `{"callNum":"01098761357","nation":"01098761357"}`, "", nil, 400},
		{"number too long", `{"callNum":"0109876135799999"}`, "", nil, 0},
		{"letters after the number", `{"callNum":"01098761357 ext. 12"}`, "", nil, 0},
		{"duplicate field", `{"callNum":"01098761357","callNum":"01098761357"}`, "", nil, 400},
		{"not found", `{"callNum":"010-1111-2222"}`, "", nil, 404},
	}
	for _, tt := range tests {
		got := send(tt.body, tt.sig, tt.mutate)
		if tt.want != 0 && got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
	if err := s.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	logs := s.logs.String()
	requests := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %v: %s", err, line)
			continue
		}
		if rec["msg"] == "request" {
			requests++
		}
		for _, v := range stringsIn(rec) {
			if digits := phone.Digits(v); strings.Contains(digits, "1098761357") {
				t.Errorf("log value %q carries the full phone number; line: %s", v, line)
			}
		}
	}
	if requests < len(tests) {
		t.Errorf("log has %d request lines, want at least %d:\n%s", requests, len(tests), logs)
	}
	for _, secret := range append(append([]string{opsKey}, sent...), expected...) {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("log contains the secret or signature %q", secret)
		}
	}
	for _, sp := range opsSpellings {
		if strings.Contains(logs, sp) {
			t.Errorf("log contains the phone number spelled %q", sp)
		}
	}
	if !strings.Contains(logs, `"query":"010****1357"`) {
		t.Errorf("log has no masked query value 010****1357:\n%s", logs)
	}
	if t.Failed() {
		t.Logf("log:\n%s", logs)
	}
}

// stringsIn returns every string in v, keys included, recursively.
func stringsIn(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case map[string]any:
		var out []string
		for k, e := range v {
			out = append(out, k)
			out = append(out, stringsIn(e)...)
		}
		return out
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringsIn(e)...)
		}
		return out
	default:
		return nil
	}
}
