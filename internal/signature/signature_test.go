package signature_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/signature"
)

// The spec's example key and a request signed with it (see testdata/vectors.txt,
// records spec-example-body and spec-example-uri-body, made with openssl).
const (
	specKey    = "bf7769e5321448de88838cdb"
	specBody   = `{"callNum":"010-1234-5678","nation":"82"}`
	specTS     = "1764466000000"
	specPath   = "/v1/lookups/customer"
	specSig    = "ZViyAyYYcDFTuVfH6LC9/1euNLLlsFamNb2ADGbeyXY="
	specURISig = "xohB9nXOSClzLN8ByS6c8oytwnuKQEcdn8hmCyDrGk8="
	otherKey   = "3f2a9c0b7d4e1f6a8b5c2d90"
	koreanBody = `{"callNum":"010-1234-5678","userName":"홍길동"}`
	escapeBody = `{"callNum":"010-1234-5678","userName":"\uD64D\uAE38\uB3D9"}`
)

var (
	bodyOnly = []signature.Scheme{signature.SchemeBody}
	uriOnly  = []signature.Scheme{signature.SchemeURIBody}
	both     = []signature.Scheme{signature.SchemeBody, signature.SchemeURIBody}
)

func key(id int64, secret string, schemes []signature.Scheme) signature.Key {
	return signature.Key{ID: id, Secret: []byte(secret), Schemes: schemes}
}

func TestParseScheme(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    signature.Scheme
		wantErr bool
	}{
		{name: "body", in: "body", want: signature.SchemeBody},
		{name: "uri_body", in: "uri_body", want: signature.SchemeURIBody},
		{name: "empty", in: "", wantErr: true},
		{name: "upper case", in: "BODY", wantErr: true},
		{name: "surrounding space", in: " body", wantErr: true},
		{name: "dash", in: "uri-body", wantErr: true},
		{name: "unknown", in: "uri", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signature.ParseScheme(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseScheme(%q) = %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	tests := []struct {
		name   string
		scheme signature.Scheme
		path   string
		body   string
		ts     string
		want   []byte
	}{
		{name: "body ignores path", scheme: signature.SchemeBody, path: specPath, body: specBody, ts: specTS, want: []byte(specBody + specTS)},
		{name: "uri_body", scheme: signature.SchemeURIBody, path: specPath, body: specBody, ts: specTS, want: []byte(specPath + specBody + specTS)},
		{name: "empty body", scheme: signature.SchemeBody, ts: specTS, want: []byte(specTS)},
		{name: "korean bytes kept", scheme: signature.SchemeBody, body: koreanBody, ts: specTS, want: []byte(koreanBody + specTS)},
		{name: "unknown scheme", scheme: "uri", path: specPath, body: specBody, ts: specTS, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := signature.Message(tt.scheme, tt.path, []byte(tt.body), tt.ts)
			if !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Message(%q, %q, %q, %q) = %q, want %q", tt.scheme, tt.path, tt.body, tt.ts, got, tt.want)
			}
		})
	}
}

