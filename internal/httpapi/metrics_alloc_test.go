package httpapi

import (
	"testing"
	"time"
)

func TestMetricsObserveDoesNotAllocate(t *testing.T) {
	m := NewMetrics(nil)
	o := &Outcome{Lookup: "customer", Verified: true, Code: "ok", Latency: 3 * time.Millisecond}
	m.observe(o) // the first request of a lookup and code creates its series
	denied := &Outcome{Lookup: "scan-me", Code: "access_denied", Latency: time.Millisecond}
	m.observe(denied)
	if n := testing.AllocsPerRun(1000, func() {
		m.observe(o)
		m.observe(denied)
	}); n != 0 {
		t.Errorf("observe of cached series allocates %.1f times per call, want 0", n)
	}
}
