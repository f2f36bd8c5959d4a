package signature_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/signature"
)

// mac is the raw HMAC-SHA256 of msg under secret.
func mac(secret, msg string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestDiagnose(t *testing.T) {
	t.Parallel()
	hexKey, _ := hex.DecodeString(specKey)
	const b64Key = "c2VjcmV0LWtleS0wMTIzNDU2Nzg5YWJjZA=="
	b64Raw, _ := base64.StdEncoding.DecodeString(b64Key)
	pretty := "{\n  \"callNum\": \"010-1234-5678\",\n  \"nation\": \"82\"\n}"
	compact := `{"callNum":"010-1234-5678","nation":"82"}`
	tsBody := `{"callNum":"010-1234-5678","timestamp":"1764465999000"}`
	msg := specBody + specTS
	// urlSig finds a message whose MAC's standard Base64 has + or /, so
	// its URL-safe spelling differs.
	urlBody := specBody
	for i := 0; !strings.ContainsAny(std(mac(specKey, urlBody+specTS)), "+/"); i++ {
		urlBody = specBody + strings.Repeat(" ", i)
	}
	for _, tt := range []struct {
		name string
		keys []signature.Key
		path string
		body string
		sig  string
		want string // "" when no mistake fits
	}{
		{"key with a trailing newline", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey+"\n", msg)), "verifies with key 1 with a trailing newline added to the key"},
		{"key with a trailing space", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey+" ", msg)), "with a trailing space added to the key"},
		{"key hex-decoded", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(string(hexKey), msg)), "verifies with key 1 hex-decoded"},
		{"key Base64-decoded", []signature.Key{key(7, b64Key, bodyOnly)}, specPath, specBody,
			std(mac(string(b64Raw), msg)), "verifies with key 7 Base64-decoded"},
		{"signature in hex", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			hex.EncodeToString(mac(specKey, msg)), "key 1 verifies the signature hex-encoded"},
		{"signature in URL-safe Base64", []signature.Key{key(1, specKey, bodyOnly)}, specPath, urlBody,
			base64.URLEncoding.EncodeToString(mac(specKey, urlBody+specTS)), "key 1 verifies the signature in URL-safe Base64"},
		{"signature without padding", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			base64.RawStdEncoding.EncodeToString(mac(specKey, msg)), "without Base64 padding"},
		{"signature with a Bearer prefix", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			"Bearer " + std(mac(specKey, msg)), "with an auth-scheme prefix"},
		{"Base64 of the hex digest", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std([]byte(hex.EncodeToString(mac(specKey, msg)))), "as Base64 of the hex digest"},
		{"uri_body against a body-only key", []signature.Key{key(3, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey, specPath+msg)), "would verify as uri_body (path + body + timestamp) under key 3, which accepts only body; if the helpdesk signs that way, accept it with UPDATE custinfo.api_keys SET schemes = '{body,uri_body}' WHERE id = 3"},
		{"body against a uri_body-only key", []signature.Key{key(4, specKey, uriOnly)}, specPath, specBody,
			std(mac(specKey, msg)), "would verify as body (body + timestamp) under key 4, which accepts only uri_body"},
		{"timestamp left out", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey, specBody)), "the timestamp is left out"},
		{"timestamp first", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey, specTS+specBody)), "the timestamp comes before the body"},
		{"timestamp in seconds", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey, specBody+specTS[:10])), "in seconds"},
		{"body re-serialised", []signature.Key{key(1, specKey, bodyOnly)}, specPath, pretty,
			std(mac(specKey, compact+specTS)), "re-serialises the JSON"},
		{"body signed with a newline", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey, specBody+"\n"+specTS)), "signed with a trailing line break"},
		{"timestamp from the body", []signature.Key{key(1, specKey, bodyOnly)}, specPath, tsBody,
			std(mac(specKey, tsBody+"1764465999000")), `the body's "timestamp" field`},
		{"uri_body key, key with a newline", []signature.Key{key(5, specKey, uriOnly)}, specPath, specBody,
			std(mac(specKey+"\n", specPath+msg)), "verifies with key 5 with a trailing newline"},
		{"second key fits", []signature.Key{key(1, otherKey, bodyOnly), key(2, specKey, bodyOnly)}, specPath, specBody,
			std(mac(specKey+"\n", msg)), "key 2 with a trailing newline"},
		{"two mistakes at once are not guessed", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody,
			hex.EncodeToString(mac(specKey+"\n", specBody)), ""},
		{"wrong key", []signature.Key{key(1, otherKey, bodyOnly)}, specPath, specBody, specSig, ""},
		{"empty signature", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody, "", ""},
		{"garbage", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody, "not a signature at all", ""},
		{"very long signature", []signature.Key{key(1, specKey, bodyOnly)}, specPath, specBody, strings.Repeat("A", 100000), ""},
		{"no keys", nil, specPath, specBody, std(mac(specKey+"\n", msg)), ""},
		{"key without schemes", []signature.Key{{ID: 1, Secret: []byte(specKey)}}, specPath, specBody, std(mac(specKey+"\n", msg)), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := signature.Diagnose(tt.keys, tt.path, []byte(tt.body), specTS, tt.sig)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("Diagnose(sig=%.60q) = %q, want %q", tt.sig, got, tt.want)
			}
			for _, k := range tt.keys {
				if got != "" && strings.Contains(got, string(k.Secret)) {
					t.Errorf("Diagnose reveals the key: %q", got)
				}
			}
		})
	}
}

