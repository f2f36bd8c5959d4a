package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
)

// scrape returns the metric lines of GET url (comments left out).
func scrape(t testing.TB, url string) []string {
	t.Helper()
	resp, err := opsClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return lines
}

// metricValue returns the value of the series named exactly series (name
// and labels as exposed), and whether it is there.
func metricValue(lines []string, series string) (string, bool) {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v, true
		}
	}
	return "", false
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics(nil)
	f := newOpsFixture(t, m.ObserveReload)
	m = httpapi.NewMetrics(f.pool)
	f.holder = reload.New(reload.Config{Pool: f.pool, ReloadFunc: m.ObserveReload})
	if err := f.holder.Load(context.Background()); err != nil {
		t.Fatalf("load config: %v", err)
	}
	m.ObserveReload(fmt.Errorf("relation does not exist")) // as a failed reload reports it
	m.AccessLogQueueDepthFunc = func() int { return 7 }
	m.AccessLogWrittenFunc = func() uint64 { return 1234 }
	m.AccessLogDroppedFunc = func() uint64 { return 3 }
	m.AccessLogFailedWritesFunc = func() uint64 { return 2 }
	m.AccessLogPartitionsFunc = func() (bool, bool) { return false, true }
	notAfter := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	m.TLSCertNotAfterFunc = func() time.Time { return notAfter }
	m.AddPool("127.0.0.1:5433", f.pool)
	m.ReplicasFunc = func() []httpapi.ReplicaState {
		return []httpapi.ReplicaState{{Name: "127.0.0.1:5433", Usable: true, Lag: 0.25}, {Name: "db2:5432", Lag: math.Inf(1)}}
	}
	m.CoalescerStatsFunc = func() (uint64, uint64) { return 5, 17 }
	var readyErr atomic.Pointer[error]
	m.ReadyFunc = func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return fmt.Errorf("readiness check without a deadline")
		}
		if p := readyErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	cfg := f.config()
	cfg.Metrics = m
	base := opsListen(t, httpapi.New(cfg), "tcp4")
	opsBase := opsListen(t, httpapi.NewOpsHandler(cfg, m), "tcp4")

	for range 2 {
		if status, _, body := opsDo(t, opsRequest(t, base, "open", opsKey, opsBody)); status != 200 {
			t.Fatalf("signed lookup: status %d (%s), want 200", status, body)
		}
	}
	if status, _, _ := opsDo(t, opsRequest(t, base, "open", "wrong-key", opsBody)); status != 403 {
		t.Fatalf("wrong key: status %d, want 403", status)
	}
	if status, _, _ := opsDo(t, opsRequest(t, base, "open", opsKey, `{"nation":"82"}`)); status != 400 {
		t.Fatalf("missing callNum: status %d, want 400", status)
	}
	// Unsigned requests for a lookup that exists and for one that does not:
	// the metrics must not tell them apart.
	for _, name := range []string{"open", "zz1"} {
		req := opsRequest(t, base, name, opsKey, opsBody)
		req.Header.Del("Authorization")
		if status, _, _ := opsDo(t, req); status != 403 {
			t.Fatalf("unsigned %s: status %d, want 403", name, status)
		}
	}
	// A stale timestamp for a lookup that exists is refused before any key
	// is tried: no name either.
	stale := opsRequest(t, base, "open", opsKey, opsBody)
	stale.Header.Set("X-TC-Timestamp", "1")
	if status, _, _ := opsDo(t, stale); status != 400 {
		t.Fatalf("stale timestamp: status %d, want 400", status)
	}
	// A scanner trying names: every one is counted under one label value.
	for i := range 20 {
		name := fmt.Sprintf("scan%02d", i)
		if status, _, _ := opsDo(t, opsRequest(t, base, name, opsKey, opsBody)); status != 403 {
			t.Fatalf("unknown lookup %s: status %d, want 403", name, status)
		}
	}
	// Health checks and routes that are not lookups are not counted.
	for _, path := range []string{"/healthz", "/readyz", "/nope"} {
		resp, err := opsClient.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
	}
	// The helpdesk-facing handler does not serve the metrics.
	if resp, err := opsClient.Get(base + "/metrics"); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /metrics on the lookup handler: status %d, want 404", resp.StatusCode)
		}
	}

	lines := scrape(t, opsBase+"/metrics")
	want := map[string]string{
		// Only requests whose signature verified name their lookup.
		`custinfo_requests_total{code="ok",lookup="open"}`:                    "2",
		`custinfo_requests_total{code="missing_field",lookup="open"}`:         "1",
		`custinfo_requests_total{code="access_denied",lookup="_unknown"}`:     "23",
		`custinfo_requests_total{code="invalid_timestamp",lookup="_unknown"}`: "1",
		`custinfo_request_duration_seconds_count{lookup="open"}`:              "3",
		`custinfo_request_duration_seconds_count{lookup="_unknown"}`:          "24",
		`custinfo_request_duration_seconds_bucket{lookup="open",le="+Inf"}`:   "3",
		`custinfo_config_reloads_total{result="ok"}`:                          "1",
		`custinfo_config_reloads_total{result="error"}`:                       "1",
		`custinfo_access_log_queue_depth`:                                     "7",
		`custinfo_access_log_written_total`:                                   "1234",
		`custinfo_access_log_dropped_total`:                                   "3",
		`custinfo_access_log_failed_writes_total`:                             "2",
		`custinfo_access_log_partitions_ensured`:                              "0",
		`custinfo_tls_cert_not_after_timestamp_seconds`:                       strconv.FormatFloat(float64(notAfter.Unix()), 'g', -1, 64),
		`custinfo_db_pool_max_conns{pool="primary"}`:                          fmt.Sprint(f.pool.Stat().MaxConns()),
		`custinfo_db_pool_max_conns{pool="127.0.0.1:5433"}`:                   fmt.Sprint(f.pool.Stat().MaxConns()),
		`custinfo_replica_lag_seconds{replica="127.0.0.1:5433"}`:              "0.25",
		`custinfo_replica_usable{replica="127.0.0.1:5433"}`:                   "1",
		`custinfo_replica_lag_seconds{replica="db2:5432"}`:                    "+Inf",
		`custinfo_replica_usable{replica="db2:5432"}`:                         "0",
		`custinfo_ready`:                    "1",
		`custinfo_coalesced_queries_total`:  "5",
		`custinfo_coalesced_requests_total`: "17",
	}
	for series, v := range want {
		got, ok := metricValue(lines, series)
		if !ok {
			t.Errorf("/metrics has no %s", series)
			continue
		}
		if got != v {
			t.Errorf("/metrics %s = %s, want %s", series, got, v)
		}
	}
	for _, series := range []string{
		`custinfo_db_pool_acquired_conns{pool="primary"}`, `custinfo_db_pool_idle_conns{pool="primary"}`,
		`custinfo_db_pool_total_conns{pool="primary"}`, `custinfo_db_pool_acquires_total{pool="primary"}`,
		`custinfo_db_pool_acquire_duration_seconds_total{pool="primary"}`,
		`custinfo_db_pool_empty_acquires_total{pool="primary"}`, `custinfo_db_pool_canceled_acquires_total{pool="primary"}`,
		`custinfo_request_duration_seconds_bucket{lookup="open",le="0.0005"}`,
		`custinfo_request_duration_seconds_bucket{lookup="open",le="5"}`,
	} {
		if _, ok := metricValue(lines, series); !ok {
			t.Errorf("/metrics has no %s", series)
		}
	}
	lookups := map[string]bool{}
	for _, l := range lines {
		if strings.Contains(l, "scan") || strings.Contains(l, "zz1") {
			t.Errorf("/metrics names a lookup that does not exist: %s", l)
		}
		if strings.Contains(l, `lookup="open"`) && (strings.Contains(l, "access_denied") || strings.Contains(l, "invalid_timestamp")) {
			t.Errorf("/metrics names the lookup of a request whose signature did not verify: %s", l)
		}
		if name, ok := strings.CutPrefix(l, "custinfo_requests_total{"); ok {
			_, after, _ := strings.Cut(name, `lookup="`)
			label, _, _ := strings.Cut(after, `"`)
			lookups[label] = true
		}
	}
	if len(lookups) != 2 {
		t.Errorf("custinfo_requests_total lookup labels = %v, want open and _unknown", lookups)
	}

	// A failing readiness check turns custinfo_ready to 0 at the next scrape.
	down := errors.New("database unreachable")
	readyErr.Store(&down)
	if got, ok := metricValue(scrape(t, opsBase+"/metrics"), "custinfo_ready"); got != "0" {
		t.Errorf("custinfo_ready with a failing readiness check = %q (present %v), want 0", got, ok)
	}
}

