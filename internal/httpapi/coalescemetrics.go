package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/custinfo/custinfo/internal/lookup"
)

// WatchCoalescer adds the coalescer's stall, abandonment and queue
// counters to the metrics (its queries and requests are
// CoalescerStatsFunc's); counters is read when /metrics is scraped (pass
// (*lookup.Coalescer).Counters). Call it once, before the server starts.
func (m *Metrics) WatchCoalescer(counters func() lookup.CoalescerCounters) {
	m.reg.MustRegister(coalescerCollector(counters))
}

// coalescerCollector reports a coalescer's counters when scraped.
type coalescerCollector func() lookup.CoalescerCounters

var (
	descCoalesceStalls = prometheus.NewDesc("custinfo_coalesce_stalls_bypassed_total",
		"Queries that ran past the stall limit (a multiple of their lookup's recent latency) and stopped holding later requests back.", nil, nil)
	descCoalesceAbandoned = prometheus.NewDesc("custinfo_coalesce_batches_abandoned_total",
		"Coalesced queries given up (stalled, out of their earliest request's time, or failed); their requests were answered by running alone.", nil, nil)
	descCoalesceRejected = prometheus.NewDesc("custinfo_coalesce_queue_rejections_total",
		"Requests refused (500 database_error) because too many requests of their lookup were already waiting.", nil, nil)
)

// Describe sends every metric the collector reports.
func (f coalescerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descCoalesceStalls, descCoalesceAbandoned, descCoalesceRejected,
	} {
		ch <- d
	}
}

// Collect reads the counters now.
func (f coalescerCollector) Collect(ch chan<- prometheus.Metric) {
	c := f()
	for _, m := range []struct {
		d *prometheus.Desc
		v uint64
	}{
		{descCoalesceStalls, c.Stalls},
		{descCoalesceAbandoned, c.Abandoned},
		{descCoalesceRejected, c.Rejected},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
}
