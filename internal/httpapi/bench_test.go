package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/signature"
)

// benchSQL is a small customer table in mixed phone spellings and a phone
// lookup over it, as custinfo demo defines one.
const benchSQL = `
CREATE SCHEMA bench;
CREATE TABLE bench.customers (id bigint PRIMARY KEY, customer_no text NOT NULL, name text NOT NULL, phone text NOT NULL);
CREATE INDEX ON bench.customers (phone);
INSERT INTO bench.customers
SELECT i, 'C-' || lpad(i::text, 7, '0'), '홍길동' || i,
       CASE i % 2 WHEN 0 THEN '010-' || lpad((1000 + i)::text, 4, '0') || '-5678' ELSE '+8210' || lpad((1000 + i)::text, 4, '0') || '5678' END
FROM generate_series(1, 1000) AS i;
ANALYZE bench.customers;
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'bench.customers');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('customer', 'callNum', 'phone', 'phone', true, 'nation', 'KR'),
    ('customer', 'nation', NULL, 'hint', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES
    ('customer', 'userName', 'name', 1), ('customer', 'id', 'customer_no', 2);
INSERT INTO custinfo.api_keys (lookup, secret, label) VALUES ('customer', 'bench-key-0123456', 'bench');
`

// benchWriter is a ResponseWriter that keeps nothing, so the benchmark
// counts only the handler's allocations.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }

// benchBody is a request body that can be re-read without allocating.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// BenchmarkHandler runs whole lookup requests through the handler, in
// process, against a real database: signature check, decoding, phone
// spellings, the query and the answer. allocs/op is the handler's
// allocations per request (the request and response objects are reused).
func BenchmarkHandler(b *testing.B) {
	ctx := context.Background()
	pool := pgtest.New(b)
	if _, err := pool.Exec(ctx, benchSQL); err != nil {
		b.Fatalf("create bench data: %v", err)
	}
	holder := reload.New(reload.Config{Pool: pool})
	if err := holder.Load(ctx); err != nil {
		b.Fatalf("load config: %v", err)
	}
	cases := []struct {
		name       string
		body       string
		logLevel   slog.Level
		wantStatus int
	}{
		{"hit", `{"callNum":"010-1042-5678","nation":"82"}`, slog.LevelWarn, http.StatusOK},
		{"miss", `{"callNum":"010-9999-5678","nation":"82"}`, slog.LevelWarn, http.StatusNotFound},
		{"hit, info log", `{"callNum":"01010435678"}`, slog.LevelInfo, http.StatusOK},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: c.logLevel}))
			h := httpapi.New(httpapi.Config{
				Logger:       logger,
				SnapshotFunc: holder.Snapshot,
				DB:           pool,
				Metrics:      httpapi.NewMetrics(pool),
			})
			body := []byte(c.body)
			ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/lookups/customer", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.RequestURI = "/v1/lookups/customer"
			req.RemoteAddr = "127.0.0.1:40000"
			req.ContentLength = int64(len(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-TC-Timestamp", ts)
			req.Header.Set("Authorization", signature.Sign([]byte("bench-key-0123456"), signature.SchemeBody, "", body, ts))
			rb := &benchBody{}
			req.Body = rb
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				rb.Reset(body)
				clear(w.h)
				h.ServeHTTP(w, req)
				if w.status != c.wantStatus {
					b.Fatalf("status %d, want %d", w.status, c.wantStatus)
				}
			}
		})
	}
}
