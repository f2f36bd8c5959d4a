package signature_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/signature"
)

const nowMs = 1764466000000 // 2025-11-30T01:26:40.000Z

var testNow = time.UnixMilli(nowMs)

func ms(v int64) string { return strconv.FormatInt(v, 10) }

func TestParseTimestamp(t *testing.T) {
	const window = 5 * time.Minute
	tests := []struct {
		name   string
		ts     string
		window time.Duration // 0 means 5 min; negative counts as zero
		want   int64         // accepted epoch ms, when reason is ""
		reason string
		hints  []string // substrings Detail must contain
		not    []string // substrings Detail must not contain
	}{
		{name: "now", ts: ms(nowMs), want: nowMs},
		{name: "leading zeros", ts: "000" + ms(nowMs), want: nowMs},
		{name: "exactly window in the past", ts: ms(nowMs - 300_000), want: nowMs - 300_000},
		{name: "exactly window in the future", ts: ms(nowMs + 300_000), want: nowMs + 300_000},
		{name: "1 ms past window in the past", ts: ms(nowMs - 300_001), reason: signature.ReasonTooOld,
			hints: []string{"300.001 s in the past", "±300 s", "expected epoch milliseconds"}},
		{name: "1 ms past window in the future", ts: ms(nowMs + 300_001), reason: signature.ReasonTooNew,
			hints: []string{"300.001 s in the future", "±300 s"}},
		{name: "412 s old", ts: ms(nowMs - 412_000), reason: signature.ReasonTooOld,
			hints: []string{"timestamp 1764465588000 ms (2025-11-30T01:19:48.000Z) is 412 s in the past; server time is 1764466000000 ms (2025-11-30T01:26:40.000Z), allowed window ±300 s; expected epoch milliseconds"}},
		{name: "seconds instead of milliseconds", ts: ms(nowMs / 1000), reason: signature.ReasonTooOld,
			hints: []string{"looks like seconds; expected milliseconds", "server time is 1764466000000 ms"}},
		{name: "seconds from a skewed clock", ts: ms(nowMs/1000 - 3600), reason: signature.ReasonTooOld,
			hints: []string{"looks like seconds"}},
		{name: "microseconds", ts: ms(nowMs * 1000), reason: signature.ReasonTooNew, hints: []string{"looks like microseconds"}},
		{name: "nanoseconds", ts: ms(nowMs * 1_000_000), reason: signature.ReasonTooNew, hints: []string{"looks like nanoseconds"}},
		{name: "ms out of window has no unit hint", ts: ms(nowMs - 3_600_000), reason: signature.ReasonTooOld,
			not: []string{"looks like"}},
		{name: "zero", ts: "0", reason: signature.ReasonTooOld, hints: []string{"1970-01-01T00:00:00.000Z"}, not: []string{"looks like"}},
		{name: "max int64", ts: "9223372036854775807", reason: signature.ReasonTooNew, hints: []string{"in the future"}},
		{name: "zero window accepts now", ts: ms(nowMs), window: -1, want: nowMs},
		{name: "zero window rejects 1 ms", ts: ms(nowMs + 1), window: -1, reason: signature.ReasonTooNew, hints: []string{"0.001 s in the future", "±0 s"}},

		{name: "empty", ts: "", reason: signature.ReasonMissing, hints: []string{"missing", "1764466000000 ms"}},
		{name: "non-numeric", ts: "abc", reason: signature.ReasonMalformed, hints: []string{`"abc" is not digits only`}},
		{name: "negative", ts: "-" + ms(nowMs), reason: signature.ReasonMalformed, hints: []string{"sign"}},
		{name: "plus sign", ts: "+" + ms(nowMs), reason: signature.ReasonMalformed, hints: []string{"sign"}},
		{name: "30 digits", ts: strings.Repeat("1", 30), reason: signature.ReasonMalformed, hints: []string{"30 digits"}},
		{name: "20 digits", ts: "1" + strings.Repeat("0", 19), reason: signature.ReasonMalformed, hints: []string{"20 digits"}},
		{name: "19 digits over int64", ts: "9223372036854775808", reason: signature.ReasonMalformed, hints: []string{"too large"}},
		{name: "leading space", ts: " " + ms(nowMs), reason: signature.ReasonMalformed, hints: []string{"whitespace"}},
		{name: "trailing space", ts: ms(nowMs) + " ", reason: signature.ReasonMalformed, hints: []string{"whitespace"}},
		{name: "trailing newline", ts: ms(nowMs) + "\n", reason: signature.ReasonMalformed, hints: []string{"whitespace", `\n"`}},
		{name: "space inside", ts: "17644 66000000", reason: signature.ReasonMalformed, hints: []string{"whitespace"}},
		{name: "only space", ts: " ", reason: signature.ReasonMalformed, hints: []string{"whitespace"}},
		{name: "fractional seconds", ts: "1764466000.123", reason: signature.ReasonMalformed, hints: []string{"fraction"}},
		{name: "exponent", ts: "1.764466e12", reason: signature.ReasonMalformed},
		{name: "hex", ts: "0x19AD0E5A680", reason: signature.ReasonMalformed},
		{name: "full-width digits", ts: "１７６４４６６０００００００", reason: signature.ReasonMalformed},
		{name: "RFC 3339", ts: "2025-11-30T01:26:40Z", reason: signature.ReasonMalformed},
		{name: "long garbage is cut", ts: strings.Repeat("x", 5000), reason: signature.ReasonMalformed, hints: []string{"5000 bytes, cut"},
			not: []string{strings.Repeat("x", 33)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := window
			if tt.window != 0 {
				w = tt.window
			}
			got, err := signature.ParseTimestamp(tt.ts, testNow, w)
			if tt.reason == "" {
				if err != nil || !got.Equal(time.UnixMilli(tt.want)) || got.Location() != time.UTC {
					t.Errorf("ParseTimestamp(%q) = %v, %v, want %v UTC", tt.ts, got, err, time.UnixMilli(tt.want).UTC())
				}
				return
			}
			var te *signature.TimestampError
			if !errors.As(err, &te) {
				t.Fatalf("ParseTimestamp(%q) = %v, %v, want *TimestampError %s", tt.ts, got, err, tt.reason)
			}
			if !got.IsZero() {
				t.Errorf("ParseTimestamp(%q) time = %v with error, want zero", tt.ts, got)
			}
			if te.Reason != tt.reason {
				t.Errorf("ParseTimestamp(%q) reason = %q (%s), want %q", tt.ts, te.Reason, te.Detail, tt.reason)
			}
			for _, h := range tt.hints {
				if !strings.Contains(te.Detail, h) {
					t.Errorf("ParseTimestamp(%q) detail = %q, want it to contain %q", tt.ts, te.Detail, h)
				}
			}
			for _, h := range tt.not {
				if strings.Contains(te.Detail, h) {
					t.Errorf("ParseTimestamp(%q) detail = %q, want it not to contain %q", tt.ts, te.Detail, h)
				}
			}
			if strings.ContainsAny(te.Detail, "\r\n") {
				t.Errorf("ParseTimestamp(%q) detail = %q, want a single line", tt.ts, te.Detail)
			}
			if !strings.Contains(err.Error(), te.Detail) {
				t.Errorf("ParseTimestamp(%q) error = %q, want it to contain the detail", tt.ts, err)
			}
		})
	}
}

// TestParseTimestampSubMillisecondNow pins that now is taken to the millisecond at the window's edges.
func TestParseTimestampSubMillisecondNow(t *testing.T) {
	now := testNow.Add(999 * time.Microsecond)
	for _, tt := range []struct {
		name string
		ts   int64
		ok   bool
	}{
		{name: "edge past", ts: nowMs - 300_000, ok: true},
		{name: "edge future", ts: nowMs + 300_000, ok: true},
		{name: "beyond past", ts: nowMs - 300_001},
		{name: "beyond future", ts: nowMs + 300_001},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signature.ParseTimestamp(ms(tt.ts), now, 5*time.Minute)
			if (err == nil) != tt.ok {
				t.Errorf("ParseTimestamp(%d, now=%v) = %v, want ok=%v", tt.ts, now, err, tt.ok)
			}
		})
	}
}
