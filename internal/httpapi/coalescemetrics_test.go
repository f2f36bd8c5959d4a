package httpapi_test

import (
	"strings"
	"testing"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/lookup"
)

func TestCoalescerMetrics(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics(nil)
	counts := lookup.CoalescerCounters{Batches: 11, Batched: 42, Stalls: 3, Abandoned: 2, Rejected: 1}
	m.WatchCoalescer(func() lookup.CoalescerCounters { return counts })
	base := opsListen(t, httpapi.NewOpsHandler(httpapi.Config{}, m), "tcp4")
	lines := scrape(t, base+"/metrics")
	for series, want := range map[string]string{
		"custinfo_coalesce_stalls_bypassed_total":   "3",
		"custinfo_coalesce_batches_abandoned_total": "2",
		"custinfo_coalesce_queue_rejections_total":  "1",
	} {
		got, ok := metricValue(lines, series)
		if !ok {
			t.Errorf("/metrics has no %s", series)
			continue
		}
		if got != want {
			t.Errorf("/metrics %s = %s, want %s", series, got, want)
		}
	}
}

// A coalescer with nothing to count (coalescing off: a nil one) reports zeros.
func TestCoalescerMetricsNil(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics(nil)
	var c *lookup.Coalescer
	m.WatchCoalescer(c.Counters)
	base := opsListen(t, httpapi.NewOpsHandler(httpapi.Config{}, m), "tcp4")
	if got, ok := metricValue(scrape(t, base+"/metrics"), "custinfo_coalesce_queue_rejections_total"); !ok || got != "0" {
		t.Errorf("custinfo_coalesce_queue_rejections_total = %q (present %v), want 0", got, ok)
	}
}

// The coalescer's own counters do not repeat custinfo_coalesced_*.
func TestCoalescerMetricsNotRepeated(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics(nil)
	m.CoalescerStatsFunc = func() (uint64, uint64) { return 5, 9 }
	m.WatchCoalescer(func() lookup.CoalescerCounters { return lookup.CoalescerCounters{Batches: 5, Batched: 9} })
	base := opsListen(t, httpapi.NewOpsHandler(httpapi.Config{}, m), "tcp4")
	n := 0
	for _, l := range scrape(t, base+"/metrics") {
		if strings.HasPrefix(l, "custinfo_coalesce") && strings.HasSuffix(l, " 9") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d series count the 9 coalesced requests, want 1 (custinfo_coalesced_requests_total)", n)
	}
}