func TestMetricsWithoutHooks(t *testing.T) {
	t.Parallel()
	m := httpapi.NewMetrics(nil)
	h := httpapi.NewOpsHandler(httpapi.Config{}, m)
	base := opsListen(t, h, "tcp4")
	lines := scrape(t, base+"/metrics")
	for _, l := range lines {
		if strings.HasPrefix(l, "custinfo_access_log_") || strings.HasPrefix(l, "custinfo_db_pool_") || strings.HasPrefix(l, "custinfo_tls_") {
			t.Errorf("/metrics without hooks or pool has %s", l)
		}
	}
	// The operations handler answers health checks too; with no configuration it is not ready.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503, "/v1/lookups/open": 404} {
		resp, err := opsClient.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s on the operations handler: status %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// BenchmarkMetricsObserve measures a signed lookup through the handler with
// and without metrics, to show what counting costs per request.
func BenchmarkMetricsObserve(b *testing.B) {
	f := newOpsFixture(b, nil)
	for _, withMetrics := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", withMetrics), func(b *testing.B) {
			cfg := f.config()
			cfg.DoneFunc = nil
			if withMetrics {
				cfg.Metrics = httpapi.NewMetrics(f.pool)
			}
			base := opsListen(b, httpapi.New(cfg), "tcp4")
			b.ReportAllocs()
			for b.Loop() {
				if status, _, body := opsDo(b, opsRequest(b, base, "open", opsKey, opsBody)); status != 200 {
					b.Fatalf("status %d (%s)", status, body)
				}
			}
		})
	}
}

func TestProbesLogAtDebug(t *testing.T) {
	t.Parallel()
	f := newOpsFixture(t, nil)
	var buf pgtest.LogBuffer
	m := httpapi.NewMetrics(f.pool)
	cfg := f.config()
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Metrics = m
	cfg.Extra = m.Mount
	base := opsListen(t, httpapi.New(cfg), "tcp4")
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := opsClient.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
	}
	if got := buf.String(); got != "" {
		t.Errorf("successful probes logged at info:\n%s", got)
	}
	resp, err := opsClient.Get(base + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := buf.String(); !strings.Contains(got, `"path":"/nope"`) || !strings.Contains(got, `"status":404`) {
		t.Errorf("a 404 was not logged at info: %q", got)
	}
}