func TestSign(t *testing.T) {
	tests := []struct {
		name   string
		scheme signature.Scheme
		want   string
	}{
		{name: "body", scheme: signature.SchemeBody, want: specSig},
		{name: "uri_body", scheme: signature.SchemeURIBody, want: specURISig},
		{name: "unknown scheme", scheme: "nope", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := signature.Sign([]byte(specKey), tt.scheme, specPath, []byte(specBody), specTS)
			if got != tt.want {
				t.Errorf("Sign(spec key, %q) = %q, want %q", tt.scheme, got, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	sign := func(secret string, scheme signature.Scheme, path, body, ts string) string {
		return signature.Sign([]byte(secret), scheme, path, []byte(body), ts)
	}
	hexKey, err := hex.DecodeString(specKey)
	if err != nil {
		t.Fatal(err)
	}
	specMAC, err := base64.StdEncoding.DecodeString(specSig)
	if err != nil {
		t.Fatal(err)
	}
	spec := []signature.Key{key(1, specKey, bodyOnly)}

	tests := []struct {
		name   string
		keys   []signature.Key
		path   string
		body   string
		ts     string
		sig    string
		wantID int64  // when wantErr is nil
		want   error  // nil, ErrMissing or ErrMismatch
		hint   string // substring the error must contain, if any
	}{
		{name: "spec example", keys: spec, body: specBody, ts: specTS, sig: specSig, wantID: 1},
		{name: "body scheme ignores path", keys: spec, path: "/anything", body: specBody, ts: specTS, sig: specSig, wantID: 1},
		{name: "missing signature", keys: spec, body: specBody, ts: specTS, sig: "", want: signature.ErrMissing},
		{name: "no keys", keys: nil, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},

		// Tampering.
		{name: "tampered body", keys: spec, body: strings.Replace(specBody, "5678", "5679", 1), ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "body with trailing newline", keys: spec, body: specBody + "\n", ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "re-serialised body", keys: spec, body: `{"callNum": "010-1234-5678", "nation": "82"}`, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "tampered timestamp", keys: spec, body: specBody, ts: "1764466000001", sig: specSig, want: signature.ErrMismatch},
		{name: "timestamp with leading zero", keys: spec, body: specBody, ts: "0" + specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "empty timestamp", keys: spec, body: specBody, ts: "", sig: specSig, want: signature.ErrMismatch},
		{name: "tampered signature", keys: spec, body: specBody, ts: specTS, sig: "A" + specSig[1:], want: signature.ErrMismatch},

		// Keys.
		{name: "wrong key", keys: []signature.Key{key(1, otherKey, bodyOnly)}, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "hex-decoded key does not verify", keys: []signature.Key{{ID: 1, Secret: hexKey, Schemes: bodyOnly}}, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "signed with hex-decoded key", keys: spec, body: specBody, ts: specTS,
			sig: signature.Sign(hexKey, signature.SchemeBody, "", []byte(specBody), specTS), want: signature.ErrMismatch},
		{name: "key with trailing newline", keys: []signature.Key{key(1, specKey+"\n", bodyOnly)}, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "upper-case key", keys: []signature.Key{key(1, strings.ToUpper(specKey), bodyOnly)}, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "second key verifies", keys: []signature.Key{key(1, otherKey, bodyOnly), key(2, specKey, bodyOnly), key(3, "third", both)},
			body: specBody, ts: specTS, sig: specSig, wantID: 2},
		{name: "old and new key both accepted", keys: []signature.Key{key(1, specKey, bodyOnly), key(2, otherKey, bodyOnly)},
			body: specBody, ts: specTS, sig: sign(otherKey, signature.SchemeBody, "", specBody, specTS), wantID: 2},
		{name: "empty secret never verifies", keys: []signature.Key{key(1, "", bodyOnly)}, body: specBody, ts: specTS,
			sig: sign("", signature.SchemeBody, "", specBody, specTS), want: signature.ErrMismatch},
		{name: "key without schemes never verifies", keys: []signature.Key{key(1, specKey, nil)}, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "unknown scheme skipped", keys: []signature.Key{key(1, specKey, []signature.Scheme{"uri", "BODY", signature.SchemeBody})}, body: specBody, ts: specTS, sig: specSig, wantID: 1},
		{name: "duplicate schemes", keys: []signature.Key{key(1, specKey, []signature.Scheme{signature.SchemeURIBody, signature.SchemeURIBody, signature.SchemeBody})},
			path: specPath, body: specBody, ts: specTS, sig: specSig, wantID: 1},

		// Schemes.
		{name: "uri_body with path", keys: []signature.Key{key(1, specKey, uriOnly)}, path: specPath, body: specBody, ts: specTS, sig: specURISig, wantID: 1},
		{name: "uri_body without path", keys: []signature.Key{key(1, specKey, uriOnly)}, path: "", body: specBody, ts: specTS, sig: specURISig, want: signature.ErrMismatch},
		{name: "uri_body other path", keys: []signature.Key{key(1, specKey, uriOnly)}, path: "/v1/lookups/customers", body: specBody, ts: specTS, sig: specURISig, want: signature.ErrMismatch},
		{name: "uri_body path with query", keys: []signature.Key{key(1, specKey, uriOnly)}, path: specPath + "?x=1", body: specBody, ts: specTS, sig: specURISig, want: signature.ErrMismatch},
		{name: "body key rejects uri_body signature", keys: []signature.Key{key(1, specKey, bodyOnly)}, path: specPath, body: specBody, ts: specTS, sig: specURISig, want: signature.ErrMismatch},
		{name: "uri_body key rejects body signature", keys: []signature.Key{key(1, specKey, uriOnly)}, path: specPath, body: specBody, ts: specTS, sig: specSig, want: signature.ErrMismatch},
		{name: "key with both schemes, body", keys: []signature.Key{key(4, specKey, both)}, path: specPath, body: specBody, ts: specTS, sig: specSig, wantID: 4},
		{name: "key with both schemes, uri_body", keys: []signature.Key{key(4, specKey, both)}, path: specPath, body: specBody, ts: specTS, sig: specURISig, wantID: 4},
		{name: "uri_body percent-encoded path as sent", keys: []signature.Key{key(1, specKey, uriOnly)}, path: "/v1/lookups/%EA%B3%A0%EA%B0%9D", body: specBody, ts: specTS,
			sig: sign(specKey, signature.SchemeURIBody, "/v1/lookups/%EA%B3%A0%EA%B0%9D", specBody, specTS), wantID: 1},
		{name: "uri_body decoded path does not verify encoded", keys: []signature.Key{key(1, specKey, uriOnly)}, path: "/v1/lookups/고객", body: specBody, ts: specTS,
			sig: sign(specKey, signature.SchemeURIBody, "/v1/lookups/%EA%B3%A0%EA%B0%9D", specBody, specTS), want: signature.ErrMismatch},

		// Bodies.
		{name: "empty body", keys: spec, body: "", ts: specTS, sig: "tqiSKlDPKkbnTJKXprSFvh5fSyp+2/sQ9ktVQbuIJBQ=", wantID: 1},
		{name: "korean body", keys: spec, body: koreanBody, ts: specTS, sig: sign(specKey, signature.SchemeBody, "", koreanBody, specTS), wantID: 1},
		{name: "korean body verified against escaped form", keys: spec, body: escapeBody, ts: specTS, sig: sign(specKey, signature.SchemeBody, "", koreanBody, specTS), want: signature.ErrMismatch},
		{name: "escaped body as sent", keys: spec, body: escapeBody, ts: specTS, sig: sign(specKey, signature.SchemeBody, "", escapeBody, specTS), wantID: 1},
		{name: "escaped body verified against decoded form", keys: spec, body: koreanBody, ts: specTS, sig: sign(specKey, signature.SchemeBody, "", escapeBody, specTS), want: signature.ErrMismatch},
		{name: "invalid UTF-8 body over raw bytes", keys: spec, body: "\xff\xfe{}", ts: specTS, sig: sign(specKey, signature.SchemeBody, "", "\xff\xfe{}", specTS), wantID: 1},

		// Signature encodings.
		{name: "url-safe base64", keys: spec, body: specBody, ts: specTS, sig: toURLSafe(specSig), want: signature.ErrMismatch, hint: "URL-safe"},
		{name: "url-safe unpadded base64", keys: spec, body: specBody, ts: specTS, sig: strings.TrimRight(toURLSafe(specSig), "="), want: signature.ErrMismatch, hint: "URL-safe"},
		{name: "unpadded base64", keys: spec, body: specBody, ts: specTS, sig: strings.TrimRight(specSig, "="), want: signature.ErrMismatch, hint: "padding"},
		{name: "double padding", keys: spec, body: specBody, ts: specTS, sig: specSig + "=", want: signature.ErrMismatch, hint: "45 bytes long"},
		{name: "non-canonical padding bits", keys: spec, body: specBody, ts: specTS, sig: specSig[:42] + "Z=", want: signature.ErrMismatch, hint: "canonical"},
		{name: "bad base64 characters", keys: spec, body: specBody, ts: specTS, sig: "!" + specSig[1:], want: signature.ErrMismatch},
		{name: "bad base64 garbage", keys: spec, body: specBody, ts: specTS, sig: "not a signature", want: signature.ErrMismatch},
		{name: "hex MAC", keys: spec, body: specBody, ts: specTS, sig: hex.EncodeToString(specMAC), want: signature.ErrMismatch, hint: "hex"},
		{name: "31-byte MAC", keys: spec, body: specBody, ts: specTS, sig: base64.StdEncoding.EncodeToString(specMAC[:31]), want: signature.ErrMismatch},
		{name: "33-byte MAC", keys: spec, body: specBody, ts: specTS, sig: base64.StdEncoding.EncodeToString(append(specMAC[:32:32], 0)), want: signature.ErrMismatch},
		{name: "MAC of a 32-byte zero value", keys: spec, body: specBody, ts: specTS, sig: base64.StdEncoding.EncodeToString(make([]byte, 32)), want: signature.ErrMismatch},

		// Header value as received: never trimmed.
		{name: "leading space", keys: spec, body: specBody, ts: specTS, sig: " " + specSig, want: signature.ErrMismatch, hint: "whitespace"},
		{name: "trailing space", keys: spec, body: specBody, ts: specTS, sig: specSig + " ", want: signature.ErrMismatch, hint: "whitespace"},
		{name: "trailing newline", keys: spec, body: specBody, ts: specTS, sig: specSig + "\n", want: signature.ErrMismatch, hint: "whitespace"},
		{name: "trailing CRLF", keys: spec, body: specBody, ts: specTS, sig: specSig + "\r\n", want: signature.ErrMismatch},
		{name: "newline inside, padding dropped to keep length", keys: spec, body: specBody, ts: specTS, sig: specSig[:20] + "\n" + specSig[20:43], want: signature.ErrMismatch},
		{name: "line-wrapped", keys: spec, body: specBody, ts: specTS, sig: specSig[:22] + "\r\n" + specSig[22:], want: signature.ErrMismatch, hint: "line break"},
		{name: "only whitespace", keys: spec, body: specBody, ts: specTS, sig: " ", want: signature.ErrMismatch},
		{name: "Bearer prefix not accepted", keys: spec, body: specBody, ts: specTS, sig: "Bearer " + specSig, want: signature.ErrMismatch, hint: "prefix"},
		{name: "HMAC prefix not accepted", keys: spec, body: specBody, ts: specTS, sig: "HMAC " + specSig, want: signature.ErrMismatch, hint: "prefix"},
		{name: "lower-case hmac prefix not accepted", keys: spec, body: specBody, ts: specTS, sig: "hmac " + specSig, want: signature.ErrMismatch, hint: "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signature.Verify(tt.keys, tt.path, []byte(tt.body), tt.ts, tt.sig)
			if tt.want == nil {
				if err != nil || got.ID != tt.wantID {
					t.Errorf("Verify(%q, path=%q, ts=%q, sig=%q) = key %d, %v, want key %d", tt.body, tt.path, tt.ts, tt.sig, got.ID, err, tt.wantID)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%q, path=%q, ts=%q, sig=%q) = key %d, %v, want %v", tt.body, tt.path, tt.ts, tt.sig, got.ID, err, tt.want)
			}
			if got.ID != 0 || got.Secret != nil || got.Schemes != nil {
				t.Errorf("Verify(%q, ts=%q) returned key %+v with error, want zero Key", tt.body, tt.ts, got)
			}
			if tt.hint != "" && !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("Verify(sig=%q) error %q, want it to mention %q", tt.sig, err, tt.hint)
			}
			for _, k := range tt.keys {
				if len(k.Secret) > 0 && strings.Contains(err.Error(), string(k.Secret)) {
					t.Errorf("Verify(sig=%q) error %q reveals the key", tt.sig, err)
				}
			}
		})
	}
}

// TestVerifyRevealsNothing checks a mismatch error never carries the expected
// signature, the key or the signature sent.
func TestVerifyRevealsNothing(t *testing.T) {
	keys := []signature.Key{key(1, specKey, both)}
	sent := "A" + specSig[1:]
	_, err := signature.Verify(keys, specPath, []byte(specBody), specTS, sent)
	if !errors.Is(err, signature.ErrMismatch) {
		t.Fatalf("Verify(tampered sig) = %v, want %v", err, signature.ErrMismatch)
	}
	for _, secret := range []string{specSig, specURISig, specKey, sent, specSig[:12], specURISig[:12]} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Verify(tampered sig) error %q contains %q", err, secret)
		}
	}
}

