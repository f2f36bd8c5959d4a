package signature

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strings"
)

// Bounds of Diagnose: the keys it tries and the bytes it may hash in all.
const (
	DiagnoseMaxKeys  = 8
	DiagnoseMaxBytes = 256 << 10
)

// Diagnose names, for the server log, the known mistake that explains a
// signature Verify refused: it recomputes the HMAC the way clients commonly
// get it wrong (a key with a trailing newline, hex- or Base64-decoded; the
// signature hex or URL-safe; the other scheme; the body re-serialised; the
// timestamp left out, in seconds or taken from the body) under each key, and
// returns how the first match was made, naming the key by id. It returns ""
// when no known mistake explains the signature.
//
// Call it only after Verify failed: it is slower than Verify (at most
// DiagnoseMaxKeys keys and DiagnoseMaxBytes hashed) and its answer belongs in
// the log, never in the response. It never reveals a secret or the expected
// signature, only which mistake fits.
func Diagnose(keys []Key, path string, body []byte, ts string, sig string) string {
	sigs := sigReadings(sig)
	if len(sigs) == 0 {
		return ""
	}
	if len(keys) > DiagnoseMaxKeys {
		keys = keys[:DiagnoseMaxKeys]
	}
	d := &diagnoser{sigs: sigs, budget: DiagnoseMaxBytes}
	msgs := messageVariants(body, ts)
	for _, k := range keys {
		if len(k.Secret) == 0 || len(k.Schemes) == 0 {
			continue
		}
		allowed := map[Scheme]bool{}
		for _, s := range k.Schemes {
			allowed[s] = true
		}
		// The right key and message: only the signature's form is wrong.
		for _, s := range []Scheme{SchemeBody, SchemeURIBody} {
			if !allowed[s] {
				continue
			}
			if form, ok := d.try(k.Secret, Message(s, path, body, ts)); ok && form != "" {
				return fmt.Sprintf("key %d verifies the signature %s; send the bare standard padded Base64 of the HMAC", k.ID, form)
			}
		}
		// The scheme the key does not accept.
		for _, s := range []Scheme{SchemeBody, SchemeURIBody} {
			if allowed[s] {
				continue
			}
			if form, ok := d.try(k.Secret, Message(s, path, body, ts)); ok {
				return fmt.Sprintf("the signature%s would verify as %s (%s) under key %d, which accepts only %s; "+
					"if the helpdesk signs that way, accept it with UPDATE custinfo.api_keys SET schemes = '{body,uri_body}' WHERE id = %d",
					sigForm(form), s, schemeParts(s), k.ID, schemeList(k.Schemes), k.ID)
			}
		}
		// The key as clients mangle it.
		for _, kv := range keyVariants(k.Secret) {
			for _, s := range k.Schemes {
				if form, ok := d.try(kv.secret, Message(s, path, body, ts)); ok {
					return fmt.Sprintf("the signature%s verifies with key %d %s; the key is its UTF-8 string exactly as the helpdesk shows it",
						sigForm(form), k.ID, kv.mistake)
				}
			}
		}
		// The message as clients mangle it.
		for _, mv := range msgs {
			for _, s := range k.Schemes {
				if form, ok := d.try(k.Secret, mv.message(s, path)); ok {
					return fmt.Sprintf("the signature%s verifies with key %d if %s", sigForm(form), k.ID, mv.mistake)
				}
			}
		}
		if d.budget <= 0 {
			return ""
		}
	}
	return ""
}

type diagnoser struct {
	sigs   []sigReading
	budget int
	mac    hash.Hash
	secret []byte
	sum    [sha256.Size]byte
}

// try reports whether HMAC(secret, msg) matches a reading of the signature,
// and that reading's form ("" for the canonical one).
func (d *diagnoser) try(secret, msg []byte) (string, bool) {
	if msg == nil || d.budget < len(msg) {
		d.budget = 0
		return "", false
	}
	d.budget -= len(msg)
	if d.mac == nil || !bytes.Equal(d.secret, secret) {
		d.mac = hmac.New(sha256.New, secret)
		d.secret = secret
	} else {
		d.mac.Reset()
	}
	d.mac.Write(msg)
	got := d.mac.Sum(d.sum[:0])
	for _, r := range d.sigs {
		if hmac.Equal(got, r.mac[:]) {
			return r.form, true
		}
	}
	return "", false
}

type sigReading struct {
	mac  [sha256.Size]byte
	form string // how it was encoded, "" when canonical
}

// sigReadings decodes sig every way a client may have encoded a 32-byte MAC.
func sigReadings(sig string) []sigReading {
	if len(sig) > 256 {
		return nil
	}
	var out []sigReading
	var forms []string
	s := sig
	lower := strings.ToLower(s)
	for _, p := range []string{"bearer ", "hmac ", "hmac-sha256 ", "sha256="} {
		if strings.HasPrefix(lower, p) {
			s = s[len(p):]
			forms = append(forms, "with an auth-scheme prefix")
			break
		}
	}
	if t := strings.TrimSpace(s); t != s {
		s = t
		forms = append(forms, "with surrounding whitespace or a line break")
	}
	add := func(b []byte, form string) {
		if len(b) != sha256.Size {
			return
		}
		var r sigReading
		copy(r.mac[:], b)
		r.form = strings.Join(append(append([]string(nil), forms...), form), ", ")
		r.form = strings.Trim(r.form, ", ")
		out = append(out, r)
	}
	for _, enc := range []struct {
		e    *base64.Encoding
		form string
	}{
		{base64.StdEncoding.Strict(), ""},
		{base64.RawStdEncoding.Strict(), "without Base64 padding"},
		{base64.URLEncoding.Strict(), "in URL-safe Base64"},
		{base64.RawURLEncoding.Strict(), "in URL-safe Base64 without padding"},
	} {
		if b, err := enc.e.DecodeString(s); err == nil {
			add(b, enc.form)
		}
	}
	if b, err := hex.DecodeString(s); err == nil {
		add(b, "hex-encoded")
	}
	// Base64 of the hex digest, as a library's hexdigest() fed to Base64 gives.
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 2*sha256.Size {
		if h, err := hex.DecodeString(string(b)); err == nil {
			add(h, "as Base64 of the hex digest")
		}
	}
	return out
}

