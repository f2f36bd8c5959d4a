package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/phone"
	"github.com/custinfo/custinfo/internal/signature"
)

func TestWorkload(t *testing.T) {
	const rows = 10_000
	items := newWorkload(rand.New(rand.NewPCG(7, 0)), 2000, rows, 80)
	hits := 0
	for _, it := range items {
		var got map[string]any
		dec := json.NewDecoder(strings.NewReader(string(it.body)))
		dec.UseNumber()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("body %s is not JSON: %v", it.body, err)
		}
		for field, want := range it.values {
			if v := fmt.Sprint(got[field]); v != want {
				t.Errorf("body %s: %s = %q, want %q", it.body, field, v, want)
			}
		}
		if it.hit {
			hits++
		}
	}
	if hits < 1500 || hits > 1700 {
		t.Errorf("%d hits of 2000, want about 80%%", hits)
	}
}

func TestNumbersAreDistinct(t *testing.T) {
	seen := map[string]int64{}
	for i := int64(1); i <= 20_000; i++ {
		d := eightDigits(i)
		if len(d) != 8 {
			t.Fatalf("eightDigits(%d) = %q, want 8 digits", i, d)
		}
		if j, dup := seen[d]; dup {
			t.Fatalf("eightDigits(%d) = eightDigits(%d) = %q", i, j, d)
		}
		seen[d] = i
	}
}

// The pgbench baseline builds in SQL the spellings that phone.Spellings
// gives for a customer's number; this keeps both in step.
func TestPgbenchSpellings(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	sql := strings.ReplaceAll(pgbenchSpellings, ":i", "$1")
	for _, i := range []int64{1, 2, 3, 4, 77, 123_456, 999_999} {
		var got []string
		if err := pool.QueryRow(context.Background(), "SELECT "+sql, i).Scan(&got); err != nil {
			t.Fatalf("spellings in SQL: %v", err)
		}
		want, err := phone.Spellings("010"+eightDigits(i), "KR")
		if err != nil {
			t.Fatalf("phone.Spellings: %v", err)
		}
		if !slices.Contains(want, storedPhone(i)) {
			continue // a number of a range the metadata does not know: only '+' forms
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("customer %d: spellings in SQL differ from phone.Spellings (-want +got):\n%s", i, diff)
		}
	}
}

func TestPgbenchScript(t *testing.T) {
	got, err := pgbenchScript(`SELECT a FROM t WHERE p = ANY(CAST($1::text[] AS text[])) LIMIT 1`, 125)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "\\set i random(1, 125)\nSELECT a FROM t WHERE p = ANY(CAST((SELECT ARRAY[") || strings.Contains(got, "$1") {
		t.Errorf("pgbenchScript = %q", got)
	}
	if _, err := pgbenchScript(`SELECT 1 WHERE a = $1 AND b = $2`, 1); err == nil {
		t.Errorf("pgbenchScript(two parameters) = nil error, want one")
	}
}

func TestReadPgbenchLogs(t *testing.T) {
	dir := t.TempDir()
	// client tx latency_us script epoch_s epoch_us
	var b strings.Builder
	for k := range 300 {
		fmt.Fprintf(&b, "0 %d %d 0 %d %d\n", k, 1000+k, 1700000000+k/100, (k%100)*10_000)
	}
	b.WriteString("0 300 failed 0 1700000001 500000\n")
	if err := os.WriteFile(filepath.Join(dir, "tx.123"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res, from, err := readPgbenchLogs(dir, time.Second, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Unix(1700000001, 0); !from.Equal(want) || res.Elapsed != time.Second {
		t.Errorf("readPgbenchLogs window = %v + %v, want %v + 1s", from, res.Elapsed, want)
	}
	if res.Requests != 101 || res.Errors != 1 {
		t.Errorf("readPgbenchLogs = %d requests, %d errors; want 101, 1", res.Requests, res.Errors)
	}
	if res.P50 != 1149*time.Microsecond {
		t.Errorf("p50 = %v, want 1.149ms", res.P50)
	}
}

func TestPercentiles(t *testing.T) {
	lat := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	p50, p95, p99 := percentiles(lat)
	if p50 != 50*time.Millisecond || p95 != 95*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("percentiles(1..100 ms) = %v %v %v, want 50ms 95ms 99ms", p50, p95, p99)
	}
}

func TestParseProc(t *testing.T) {
	stat := []byte("4242 (custinfo (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", cpu, err)
	}
	rss, hwm := parseStatusMem([]byte("Name:\tcustinfo\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"))
	if rss != 10<<20 || hwm != 20<<20 {
		t.Errorf("parseStatusMem = %d, %d; want %d, %d", rss, hwm, 10<<20, 20<<20)
	}
	if _, err := readProc(os.Getpid()); err != nil {
		t.Errorf("readProc(self) = %v", err)
	}
}

// The load generator's hand-written client signs as the helpdesk does and
// reads answers from a net/http server, over one kept-alive connection.
func TestClient(t *testing.T) {
	key := []byte("bf7769e5321448de88838cdb")
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, r.ContentLength)
		_, _ = r.Body.Read(body)
		keys := []signature.Key{{ID: 1, Secret: key, Schemes: []signature.Scheme{signature.SchemeBody}}}
		if _, err := signature.Verify(keys, r.URL.Path, body, r.Header.Get("X-TC-Timestamp"), r.Header.Get("Authorization")); err != nil {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if strings.Contains(string(body), "close") {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"data":{"id":"C-0000001"}}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c := newClient(srv.Listener.Addr().String(), "/v1/lookups/customer", key)
	defer c.close()
	for k, body := range []string{`{"callNum":"1"}`, `{"callNum":"2"}`, `{"callNum":"close"}`, `{"callNum":"3"}`} {
		status, resp, err := c.do(context.Background(), []byte(body))
		if err != nil || status != 200 || string(resp) != `{"data":{"id":"C-0000001"}}` {
			t.Fatalf("request %d: do = %d, %q, %v; want 200 and the data", k, status, resp, err)
		}
	}
	srv.Close()
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (one kept alive, one after Connection: close)", n)
	}
}

func TestWriteMarkdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.md")
	if err := WriteMarkdown(path, "first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := strings.Replace(string(b), "# Benchmarks\n", "# Benchmarks\n\nnotes before\n", 1) + "\nnotes after\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(path, "second\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	want := "# Benchmarks\n\nnotes before\n\n" + markBegin + "\nsecond\n" + markEnd + "\n\nnotes after\n"
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

func TestCPUPerRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  result
		want float64
	}{
		{"answered only", result{Requests: 1000, ServerCPU: 200 * time.Millisecond}, 200},
		{"errors not counted", result{Requests: 1000, Errors: 500, ServerCPU: 200 * time.Millisecond}, 400},
		{"nothing answered", result{Requests: 10, Errors: 10, ServerCPU: time.Second}, 0},
		{"no requests", result{ServerCPU: time.Second}, 0},
	}
	for _, tt := range tests {
		if got := tt.res.cpuPerRequest(); got != tt.want {
			t.Errorf("%s: cpuPerRequest() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
