// Package signature signs and verifies helpdesk requests: HMAC-SHA256 over the
// raw body (and, for one scheme, the request path) plus the X-TC-Timestamp
// value, sent as standard padded Base64 in the Authorization header.
//
// Decisions that callers rely on:
//
//   - A key's secret is the UTF-8 bytes of the key string exactly as the
//     helpdesk shows it. A key that looks like hex is never hex-decoded.
//   - The MAC is computed over the bytes exactly as received. Nothing is
//     trimmed, re-encoded or re-serialised, neither the body nor the header
//     values: a signature with surrounding whitespace or a trailing newline
//     does not verify.
//   - The Authorization value is the bare Base64 string. A value with an
//     auth-scheme prefix such as "Bearer " or "HMAC " is not accepted; the
//     helpdesk never sends one and accepting it would widen what verifies.
//   - Only standard padded Base64 of exactly 32 bytes is accepted: no
//     URL-safe alphabet, no missing padding, no line breaks.
//   - Comparison is constant-time (hmac.Equal), and errors never say which
//     part of a well-formed signature mismatched, nor which key came close.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Scheme names how the signed message is composed from a request.
type Scheme string

const (
	// SchemeBody signs the raw body followed by the timestamp (the spec's Java example; the default).
	SchemeBody Scheme = "body"
	// SchemeURIBody signs the request path, then the raw body, then the timestamp.
	SchemeURIBody Scheme = "uri_body"
)

// ErrMissing reports that the request carried no signature.
var ErrMissing = errors.New("signature missing")

// ErrMismatch reports that the signature is malformed or no key verifies it.
var ErrMismatch = errors.New("signature does not verify")

// ParseScheme returns the Scheme named exactly by s ("body" or "uri_body").
func ParseScheme(s string) (Scheme, error) {
	switch Scheme(s) {
	case SchemeBody, SchemeURIBody:
		return Scheme(s), nil
	}
	return "", fmt.Errorf("parse signature scheme %q: want %q or %q", s, SchemeBody, SchemeURIBody)
}

// Key is one verifying key with the schemes it accepts.
//
// Secret is the UTF-8 bytes of the key string exactly as the helpdesk shows
// it (never hex-decoded). A Key with an empty Secret or no known Schemes
// verifies nothing: there is no implicit default scheme at this level.
type Key struct {
	ID      int64    // returned by Verify so the caller knows which key matched
	Secret  []byte   // the key string's UTF-8 bytes, as shown by the helpdesk
	Schemes []Scheme // the schemes this key may verify
}

// Message returns the signed bytes for scheme, or nil for an unknown scheme.
//
// path is the request path as sent on the wire, without the query string and
// with any percent-encoding intact (what Java's getRequestURI returns); it is
// used only by SchemeURIBody. body and ts are used byte for byte.
func Message(scheme Scheme, path string, body []byte, ts string) []byte {
	switch scheme {
	case SchemeBody:
		msg := make([]byte, 0, len(body)+len(ts))
		msg = append(msg, body...)
		return append(msg, ts...)
	case SchemeURIBody:
		msg := make([]byte, 0, len(path)+len(body)+len(ts))
		msg = append(msg, path...)
		msg = append(msg, body...)
		return append(msg, ts...)
	}
	return nil
}