// TestDiagnoseBounded: with the most keys, a body at the server's limit and
// a signature that fits nothing, Diagnose returns "" after bounded work, and
// a key past DiagnoseMaxKeys is not tried.
func TestDiagnoseBounded(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte(`{"a":1} `), 8<<10) // 64 KiB
	var keys []signature.Key
	for i := 0; i < signature.DiagnoseMaxKeys+4; i++ {
		keys = append(keys, key(int64(i+1), strings.Repeat(string(rune('a'+i)), 20), both))
	}
	if got := signature.Diagnose(keys, specPath, body, specTS, specSig); got != "" {
		t.Errorf("Diagnose of an unrelated signature = %q, want \"\"", got)
	}
	last := keys[len(keys)-1]
	sig := std(mac(string(last.Secret)+"\n", specBody+specTS))
	if got := signature.Diagnose(keys, specPath, []byte(specBody), specTS, sig); got != "" {
		t.Errorf("Diagnose tried key %d past the bound: %q", last.ID, got)
	}
}

// FuzzDiagnose checks Diagnose never panics and never names a secret or the
// signature the server expects. Seeds live in testdata/fuzz/FuzzDiagnose.
func FuzzDiagnose(f *testing.F) {
	f.Add([]byte(specBody), specTS, std(mac(specKey+"\n", specBody+specTS)), specPath)
	f.Add([]byte(`{"ts":"1764466000000"}`), specTS, hex.EncodeToString(mac(specKey, specBody+specTS)), "/")
	f.Fuzz(func(t *testing.T, body []byte, ts, sig, path string) {
		got := signature.Diagnose(fuzzKeys, path, body, ts, sig)
		for _, k := range fuzzKeys {
			if got != "" && strings.Contains(got, string(k.Secret)) {
				t.Fatalf("Diagnose reveals key %d: %q", k.ID, got)
			}
			for _, s := range []signature.Scheme{signature.SchemeBody, signature.SchemeURIBody} {
				if want := signature.Sign(k.Secret, s, path, body, ts); got != "" && strings.Contains(got, want) {
					t.Fatalf("Diagnose reveals the expected signature: %q", got)
				}
			}
		}
	})
}

// BenchmarkDiagnose measures the work a refused request costs when no
// known mistake fits (the most Diagnose does): one key and the spec's
// body, and the bound of keys with a body at the server's limit.
func BenchmarkDiagnose(b *testing.B) {
	big := bytes.Repeat([]byte(`{"a":1} `), 8<<10)
	var many []signature.Key
	for i := 0; i < signature.DiagnoseMaxKeys; i++ {
		many = append(many, key(int64(i+1), strings.Repeat(string(rune('a'+i)), 20), both))
	}
	for _, bb := range []struct {
		name string
		keys []signature.Key
		body []byte
	}{
		{"1key-41B", []signature.Key{key(1, otherKey, bodyOnly)}, []byte(specBody)},
		{"8keys-64KiB", many, big},
	} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if signature.Diagnose(bb.keys, specPath, bb.body, specTS, specSig) != "" {
					b.Fatal("a mistake fit")
				}
			}
		})
	}
}
