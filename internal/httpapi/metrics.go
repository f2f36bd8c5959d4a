package httpapi

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// UnknownLookup is the lookup label of every request whose signature did not
// verify: a request names its lookup in the metrics only once a key proved it
// was made for that lookup. So /metrics tells nobody which names exist, and a
// scanner trying names cannot create new series.
const UnknownLookup = "_unknown"

// DurationBuckets are the request latency histogram's upper bounds, in
// seconds: from half a millisecond (a cached config and an indexed lookup) to
// five seconds (past any helpdesk's patience).
var DurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// ReadyTimeout bounds the readiness check run at each scrape.
const ReadyTimeout = time.Second

// PoolStater is what the metrics read from the database pool; *pgxpool.Pool satisfies it.
type PoolStater interface {
	Stat() *pgxpool.Stat
}

// Metrics counts lookup requests and exposes them, with the pool's and the
// access log's figures, in Prometheus text format from its own registry.
//
// The Func fields are read when /metrics is scraped; set them before the
// server starts. A nil Func leaves its metric out.
type Metrics struct {
	// AccessLogQueueDepthFunc returns the number of access-log rows waiting to be written.
	AccessLogQueueDepthFunc func() int
	// AccessLogWrittenFunc returns the number of access-log rows written since start.
	AccessLogWrittenFunc func() uint64
	// AccessLogDroppedFunc returns the number of access-log rows dropped because the queue was full.
	AccessLogDroppedFunc func() uint64
	// AccessLogFailedWritesFunc returns the number of access-log batch writes that failed (each retry counts).
	AccessLogFailedWritesFunc func() uint64
	// AccessLogPartitionsFunc reports whether the last attempt to create the
	// access log's partitions ahead succeeded; known is false before the
	// first attempt ends.
	AccessLogPartitionsFunc func() (ok, known bool)
	// TLSCertNotAfterFunc returns the expiry of the served TLS certificate.
	TLSCertNotAfterFunc func() time.Time
	// ReplicasFunc returns the state of the read replicas.
	ReplicasFunc func() []ReplicaState
	// ReadyFunc is the readiness check of /readyz, run at each scrape for
	// custinfo_ready with a deadline of ReadyTimeout.
	ReadyFunc func(ctx context.Context) error
	// CoalescerStatsFunc returns the number of coalesced queries run and of
	// the requests they answered (lookup.Coalescer.Stats).
	CoalescerStatsFunc func() (queries, requests uint64)

	pools []namedPool // set before the server starts

	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	reloadOK prometheus.Counter
	reloadNo prometheus.Counter
	// ambiguous counts answers chosen among several matching rows.
	ambiguous *prometheus.CounterVec

	mu      sync.Mutex // serialises additions to lookups
	lookups atomic.Pointer[map[string]*lookupMetrics]
	replay  atomic.Pointer[replayGuard] // set by New
}

// ReplicaState is a read replica as the metrics report it.
type ReplicaState struct {
	// Name is the replica's host:port.
	Name   string
	Usable bool
	// Lag is the replica's lag in seconds (+Inf when unknown).
	Lag float64
}

type namedPool struct {
	name string
	pool PoolStater
}

// AddPool reports pool as custinfo_db_pool_*{pool=name}. Call it before the
// server starts.
func (m *Metrics) AddPool(name string, pool PoolStater) {
	m.pools = append(m.pools, namedPool{name, pool})
}

// lookupMetrics caches the series of one lookup label, so counting a request
// costs two map reads and no label hashing.
type lookupMetrics struct {
	name      string
	duration  prometheus.Observer
	ambiguous prometheus.Counter
	codes     atomic.Pointer[map[string]prometheus.Counter]
}

