package main

import (
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/signature"
)

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := percentiles(d, 0.5, 0.99, 1)
	want := []time.Duration{50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("percentiles (-want +got):\n%s", diff)
	}
	if got := percentiles(nil, 0.5); got[0] != 0 {
		t.Errorf("percentiles(nil) = %v, want 0", got)
	}
}

func TestParseMetrics(t *testing.T) {
	body := []byte(`# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 13
process_resident_memory_bytes 2.8311552e+07
custinfo_config_reloads_total{result="ok"} 4
`)
	got := parseMetrics(body)
	want := map[string]float64{
		"go_goroutines":                              13,
		"process_resident_memory_bytes":              28311552,
		`custinfo_config_reloads_total{result="ok"}`: 4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
}

// TestBuild checks the load's requests have the form each kind promises.
func TestBuild(t *testing.T) {
	key := &apiKey{id: 1, secret: []byte("k")}
	l := &loader{customers: []customer{{digits: "12345678", name: "n", no: "C-1"}}, misses: []string{"87654321"}, maxBody: 1000}
	l.cur.Store(key)
	r := mrand.New(mrand.NewPCG(1, 1))
	for range 2000 {
		req := l.next(r)
		switch req.kind {
		case kindValid, kindMiss:
			var v map[string]any
			if err := json.Unmarshal(req.body, &v); err != nil || v["callNum"] == nil {
				t.Fatalf("%s body %q: %v, want a JSON object with callNum", kindNames[req.kind], req.body, err)
			}
			if req.auth == nil || *req.auth != signature.Sign(key.secret, signature.SchemeBody, "", req.body, *req.ts) {
				t.Fatalf("%s request is not signed with the current key", kindNames[req.kind])
			}
		case kindBadSignature:
			if req.auth != nil && req.ts != nil && *req.auth == signature.Sign(key.secret, signature.SchemeBody, "", req.body, *req.ts) {
				t.Fatalf("bad-signature request %q carries a valid signature", req.body)
			}
			if !slices.Equal(req.want, []int{http.StatusForbidden}) {
				t.Fatalf("bad-signature request wants %v, want [403]", req.want)
			}
		case kindHostile:
			if slices.Contains(req.want, http.StatusRequestEntityTooLarge) && len(req.body) <= l.maxBody {
				t.Fatalf("oversized body has %d bytes, want more than %d", len(req.body), l.maxBody)
			}
		case kindBadTimestamp:
			if req.ts != nil && *req.ts != "" {
				if _, err := signature.ParseTimestamp(*req.ts, time.Now(), 5*time.Minute); err == nil {
					t.Fatalf("bad-timestamp request has an acceptable timestamp %q", *req.ts)
				}
			}
		}
	}
}
