package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/signature"
)

// timingKey is the key of timingSQL's lookups.
const timingKey = "timing-key-0123456789abcdef"

// timingSQL defines a lookup for each way a request can be refused before
// its signature is checked, and one that checks it.
const timingSQL = `
CREATE TABLE people (id int PRIMARY KEY, name text, phone text);
INSERT INTO people VALUES (1, 'Kim', '010-1234-5678');
INSERT INTO custinfo.lookups (name, source, enabled, allowed_networks) VALUES
    ('open', 'people', true, NULL), ('off', 'people', false, NULL),
    ('far', 'people', true, '{10.0.0.0/8}'), ('keyless', 'people', true, NULL);
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required)
    SELECT name, 'callNum', 'phone', 'exact', true FROM custinfo.lookups;
INSERT INTO custinfo.lookup_results (lookup, field, source_column)
    SELECT name, 'userName', 'name' FROM custinfo.lookups;
INSERT INTO custinfo.api_keys (lookup, secret) VALUES
    ('open', '` + timingKey + `'), ('off', '` + timingKey + `'), ('far', '` + timingKey + `');
`

// timingServer returns a server over timingSQL whose verifications are
// counted: calls[i] is the number of keys of the i-th call.
func timingServer(t testing.TB) (s *server, h http.Handler, calls func() []int) {
	t.Helper()
	pool := pgtest.New(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, timingSQL); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	holder := reload.New(reload.Config{Pool: pool})
	if err := holder.Load(ctx); err != nil {
		t.Fatalf("load config: %v", err)
	}
	s = newServer(Config{SnapshotFunc: holder.Snapshot, DB: pool})
	var mu sync.Mutex
	var n []int
	s.verify = func(keys []signature.Key, path string, body []byte, ts, sig string) (signature.Key, error) {
		mu.Lock()
		n = append(n, len(keys))
		mu.Unlock()
		return signature.Verify(keys, path, body, ts, sig)
	}
	return s, s.handler(), func() []int {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(n)
		n = n[:0]
		return out
	}
}

// timingRequest returns a request for lookup with body, signed with key.
func timingRequest(lookup, key, body string) *http.Request {
	path := "/v1/lookups/" + lookup
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-TC-Timestamp", ts)
	r.Header.Set("Authorization", signature.Sign([]byte(key), signature.SchemeBody, path, []byte(body), ts))
	return r
}

// TestDenialsVerifyOnce checks that every 403 costs one HMAC verification,
// whether or not the request got as far as its lookup's keys: the time of
// the answer must not tell which it was.
func TestDenialsVerifyOnce(t *testing.T) {
	t.Parallel()
	_, h, calls := timingServer(t)
	const body = `{"callNum":"010-1234-5678"}`
	tests := []struct {
		name, lookup, key string
		status            int
	}{
		{"signed", "open", timingKey, 200},
		{"wrong signature", "open", "wrong-key-0123456789abcdef", 403},
		{"unknown lookup", "nosuch", timingKey, 403},
		{"disabled lookup", "off", timingKey, 403},
		{"outside allowed_networks", "far", timingKey, 403},
		{"no key for the lookup", "keyless", timingKey, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, timingRequest(tt.lookup, tt.key, body))
			if w.Code != tt.status {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tt.status)
			}
			if got := calls(); len(got) != 1 || got[0] != 1 {
				t.Errorf("verifications (keys each) = %v, want one with one key", got)
			}
		})
	}
}

// BenchmarkDenialTiming answers, alternately, requests for an unknown lookup
// and requests for a known one with a wrong signature, timing each, and
// reports the median of each and their ratio (unknown / wrong signature).
// Before the denials verified a decoy key, an unknown lookup was answered
// without any HMAC, measurably sooner for large bodies.
func BenchmarkDenialTiming(b *testing.B) {
	_, h, _ := timingServer(b)
	for _, size := range []int{40, 32 << 10} {
		body := `{"callNum":"010-1234-5678","pad":"` + strings.Repeat("x", max(0, size-40)) + `"}`
		b.Run("body="+strconv.Itoa(len(body)), func(b *testing.B) {
			unknown := timingRequest("nosuch", timingKey, body)
			wrong := timingRequest("open", "wrong-key-0123456789abcdef", body)
			var tu, tw []float64
			run := func(r *http.Request, into *[]float64) {
				r.Body = http.NoBody
				r2 := r.Clone(context.Background())
				r2.Body = readCloser{strings.NewReader(body)}
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, r2)
				*into = append(*into, float64(time.Since(start).Nanoseconds()))
				if w.Code != http.StatusForbidden {
					b.Fatalf("status %d, want 403", w.Code)
				}
			}
			for b.Loop() {
				run(unknown, &tu)
				run(wrong, &tw)
			}
			mu, mw := median(tu), median(tw)
			b.ReportMetric(mu, "unknown-median-ns")
			b.ReportMetric(mw, "wrongsig-median-ns")
			b.ReportMetric(mu/mw, "ratio")
			// The means include the few denials per second that are
			// diagnosed for the log, on both paths alike.
			b.ReportMetric(mean(tu), "unknown-mean-ns")
			b.ReportMetric(mean(tw), "wrongsig-mean-ns")
		})
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func mean(v []float64) float64 {
	var sum float64
	for _, x := range v {
		sum += x
	}
	return sum / float64(max(1, len(v)))
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}