// NewMetrics returns metrics in a new registry. pool, when not nil, is
// reported as custinfo_db_pool_*{pool="primary"}.
func NewMetrics(pool PoolStater) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custinfo_requests_total",
			Help: "Lookup requests answered, by lookup and outcome code (ok or the error envelope's code).",
		}, []string{"lookup", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "custinfo_request_duration_seconds",
			Help:    "Time from receiving a lookup request to its answer, by lookup.",
			Buckets: DurationBuckets,
		}, []string{"lookup"}),
		ambiguous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "custinfo_lookup_ambiguous_total",
			Help: "Lookup answers chosen among several matching rows (a number shared by a family or a switchboard), by lookup; the access log's matches column says which requests.",
		}, []string{"lookup"}),
	}
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "custinfo_config_reloads_total",
		Help: "Configuration loads, by result (ok or error); after an error the last good configuration keeps serving.",
	}, []string{"result"})
	m.reloadOK = reloads.WithLabelValues("ok")
	m.reloadNo = reloads.WithLabelValues("error")
	empty := map[string]*lookupMetrics{}
	m.lookups.Store(&empty)
	if pool != nil {
		m.AddPool("primary", pool)
	}
	m.reg.MustRegister(m.requests, m.duration, m.ambiguous, reloads,
		&hookCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Mount adds GET /metrics to e. The service serves metrics only on the
// operations listener (NewOpsHandler), never where the helpdesk connects;
// Mount is for handlers that no caller outside reaches.
func (m *Metrics) Mount(e *echo.Echo) {
	e.GET("/metrics", echo.WrapHandler(m.Handler()))
}

// ObserveReload counts one configuration load; it fits reload.Config.ReloadFunc.
func (m *Metrics) ObserveReload(err error) {
	if err != nil {
		m.reloadNo.Inc()
		return
	}
	m.reloadOK.Inc()
}

// observe counts one lookup request, and, when several rows matched, one
// ambiguous answer: under its lookup's name when its signature verified,
// else under UnknownLookup.
func (m *Metrics) observe(o *Outcome) {
	name := UnknownLookup
	if o.Verified {
		name = o.Lookup
	}
	lm := (*m.lookups.Load())[name]
	if lm == nil {
		lm = m.addLookup(name)
	}
	lm.duration.Observe(o.Latency.Seconds())
	if o.Matches > 1 {
		lm.ambiguous.Inc()
	}
	c := (*lm.codes.Load())[o.Code]
	if c == nil {
		c = m.addCode(lm, o.Code)
	}
	c.Inc()
}

// addLookup returns the cached series of name, creating them once.
func (m *Metrics) addLookup(name string) *lookupMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.lookups.Load()
	if lm := old[name]; lm != nil {
		return lm
	}
	lm := &lookupMetrics{name: name, duration: m.duration.WithLabelValues(name), ambiguous: m.ambiguous.WithLabelValues(name)}
	codes := map[string]prometheus.Counter{}
	lm.codes.Store(&codes)
	next := make(map[string]*lookupMetrics, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = lm
	m.lookups.Store(&next)
	return lm
}

// addCode returns the cached counter of (lm, code), creating it once. Codes
// come from the error mapper's fixed set, so they are bounded.
func (m *Metrics) addCode(lm *lookupMetrics, code string) prometheus.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *lm.codes.Load()
	if c := old[code]; c != nil {
		return c
	}
	c := m.requests.WithLabelValues(lm.name, code)
	next := make(map[string]prometheus.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[code] = c
	lm.codes.Store(&next)
	return c
}

// NewOpsHandler returns the handler of a separate operations listener:
// GET /metrics, /healthz and /readyz, with the same readiness rule as New.
func NewOpsHandler(cfg Config, m *Metrics) http.Handler {
	s := &server{cfg: cfg}
	e := echo.NewWithConfig(echo.Config{
		HTTPErrorHandler: func(c *echo.Context, err error) { writeError(c, err) },
	})
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	if m != nil {
		m.Mount(e)
	}
	return e
}

// hookCollector reports the pool's statistics and the values of the
// Metrics' Func fields when scraped.
type hookCollector struct {
	m *Metrics
}

var (
	poolLabel    = []string{"pool"}
	replicaLabel = []string{"replica"}

	descQueueDepth = prometheus.NewDesc("custinfo_access_log_queue_depth",
		"Access-log rows queued in memory, waiting to be written.", nil, nil)
	descWritten = prometheus.NewDesc("custinfo_access_log_written_total",
		"Access-log rows written to custinfo.access_log.", nil, nil)
	descDropped = prometheus.NewDesc("custinfo_access_log_dropped_total",
		"Access-log rows dropped because the queue was full.", nil, nil)
	descFailedWrites = prometheus.NewDesc("custinfo_access_log_failed_writes_total",
		"Access-log batch writes that failed and are retried (the database unreachable or slow), with checks of a write left in doubt that found no answer; each retry counts.", nil, nil)
	descPartitions = prometheus.NewDesc("custinfo_access_log_partitions_ensured",
		"1 when serve's last attempt to create the access log's daily partitions ahead succeeded, 0 when it failed (rows of days without a partition then wait in custinfo.access_log_default).", nil, nil)
	descReplayEvicted = prometheus.NewDesc("custinfo_replay_guard_evicted_total",
		"Verified signatures forgotten before their timestamp left the window because more arrived than the replay guard holds; their replay to another lookup is no longer refused.", nil, nil)
	descCertNotAfter = prometheus.NewDesc("custinfo_tls_cert_not_after_timestamp_seconds",
		"Expiry of the served TLS certificate, in seconds since the Unix epoch.", nil, nil)
	descReady = prometheus.NewDesc("custinfo_ready",
		"1 when the server can answer lookups (what /readyz checks: not shutting down, the database answers), else 0; checked at each scrape.", nil, nil)
	descCoalescedQueries = prometheus.NewDesc("custinfo_coalesced_queries_total",
		"Queries run for a coalesced batch of waiting lookup requests.", nil, nil)
	descCoalescedRequests = prometheus.NewDesc("custinfo_coalesced_requests_total",
		"Lookup requests answered by a coalesced query; divided by custinfo_coalesced_queries_total, the mean batch size.", nil, nil)

	descAcquired = prometheus.NewDesc("custinfo_db_pool_acquired_conns",
		"Database connections in use.", poolLabel, nil)
	descIdle = prometheus.NewDesc("custinfo_db_pool_idle_conns",
		"Idle database connections.", poolLabel, nil)
	descTotal = prometheus.NewDesc("custinfo_db_pool_total_conns",
		"Database connections open or being opened.", poolLabel, nil)
	descConstructing = prometheus.NewDesc("custinfo_db_pool_constructing_conns",
		"Database connections being opened.", poolLabel, nil)
	descMax = prometheus.NewDesc("custinfo_db_pool_max_conns",
		"Largest number of database connections the pool opens.", poolLabel, nil)
	descAcquires = prometheus.NewDesc("custinfo_db_pool_acquires_total",
		"Connections acquired from the pool.", poolLabel, nil)
	descAcquireSeconds = prometheus.NewDesc("custinfo_db_pool_acquire_duration_seconds_total",
		"Time spent acquiring connections from the pool.", poolLabel, nil)
	descEmptyAcquires = prometheus.NewDesc("custinfo_db_pool_empty_acquires_total",
		"Acquires that found no idle connection and waited for one to open or free up.", poolLabel, nil)
	descCanceledAcquires = prometheus.NewDesc("custinfo_db_pool_canceled_acquires_total",
		"Acquires given up because their context ended.", poolLabel, nil)
	descReplicaLag = prometheus.NewDesc("custinfo_replica_lag_seconds",
		"Upper bound of the age of the oldest commit a read replica has not replayed (0: caught up with the primary's WAL position).", replicaLabel, nil)
	descReplicaUsable = prometheus.NewDesc("custinfo_replica_usable",
		"1 when lookups go to the read replica, 0 when it is skipped (down, refusing, or lagging over --max-replica-lag).", replicaLabel, nil)
)

// Describe sends every metric the collector may report.
func (h *hookCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descQueueDepth, descWritten, descDropped, descFailedWrites, descPartitions, descCertNotAfter, descReplayEvicted,
		descReady, descCoalescedQueries, descCoalescedRequests,
		descAcquired, descIdle, descTotal, descConstructing, descMax,
		descAcquires, descAcquireSeconds, descEmptyAcquires, descCanceledAcquires,
		descReplicaLag, descReplicaUsable,
	} {
		ch <- d
	}
}