// Sign returns the standard padded Base64 of HMAC-SHA256(secret, Message(scheme, path, body, ts)), or "" for an unknown scheme.
func Sign(secret []byte, scheme Scheme, path string, body []byte, ts string) string {
	msg := Message(scheme, path, body, ts)
	if msg == nil {
		return ""
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(msg)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// sigLen is the length of the standard padded Base64 of a SHA-256 MAC.
const sigLen = 44 // base64.StdEncoding.EncodedLen(sha256.Size)

// Verify returns the first key that verifies sig over (path, body, ts) under any scheme the key allows.
//
// sig must be exactly the standard padded Base64 of a 32-byte MAC, as
// received: it is not trimmed and may carry no "Bearer "/"HMAC " prefix.
// The error is ErrMissing when sig is empty and wraps ErrMismatch otherwise;
// callers branch with errors.Is. For a malformed sig the wrapped text says
// what is wrong with its form (for the server log); for a well-formed sig it
// never says which part mismatched. Verify does not check the timestamp's
// value: call ParseTimestamp first.
func Verify(keys []Key, path string, body []byte, ts string, sig string) (Key, error) {
	if sig == "" {
		return Key{}, ErrMissing
	}
	var want [sha256.Size]byte
	if err := decodeSig(&want, sig); err != nil {
		return Key{}, err
	}

	// The path and timestamp are converted to bytes once, in one buffer; the
	// body is fed to the MAC in place, never copied.
	pt := make([]byte, len(path)+len(ts))
	copy(pt, path)
	copy(pt[len(path):], ts)
	pathB, tsB := pt[:len(path)], pt[len(path):]

	var sum [sha256.Size]byte
	for _, k := range keys {
		if len(k.Secret) == 0 {
			continue
		}
		var tried [2]bool // body, uri_body
		var mac hash.Hash
		for _, s := range k.Schemes {
			var i int
			switch s {
			case SchemeBody:
				i = 0
			case SchemeURIBody:
				i = 1
			default:
				continue
			}
			if tried[i] {
				continue
			}
			tried[i] = true
			if mac == nil {
				mac = hmac.New(sha256.New, k.Secret)
			} else {
				mac.Reset()
			}
			if s == SchemeURIBody {
				mac.Write(pathB)
			}
			mac.Write(body)
			mac.Write(tsB)
			if hmac.Equal(mac.Sum(sum[:0]), want[:]) {
				return k, nil
			}
		}
	}
	return Key{}, fmt.Errorf("no key verifies the signature (tried %d): %w", len(keys), ErrMismatch)
}

// decodeSig decodes sig into dst, accepting only standard padded Base64 of
// exactly 32 bytes. Its errors describe the form of sig (never its content
// beyond that) and wrap ErrMismatch.
func decodeSig(dst *[sha256.Size]byte, sig string) error {
	if len(sig) != sigLen || sig[sigLen-1] != '=' || !isStdBase64(sig[:sigLen-1]) {
		return fmt.Errorf("signature %s: %w", sigProblem(sig), ErrMismatch)
	}
	// isStdBase64 already excluded CR and LF, which the decoder would skip.
	var in [sigLen]byte
	copy(in[:], sig)
	var buf [sha256.Size + 1]byte // DecodedLen(44) == 33
	n, err := base64.StdEncoding.Strict().Decode(buf[:], in[:])
	if err != nil || n != sha256.Size {
		return fmt.Errorf("signature is not canonical standard Base64 of a 32-byte HMAC-SHA256: %w", ErrMismatch)
	}
	copy(dst[:], buf[:n])
	return nil
}

// isStdBase64 reports whether s consists only of the standard Base64 alphabet (no padding).
func isStdBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// sigProblem names, for an admin, what is wrong with the form of a malformed
// signature. It never echoes the value.
func sigProblem(sig string) string {
	lower := strings.ToLower(sig)
	switch {
	case strings.HasPrefix(lower, "bearer ") || strings.HasPrefix(lower, "hmac "):
		return "has an auth-scheme prefix; send the bare Base64 value"
	case strings.TrimSpace(sig) != sig:
		return "has leading or trailing whitespace or a line break"
	case strings.ContainsAny(sig, "\r\n"):
		return "contains a line break"
	case strings.ContainsAny(sig, "-_"):
		return "uses the URL-safe Base64 alphabet; want standard (+ and /) with padding"
	case len(sig) == sigLen-1 && isStdBase64(sig):
		return "lacks Base64 padding; want standard Base64 with '=' padding"
	case len(sig) == 2*sha256.Size && isHex(sig):
		return "looks like hex; want standard padded Base64 of the raw 32-byte HMAC"
	case len(sig) != sigLen:
		return fmt.Sprintf("is %d bytes long; want %d (standard padded Base64 of a 32-byte HMAC-SHA256)", len(sig), sigLen)
	default:
		return "is not standard padded Base64 of a 32-byte HMAC-SHA256"
	}
}

// isHex reports whether s consists only of hexadecimal digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