// TestVerifyTamperEveryByte flips each byte of body, timestamp and path in turn.
func TestVerifyTamperEveryByte(t *testing.T) {
	keys := []signature.Key{key(1, specKey, both)}
	body, ts, path := []byte(koreanBody), []byte(specTS), []byte(specPath)
	sig := signature.Sign([]byte(specKey), signature.SchemeURIBody, string(path), body, string(ts))
	for _, part := range []struct {
		name string
		b    []byte
	}{{"body", body}, {"ts", ts}, {"path", path}} {
		for i := range part.b {
			part.b[i] ^= 0x01
			if k, err := signature.Verify(keys, string(path), body, string(ts), sig); !errors.Is(err, signature.ErrMismatch) {
				t.Errorf("Verify with %s byte %d flipped = key %d, %v, want %v", part.name, i, k.ID, err, signature.ErrMismatch)
			}
			part.b[i] ^= 0x01
		}
	}
	if _, err := signature.Verify(keys, string(path), body, string(ts), sig); err != nil {
		t.Errorf("Verify(restored request) = %v, want nil", err)
	}
}

func toURLSafe(s string) string {
	return strings.NewReplacer("+", "-", "/", "_").Replace(s)
}

func BenchmarkVerify(b *testing.B) {
	body := []byte(strings.Repeat(koreanBody, 20))
	keys := []signature.Key{key(1, otherKey, bodyOnly), key(2, specKey, both)}
	sig := signature.Sign([]byte(specKey), signature.SchemeURIBody, specPath, body, specTS)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := signature.Verify(keys, specPath, body, specTS, sig); err != nil {
			b.Fatal(err)
		}
	}
}

func TestCheckKeyStrength(t *testing.T) {
	tests := []struct {
		name, key string
		weak      bool
	}{
		{"helpdesk key", "bf7769e5321448de88838cdb", false},
		{"sixteen", "0123456789abcdef", false},
		{"sixteen Hangul", "가나다라마바사아자차카타파하가나", false},
		{"two characters", "abababababababab", false},
		{"empty", "", true},
		{"six", "abc123", true},
		{"fifteen", "0123456789abcde", true},
		{"fifteen Hangul, 45 bytes", "가나다라마바사아자차카타파하가", true},
		{"one repeated", "aaaaaaaaaaaaaaaaaaaaaaaa", true},
		{"one Hangul repeated", "가가가가가가가가가가가가가가가가", true},
		{"invalid UTF-8 repeated", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := signature.CheckKeyStrength(tt.key)
			if (err != nil) != tt.weak {
				t.Fatalf("CheckKeyStrength(%q) = %v, want weak=%v", tt.key, err, tt.weak)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, signature.ErrWeakKey) {
				t.Errorf("CheckKeyStrength(%q) = %v, want ErrWeakKey", tt.key, err)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("CheckKeyStrength(%q) = %v, which echoes the key", tt.key, err)
			}
		})
	}
}
