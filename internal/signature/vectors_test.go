package signature_test

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/signature"
)

// vector is one record of testdata/vectors.txt, made by openssl (see gen_vectors.sh).
type vector struct {
	line                                        int
	name, scheme, key, path, body, ts, cmd, sig string
}

// readVectors parses testdata/vectors.txt: blank-line separated records of
// "field: value" lines, the value taken byte for byte.
func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var (
		out  []vector
		cur  vector
		seen = map[string]bool{}
	)
	flush := func() {
		if len(seen) == 0 {
			return
		}
		for _, f := range []string{"name", "scheme", "key", "path", "body", "ts", "cmd", "sig"} {
			if !seen[f] {
				t.Fatalf("vectors.txt:%d: record %q lacks field %q", cur.line, cur.name, f)
			}
		}
		out = append(out, cur)
		cur, seen = vector{}, map[string]bool{}
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			flush()
			continue
		}
		field, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("vectors.txt:%d: no field name in %q", n, line)
		}
		if value != "" {
			if value, ok = strings.CutPrefix(value, " "); !ok {
				t.Fatalf("vectors.txt:%d: want \"field: value\", got %q", n, line)
			}
		}
		if len(seen) == 0 {
			cur.line = n
		}
		if seen[field] {
			t.Fatalf("vectors.txt:%d: field %q repeated", n, field)
		}
		seen[field] = true
		switch field {
		case "name":
			cur.name = value
		case "scheme":
			cur.scheme = value
		case "key":
			cur.key = value
		case "path":
			cur.path = value
		case "body":
			cur.body = value
		case "ts":
			cur.ts = value
		case "cmd":
			cur.cmd = value
		case "sig":
			cur.sig = value
		default:
			t.Fatalf("vectors.txt:%d: unknown field %q", n, field)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return out
}

func TestVectors(t *testing.T) {
	vectors := readVectors(t)
	// The brief asks for these to be among the vectors; fail loudly if someone drops them.
	for _, want := range []string{"spec-example-body", "spec-example-uri-body", "korean-body", "escaped-unicode-body", "empty-body"} {
		found := false
		for _, v := range vectors {
			found = found || v.name == want
		}
		if !found {
			t.Errorf("vectors.txt lacks vector %q", want)
		}
	}

	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			scheme, err := signature.ParseScheme(v.scheme)
			if err != nil {
				t.Fatal(err)
			}
			body := []byte(v.body)

			// The recorded command signs exactly Message(...) with exactly the key.
			wantCmd := "printf '%s' '" + string(signature.Message(scheme, v.path, body, v.ts)) +
				"' | openssl dgst -sha256 -hmac '" + v.key + "' -binary | base64"
			if v.cmd != wantCmd {
				t.Errorf("vector %s: cmd = %q, want %q", v.name, v.cmd, wantCmd)
			}

			if got := signature.Sign([]byte(v.key), scheme, v.path, body, v.ts); got != v.sig {
				t.Errorf("Sign(%q, %q, %q, %q, %q) = %q, want %q", v.key, scheme, v.path, v.body, v.ts, got, v.sig)
			}

			keys := []signature.Key{
				{ID: 1, Secret: []byte("not-" + v.key), Schemes: []signature.Scheme{signature.SchemeBody, signature.SchemeURIBody}},
				{ID: 7, Secret: []byte(v.key), Schemes: []signature.Scheme{scheme}},
			}
			got, err := signature.Verify(keys, v.path, body, v.ts, v.sig)
			if err != nil || got.ID != 7 {
				t.Errorf("Verify(%q, path=%q, ts=%q) = key %d, %v, want key 7", v.body, v.path, v.ts, got.ID, err)
			}

			// The other scheme's key must not verify it (unless the path is empty,
			// when both schemes sign the same bytes).
			other := signature.SchemeURIBody
			path := v.path
			if scheme == signature.SchemeURIBody {
				other = signature.SchemeBody
			} else {
				path = "/v1/lookups/customer"
			}
			wrong := []signature.Key{{ID: 9, Secret: []byte(v.key), Schemes: []signature.Scheme{other}}}
			if got, err := signature.Verify(wrong, path, body, v.ts, v.sig); err == nil {
				t.Errorf("Verify(%s vector, %s-only key, path=%q) = key %d, want error", scheme, other, path, got.ID)
			}
		})
	}
}