// sigForm phrases a reading's form for the middle of a sentence.
func sigForm(form string) string {
	if form == "" {
		return ""
	}
	return " (sent " + form + ")"
}

type keyVariant struct {
	secret  []byte
	mistake string
}

// keyVariants are the ways clients mangle a key string before using it.
func keyVariants(secret []byte) []keyVariant {
	s := string(secret)
	out := []keyVariant{
		{[]byte(s + "\n"), "with a trailing newline added to the key (echo, or a key file read whole)"},
		{[]byte(s + "\r\n"), "with a trailing CR LF added to the key"},
		{[]byte(s + " "), "with a trailing space added to the key"},
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) > 0 {
		out = append(out, keyVariant{b, "hex-decoded (the client decodes the key as hex)"})
	}
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := e.Strict().DecodeString(s); err == nil && len(b) > 0 {
			out = append(out, keyVariant{b, "Base64-decoded (the client decodes the key as Base64)"})
			break
		}
	}
	if u := strings.ToUpper(s); u != s && isHex(s) {
		out = append(out, keyVariant{[]byte(u), "in upper case"})
	}
	return out
}

type messageVariant struct {
	body, ts []byte
	first    bool // the timestamp before the body
	mistake  string
}

// message composes the variant under scheme s.
func (m messageVariant) message(s Scheme, path string) []byte {
	if m.first {
		return Message(s, path, append(append([]byte(nil), m.ts...), m.body...), "")
	}
	return Message(s, path, m.body, string(m.ts))
}

// messageVariants are the ways clients compose the signed message wrongly:
// they vary the body and the timestamp; the scheme adds the path.
func messageVariants(body []byte, ts string) []messageVariant {
	out := []messageVariant{
		{body: body, mistake: "the timestamp is left out of the signed message (sign body + X-TC-Timestamp)"},
		{body: body, ts: []byte(ts), first: true, mistake: "the timestamp comes before the body in the signed message (sign body, then timestamp)"},
	}
	if len(ts) == 13 {
		out = append(out, messageVariant{body: body, ts: []byte(ts[:10]),
			mistake: "the signed timestamp is in seconds while X-TC-Timestamp is in milliseconds (sign the header's value exactly)"})
	}
	if n := len(body); n > 0 && body[n-1] == '\n' {
		out = append(out, messageVariant{body: bytes.TrimRight(body, "\r\n"), ts: []byte(ts),
			mistake: "the body is signed without the trailing line break it is sent with (sign the exact bytes sent)"})
	} else {
		out = append(out, messageVariant{body: append(append([]byte(nil), body...), '\n'), ts: []byte(ts),
			mistake: "the body is signed with a trailing line break it is sent without (sign the exact bytes sent)"})
	}
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil && !bytes.Equal(compact.Bytes(), body) {
		out = append(out, messageVariant{body: compact.Bytes(), ts: []byte(ts),
			mistake: "the body is signed compacted but sent with other whitespace: something re-serialises the JSON after signing (sign the exact bytes sent)"})
	}
	var indented bytes.Buffer
	if json.Indent(&indented, body, "", "  ") == nil && !bytes.Equal(indented.Bytes(), body) {
		out = append(out, messageVariant{body: indented.Bytes(), ts: []byte(ts),
			mistake: "the body is signed indented but sent with other whitespace: something re-serialises the JSON after signing (sign the exact bytes sent)"})
	}
	for _, f := range bodyTimestamps(body, ts) {
		out = append(out, messageVariant{body: body, ts: []byte(f.value),
			mistake: fmt.Sprintf("the signed timestamp is the body's %q field, not the X-TC-Timestamp header (sign the header's value)", f.name)})
	}
	return out
}

type bodyField struct{ name, value string }

// bodyTimestamps returns up to four top-level fields of a JSON object body
// whose value looks like an epoch timestamp (10 to 13 digits) other than ts.
func bodyTimestamps(body []byte, ts string) []bodyField {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return nil
	}
	var out []bodyField
	for name, raw := range obj {
		v := strings.Trim(string(raw), `"`)
		if len(v) < 10 || len(v) > 13 || v == ts || !isDigits(v) {
			continue
		}
		out = append(out, bodyField{name, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	if len(out) > 4 {
		out = out[:4]
	}
	return out
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func schemeParts(s Scheme) string {
	if s == SchemeURIBody {
		return "path + body + timestamp"
	}
	return "body + timestamp"
}

func schemeList(ss []Scheme) string {
	var out []string
	for _, s := range ss {
		out = append(out, string(s))
	}
	return strings.Join(out, ",")
}
