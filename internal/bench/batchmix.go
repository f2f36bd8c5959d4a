package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The server's counters of its coalesced queries (see lookup.Coalescer).
const (
	metricCoalescedQueries  = "custinfo_coalesced_queries_total"
	metricCoalescedRequests = "custinfo_coalesced_requests_total"
)

// scrapeMetrics reads the server's /metrics at addr (its --metrics-addr).
func scrapeMetrics(ctx context.Context, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape metrics: status %d", resp.StatusCode)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	return m, nil
}

// parseMetrics reads the Prometheus text format: every sample by its series
// (the metric name with its labels as written, e.g. `a_total{x="y"}`).
// Comments and blank lines are skipped; a sample line that does not parse is
// an error.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series (whose label values may hold
		// spaces) and may be followed by a timestamp.
		rest := line
		series := ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else if name, after, ok := strings.Cut(line, " "); ok {
			series, rest = name, after
		}
		f := strings.Fields(rest)
		if series == "" || len(f) == 0 || len(f) > 2 {
			return nil, fmt.Errorf("metrics line %d: %.100q", n, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: value %q: %w", n, f[0], err)
		}
		out[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return out, nil
}

// batchMix is how the server answered the requests of a measured window:
// each alone (the lookup's own statement) or several with one coalesced
// query. A server without coalescing answers every request alone.
type batchMix struct {
	Alone   int64 // requests answered alone
	Queries int64 // coalesced queries
	Batched int64 // requests answered by them
}

// newBatchMix derives the mix of a window from the server's counters at its
// start and end and the requests answered in it. The counters of a server
// without coalescing are absent: every request then ran alone.
func newBatchMix(before, after map[string]float64, requests int) batchMix {
	q := int64(after[metricCoalescedQueries] - before[metricCoalescedQueries])
	b := int64(after[metricCoalescedRequests] - before[metricCoalescedRequests])
	if q <= 0 || b <= 0 {
		q, b = 0, 0
	}
	return batchMix{Alone: max(int64(requests)-b, 0), Queries: q, Batched: b}
}

// meanBatch is the mean number of requests per coalesced query; 0 without any.
func (m batchMix) meanBatch() float64 {
	if m.Queries == 0 {
		return 0
	}
	return float64(m.Batched) / float64(m.Queries)
}

// perQuery is the mean number of requests per query, alone or coalesced; 1
// when nothing was answered.
func (m batchMix) perQuery() float64 {
	if m.Alone+m.Queries == 0 {
		return 1
	}
	return float64(m.Alone+m.Batched) / float64(m.Alone+m.Queries)
}

// workers returns how many workers keep, with queries of this mix, as many
// requests in flight as conns connections sending one request at a time.
func (m batchMix) workers(conns int) int {
	return max(1, int(math.Round(float64(conns)/m.perQuery())))
}

// draw returns the number of requests of the next query: 1 (the lookup's
// own statement) as often as the server ran a request alone among all its
// queries, else a coalesced batch of the server's mean size, rounded down or
// up at random so that the mean holds.
func (m batchMix) draw(rng *rand.Rand) int {
	if m.Queries == 0 || rng.Int64N(m.Alone+m.Queries) < m.Alone {
		return 1
	}
	mean := m.meanBatch()
	k := int(mean)
	if rng.Float64() < mean-float64(k) {
		k++
	}
	return max(k, 2)
}

func (m batchMix) String() string {
	total := m.Alone + m.Batched
	if total == 0 {
		return "no requests"
	}
	if m.Queries == 0 {
		return "every request alone"
	}
	return fmt.Sprintf("%.0f%% of requests alone, the rest in %d coalesced queries of %.1f on average",
		100*float64(m.Alone)/float64(total), m.Queries, m.meanBatch())
}
