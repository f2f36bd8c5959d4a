// Package audit keeps the access log: one entry per lookup request, with the
// query value masked and hashed, queued in memory and written in batches.
//
// The query value is never stored in clear. Each row carries phone.Mask of
// it ("010****5678") and, when an audit key is configured, an HMAC-SHA256 of
// its normalised form under that key (query_hash), so an auditor who holds the
// key can find every lookup of one number without the log revealing numbers
// to anyone else. Without a key query_hash stays empty: an unkeyed hash of a
// phone number is no protection (the numbers of one country can be hashed
// exhaustively in minutes), so none is stored.
//
// The Writer masks and hashes in its own goroutine, not in the request's: an
// Entry is queued with the clear value, which stays in memory only until its
// batch is prepared and is never written. A lookup that matched the value as
// a phone number has already read it, with the request's own region, and
// passes its E.164 form along (QueryNormalized); other values are normalised
// by the Writer (see Normalize), which costs a parse of their own.
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custinfo/custinfo/internal/phone"
)

// DefaultRegion is the region national numbers are read in before hashing
// when none is configured.
const DefaultRegion = "KR"

// MinKeyLen is the audit key length below which callers should warn: a short
// key can be guessed from one known (number, hash) pair.
const MinKeyLen = 16

// maxLookupLen bounds the lookup name kept in an entry; names of real
// lookups are at most 100 characters, longer ones come from unknown paths.
const maxLookupLen = 128

// MaxQueryLen bounds the query value that is masked and hashed: a longer
// value is cut to its first MaxQueryLen bytes first (phone numbers are far
// shorter), so the queue's memory stays bounded.
const MaxQueryLen = 256

// Entry is one row of custinfo.access_log.
type Entry struct {
	At        time.Time
	RequestID string
	Lookup    string
	KeyID     int64      // 0: no key verified the request (stored as NULL)
	ClientIP  netip.Addr // zero: unknown (stored as NULL)
	Code      string
	Status    int
	Latency   time.Duration
	// Query is the query value in clear. It is never stored: the Writer
	// replaces it with QueryMasked and QueryHash (see Hasher.Query) before
	// the entry's batch is written.
	Query string
	// QueryNormalized, when set, is Query's E.164 form as the lookup read
	// it; it is hashed instead of Normalize(Query), and never stored.
	QueryNormalized string
	// QueryMasked and QueryHash stand for the query value; see Hasher.Query.
	QueryMasked string
	QueryHash   string
	// Queried reports whether the lookup's query ran; Matches is stored only
	// then (NULL otherwise).
	Queried bool
	Matches int64
}

// Hasher masks and hashes query values under one audit key.
type Hasher struct {
	key    []byte
	region string
}

// NewHasher returns a Hasher for key (its UTF-8 bytes; empty: no hashing)
// that reads national phone numbers in region (an ISO code such as "KR" or a
// calling code such as "82"; empty: DefaultRegion).
func NewHasher(key, region string) Hasher {
	if region == "" {
		region = DefaultRegion
	}
	return Hasher{key: []byte(key), region: region}
}

// Keyed reports whether the Hasher has a key, so that Hash returns hashes.
func (h Hasher) Keyed() bool { return len(h.key) > 0 }

// Query returns what the access log keeps of a clear query value: its mask
// and its hash (empty without a key). normalized, when not empty, is the
// value's E.164 form as the lookup read it, and is what gets hashed; else
// Normalize(value) is. An empty value gives two empty strings.
func (h Hasher) Query(value, normalized string) (masked, hash string) {
	if value == "" {
		return "", ""
	}
	value = cutText(value, MaxQueryLen)
	if normalized == "" || len(h.key) == 0 {
		return phone.Mask(value), h.Hash(value)
	}
	return phone.Mask(value), h.hash(normalized)
}

// Hash returns the hex HMAC-SHA256 of Normalize(value, region) under the key,
// or "" when the Hasher has no key or value is empty. Only the first
// MaxQueryLen bytes of value count.
func (h Hasher) Hash(value string) string {
	if len(h.key) == 0 || value == "" {
		return ""
	}
	return h.hash(Normalize(cutText(value, MaxQueryLen), h.region))
}

// hash returns the hex HMAC-SHA256 of normalized under the key.
func (h Hasher) hash(normalized string) string {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(normalized))
	return hex.EncodeToString(m.Sum(nil))
}

// HashQuery returns the query_hash that the access log stores for value
// under key, reading national numbers in region (for a value a lookup matched
// as a phone number, the region that lookup read it in): what an auditor
// computes to search the log for one number (custinfo access-log hash).
func HashQuery(key, value, region string) string {
	return NewHasher(key, region).Hash(value)
}

// Normalize returns the form of value that is hashed: its E.164 spelling
// when it parses as a phone number in region (so "010-1234-5678",
// "+82 10 1234 5678" and "01012345678" with region KR are one value), else
// value without surrounding white space.
func Normalize(value, region string) string {
	if sp, err := phone.Spellings(value, region); err == nil && len(sp) > 0 {
		return sp[0]
	}
	return strings.TrimSpace(value)
}

// clean makes the entry's free-text fields storable in a text column (valid
// UTF-8, no NUL bytes, bounded length; a row PostgreSQL rejects would fail
// its whole batch) and bounds the clear query value it holds.
func (e *Entry) clean() {
	e.Lookup = cleanText(e.Lookup, maxLookupLen)
	e.RequestID = cleanText(e.RequestID, maxLookupLen)
	e.Code = cleanText(e.Code, maxLookupLen)
	e.QueryMasked = cleanText(e.QueryMasked, maxLookupLen)
	e.QueryHash = cleanText(e.QueryHash, maxLookupLen)
	e.Query = cutText(e.Query, MaxQueryLen)
	e.QueryNormalized = cutText(e.QueryNormalized, MaxQueryLen)
}

// redact replaces the clear query value by its mask and hash.
func (e *Entry) redact(h Hasher) {
	if e.Query == "" {
		return
	}
	e.QueryMasked, e.QueryHash = h.Query(e.Query, e.QueryNormalized)
	e.QueryMasked = cleanText(e.QueryMasked, maxLookupLen)
	e.Query, e.QueryNormalized = "", ""
}

func cleanText(s string, max int) string {
	if len(s) <= max && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	return cutText(s, max)
}

// cutText returns s cut to at most max bytes, at a rune boundary when s is
// valid UTF-8.
func cutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	return s[:cut]
}
