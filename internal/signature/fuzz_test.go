package signature_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/signature"
)

// fuzzKeys have distinct secrets, so a signature made with one verifies only under it.
var fuzzKeys = []signature.Key{
	{ID: 1, Secret: []byte(specKey), Schemes: bodyOnly},
	{ID: 2, Secret: []byte(otherKey), Schemes: uriOnly},
	{ID: 3, Secret: []byte("키-with-한글-and spaces"), Schemes: both},
}

// FuzzVerify checks Verify never panics, returns a key or one of its two
// sentinels, accepts only the canonical signature of an allowed scheme, and
// that Sign then Verify round-trips for any request. Seeds live in
// testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, ts, sig, path string) {
		got, err := signature.Verify(fuzzKeys, path, body, ts, sig)
		switch {
		case err == nil:
			ok := false
			for _, k := range fuzzKeys {
				if k.ID != got.ID {
					continue
				}
				for _, s := range k.Schemes {
					ok = ok || signature.Sign(k.Secret, s, path, body, ts) == sig
				}
			}
			if !ok {
				t.Fatalf("Verify(%q, ts=%q, sig=%q, path=%q) = key %d, but no scheme of that key signs to sig", body, ts, sig, path, got.ID)
			}
		case errors.Is(err, signature.ErrMissing):
			if sig != "" {
				t.Fatalf("Verify(sig=%q) = %v, want ErrMissing only for an empty sig", sig, err)
			}
		case errors.Is(err, signature.ErrMismatch):
			if sig == "" {
				t.Fatalf("Verify(sig=\"\") = %v, want ErrMissing", err)
			}
		default:
			t.Fatalf("Verify(%q, ts=%q, sig=%q, path=%q) = %v, want nil, ErrMissing or ErrMismatch", body, ts, sig, path, err)
		}
		if err != nil && (got.ID != 0 || got.Secret != nil) {
			t.Fatalf("Verify(sig=%q) = key %+v with error %v, want zero Key", sig, got, err)
		}

		// Property: Sign then Verify round-trips, and a signature is bound to its scheme.
		for _, k := range fuzzKeys {
			for _, s := range k.Schemes {
				signed := signature.Sign(k.Secret, s, path, body, ts)
				if got, err := signature.Verify(fuzzKeys, path, body, ts, signed); err != nil || got.ID != k.ID {
					t.Fatalf("Verify(Sign(key %d, %s), body=%q, ts=%q, path=%q) = key %d, %v, want key %d", k.ID, s, body, ts, path, got.ID, err, k.ID)
				}
				for _, spaced := range []string{" " + signed, signed + "\n", "Bearer " + signed} {
					if _, err := signature.Verify(fuzzKeys, path, body, ts, spaced); !errors.Is(err, signature.ErrMismatch) {
						t.Fatalf("Verify(sig=%q) = %v, want ErrMismatch", spaced, err)
					}
				}
				if path == "" {
					continue // both schemes sign the same bytes
				}
				other := signature.SchemeBody
				if s == signature.SchemeBody {
					other = signature.SchemeURIBody
				}
				wrong := []signature.Key{{ID: k.ID, Secret: k.Secret, Schemes: []signature.Scheme{other}}}
				if got, err := signature.Verify(wrong, path, body, ts, signed); !errors.Is(err, signature.ErrMismatch) {
					t.Fatalf("Verify(%s signature, %s-only key, path=%q) = key %d, %v, want ErrMismatch", s, other, path, got.ID, err)
				}
			}
		}
	})
}

// FuzzParseTimestamp checks ParseTimestamp never panics, accepts only digit
// strings within the window, and explains every rejection on one line.
func FuzzParseTimestamp(f *testing.F) {
	const window = 5 * time.Minute
	f.Fuzz(func(t *testing.T, ts string) {
		got, err := signature.ParseTimestamp(ts, testNow, window)
		if err == nil {
			if ts == "" || len(ts) > 19 || strings.TrimLeft(ts, "0123456789") != "" {
				t.Fatalf("ParseTimestamp(%q) = %v, nil, want an error for a non-digit string", ts, got)
			}
			if d := got.Sub(testNow); d < -window || d > window {
				t.Fatalf("ParseTimestamp(%q) = %v, %v from now, want within ±%v", ts, got, d, window)
			}
			if want := strings.TrimLeft(ts, "0"); strconv.FormatInt(got.UnixMilli(), 10) != want && !(want == "" && got.UnixMilli() == 0) {
				t.Fatalf("ParseTimestamp(%q) = %d ms, want %s", ts, got.UnixMilli(), want)
			}
			return
		}
		var te *signature.TimestampError
		if !errors.As(err, &te) {
			t.Fatalf("ParseTimestamp(%q) = %v, want *TimestampError", ts, err)
		}
		switch te.Reason {
		case signature.ReasonMissing, signature.ReasonMalformed, signature.ReasonTooOld, signature.ReasonTooNew:
		default:
			t.Fatalf("ParseTimestamp(%q) reason = %q, want one of the Reason constants", ts, te.Reason)
		}
		if te.Detail == "" || !utf8.ValidString(te.Detail) || strings.ContainsAny(te.Detail, "\r\n") || len(te.Detail) > 400 {
			t.Fatalf("ParseTimestamp(%q) detail = %q, want one bounded line of UTF-8", ts, te.Detail)
		}
	})
}