// Collect reads the hooks and the pool now.
func (h *hookCollector) Collect(ch chan<- prometheus.Metric) {
	m := h.m
	if f := m.AccessLogQueueDepthFunc; f != nil {
		ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(f()))
	}
	if f := m.AccessLogWrittenFunc; f != nil {
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(f()))
	}
	if f := m.AccessLogDroppedFunc; f != nil {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(f()))
	}
	if f := m.AccessLogFailedWritesFunc; f != nil {
		ch <- prometheus.MustNewConstMetric(descFailedWrites, prometheus.CounterValue, float64(f()))
	}
	if f := m.AccessLogPartitionsFunc; f != nil {
		if ok, known := f(); known {
			v := 0.0
			if ok {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, v)
		}
	}
	if g := m.replay.Load(); g != nil {
		ch <- prometheus.MustNewConstMetric(descReplayEvicted, prometheus.CounterValue, float64(g.evicted.Load()))
	}
	if f := m.TLSCertNotAfterFunc; f != nil {
		if t := f(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(descCertNotAfter, prometheus.GaugeValue, float64(t.Unix()))
		}
	}
	if f := m.ReplicasFunc; f != nil {
		for _, r := range f() {
			usable := 0.0
			if r.Usable {
				usable = 1
			}
			ch <- prometheus.MustNewConstMetric(descReplicaLag, prometheus.GaugeValue, r.Lag, r.Name)
			ch <- prometheus.MustNewConstMetric(descReplicaUsable, prometheus.GaugeValue, usable, r.Name)
		}
	}
	if f := m.ReadyFunc; f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
		ready := 1.0
		if f(ctx) != nil {
			ready = 0
		}
		cancel()
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	}
	if f := m.CoalescerStatsFunc; f != nil {
		queries, requests := f()
		ch <- prometheus.MustNewConstMetric(descCoalescedQueries, prometheus.CounterValue, float64(queries))
		ch <- prometheus.MustNewConstMetric(descCoalescedRequests, prometheus.CounterValue, float64(requests))
	}
	for _, p := range m.pools {
		collectPool(ch, p.name, p.pool.Stat())
	}
}

func collectPool(ch chan<- prometheus.Metric, name string, st *pgxpool.Stat) {
	gauge := func(d *prometheus.Desc, v int32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), name)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, name)
	}
	gauge(descAcquired, st.AcquiredConns())
	gauge(descIdle, st.IdleConns())
	gauge(descTotal, st.TotalConns())
	gauge(descConstructing, st.ConstructingConns())
	gauge(descMax, st.MaxConns())
	counter(descAcquires, float64(st.AcquireCount()))
	counter(descAcquireSeconds, st.AcquireDuration().Seconds())
	counter(descEmptyAcquires, float64(st.EmptyAcquireCount()))
	counter(descCanceledAcquires, float64(st.CanceledAcquireCount()))
}
