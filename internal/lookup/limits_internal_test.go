package lookup

import (
	"testing"
	"time"
)

func TestStallLimits(t *testing.T) {
	t.Parallel()
	c := NewCoalescer(CoalescerConfig{})
	for _, tt := range []struct {
		latency        time.Duration
		stall, abandon time.Duration
	}{
		{0, 200 * time.Millisecond, 200 * time.Millisecond},                      // no history yet (connections still opening)
		{time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond},         // an indexed lookup
		{20 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond},    // a slower view
		{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, // a slow database: later requests wait at most 200 ms,
		{time.Second, 200 * time.Millisecond, 4 * time.Second},                   // but its coalesced queries are not thrown away
	} {
		q := &batchQueue{latency: tt.latency}
		if stall, abandon := c.limits(q); stall != tt.stall || abandon != tt.abandon {
			t.Errorf("limits at latency %v = %v, %v; want %v, %v", tt.latency, stall, abandon, tt.stall, tt.abandon)
		}
	}
}

func TestObserveLatency(t *testing.T) {
	t.Parallel()
	q := &batchQueue{}
	q.observe(2 * time.Millisecond)
	if q.latency != 2*time.Millisecond {
		t.Fatalf("first sample: latency %v, want 2ms", q.latency)
	}
	// One 3 s query (the slow neighbour) counts as at most 8 × 2 ms.
	q.observe(3 * time.Second)
	if want := 2*time.Millisecond + (16*time.Millisecond-2*time.Millisecond)/8; q.latency != want {
		t.Errorf("after one slow query: latency %v, want %v", q.latency, want)
	}
	// A database that stays slow moves the average there.
	for range 60 {
		q.observe(300 * time.Millisecond)
	}
	if q.latency < 250*time.Millisecond {
		t.Errorf("after 60 queries of 300ms: latency %v, want near 300ms", q.latency)
	}
}
