package signature

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Reasons a timestamp is rejected, as found in TimestampError.Reason.
const (
	// ReasonMissing means the timestamp was empty or absent.
	ReasonMissing = "missing"
	// ReasonMalformed means the timestamp is not 1 to 19 ASCII digits denoting an int64.
	ReasonMalformed = "malformed"
	// ReasonTooOld means the timestamp is further in the past than the window allows.
	ReasonTooOld = "too_old"
	// ReasonTooNew means the timestamp is further in the future than the window allows.
	ReasonTooNew = "too_new"
)

// maxDigits is the most digits a timestamp may have (math.MaxInt64 has 19).
const maxDigits = 19

// TimestampError explains why a timestamp was rejected; timestamps are not secret, so Detail may be shown to the caller.
type TimestampError struct {
	// Reason is one of the Reason* constants, stable for machines.
	Reason string
	// Detail is a sentence for the admin who is debugging, with the server's time and the window.
	Detail string
}

// Error returns the reason and the detail.
func (e *TimestampError) Error() string {
	return "timestamp " + e.Reason + ": " + e.Detail
}

// ParseTimestamp returns the instant ts denotes if it is epoch milliseconds, digits only, within ±window of now.
//
// ts must be 1 to 19 ASCII digits: no sign, no spaces, no fraction; leading
// zeros are allowed. It is accepted when exactly window away from now and
// rejected 1 ms beyond; now is taken to the millisecond and a negative window
// counts as zero. Every error is a *TimestampError.
func ParseTimestamp(ts string, now time.Time, window time.Duration) (time.Time, error) {
	nowMs := now.UnixMilli()
	if ts == "" {
		return time.Time{}, &TimestampError{
			Reason: ReasonMissing,
			Detail: fmt.Sprintf("X-TC-Timestamp is missing or empty; expected epoch milliseconds, digits only; server time is %s", showMs(nowMs)),
		}
	}
	v, problem := parseDigits(ts)
	if problem != "" {
		return time.Time{}, &TimestampError{
			Reason: ReasonMalformed,
			Detail: fmt.Sprintf("timestamp %s %s; expected epoch milliseconds, digits only; server time is %s", quoteShort(ts), problem, showMs(nowMs)),
		}
	}

	windowMs := max(window.Milliseconds(), 0)
	diff := subSat(v, nowMs) // > 0: in the future
	if diff >= -windowMs && diff <= windowMs {
		return time.UnixMilli(v).UTC(), nil
	}

	reason, when := ReasonTooOld, "in the past"
	if diff > 0 {
		reason, when = ReasonTooNew, "in the future"
	}
	return time.Time{}, &TimestampError{
		Reason: reason,
		Detail: fmt.Sprintf("timestamp %s is %s s %s; server time is %s, allowed window ±%s s; %s",
			showMs(v), formatSeconds(absSat(diff)), when, showMs(nowMs), formatSeconds(windowMs), unitHint(v, nowMs)),
	}
}

// parseDigits parses ts as 1..19 ASCII digits, returning a short description of the problem if it is not.
func parseDigits(ts string) (int64, string) {
	digitsOnly := true
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			digitsOnly = false
			break
		}
	}
	switch {
	case !digitsOnly && strings.ContainsAny(ts, " \t\r\n\v\f"):
		return 0, "contains whitespace"
	case !digitsOnly && (ts[0] == '+' || ts[0] == '-'):
		return 0, "has a sign"
	case !digitsOnly && strings.ContainsAny(ts, ".,"):
		return 0, "has a fraction"
	case !digitsOnly:
		return 0, "is not digits only"
	case len(ts) > maxDigits:
		return 0, fmt.Sprintf("has %d digits, more than %d", len(ts), maxDigits)
	}
	v, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "is too large for epoch milliseconds"
	}
	return v, ""
}

// unitHint says which unit v looks like when it is not milliseconds near nowMs.
func unitHint(v, nowMs int64) string {
	if nowMs > 0 && v > 0 {
		switch {
		case v <= math.MaxInt64/1000 && near(v*1000, nowMs):
			return "looks like seconds; expected milliseconds"
		case near(v/1000, nowMs):
			return "looks like microseconds; expected milliseconds"
		case near(v/1_000_000, nowMs):
			return "looks like nanoseconds; expected milliseconds"
		}
	}
	return "expected epoch milliseconds; check the caller's clock"
}

// near reports whether x is within a factor of two of ref (both positive).
func near(x, ref int64) bool {
	return x >= ref/2 && x/2 <= ref
}

// showMs formats epoch milliseconds with their UTC date, e.g. "1764466000000 ms (2025-11-30T01:26:40.000Z)".
func showMs(ms int64) string {
	t := time.UnixMilli(ms).UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return strconv.FormatInt(ms, 10) + " ms"
	}
	return strconv.FormatInt(ms, 10) + " ms (" + t.Format("2006-01-02T15:04:05.000Z07:00") + ")"
}

// formatSeconds formats a non-negative number of milliseconds as seconds without trailing zeros, e.g. 300000 → "300", 300001 → "300.001".
func formatSeconds(ms int64) string {
	s := strconv.FormatInt(ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%03d", frac), "0")
	}
	return s
}

// quoteShort quotes s for a message, cut to a bounded length so a hostile header cannot flood a log.
func quoteShort(s string) string {
	const limit = 32
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + fmt.Sprintf(" (%d bytes, cut)", len(s))
	}
	return strconv.Quote(s)
}

// subSat returns a-b, saturated at the int64 limits.
func subSat(a, b int64) int64 {
	d := a - b
	if (b < 0 && d < a) || (b > 0 && d > a) {
		if b < 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return d
}

// absSat returns |x|, with math.MinInt64 mapped to math.MaxInt64.
func absSat(x int64) int64 {
	if x >= 0 {
		return x
	}
	if x == math.MinInt64 {
		return math.MaxInt64
	}
	return -x
}
