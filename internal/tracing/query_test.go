package tracing_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/tracing"
)

// TestQueryTracer runs queries on a real database through a pool with the
// tracer: untraced work makes no span, a traced query a child span with its
// SQL, and a failed one its SQLSTATE but not PostgreSQL's message, which
// quotes the value.
func TestQueryTracer(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("test")

	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = &tracing.QueryTracer{Tracer: tracer}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("a query outside any span made %d spans, want none", n)
	}

	const value = "01098761357x"
	rctx, root := tracer.Start(ctx, "request")
	var n int
	if err := pool.QueryRow(rctx, "SELECT count(*) FROM pg_class WHERE relname = $1", value).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(rctx, "SELECT $1::int", value); err == nil || !strings.Contains(err.Error(), value) {
		t.Fatalf("SELECT $1::int with %q: %v, want PostgreSQL's error quoting the value", value, err)
	}
	root.End()

	spans := exp.GetSpans()
	var queries []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == "db.query" {
			queries = append(queries, s)
		}
	}
	if len(queries) != 2 {
		t.Fatalf("got %d db.query spans of %d, want 2", len(queries), len(spans))
	}
	for i, s := range queries {
		if s.Parent.SpanID() != root.SpanContext().SpanID() {
			t.Errorf("query %d: parent %v, want the request span", i, s.Parent.SpanID())
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), "0109876") {
				t.Errorf("query %d: attribute %s = %q holds the value", i, kv.Key, kv.Value.String())
			}
		}
		if strings.Contains(s.Status.Description, "0109876") {
			t.Errorf("query %d: status %q holds the value", i, s.Status.Description)
		}
		for _, ev := range s.Events {
			t.Errorf("query %d: event %q recorded, want none (an error event would quote the value)", i, ev.Name)
		}
	}
	if got := queries[0]; got.Status.Code != codes.Unset || !strings.Contains(attr(got, "db.query.text"), "relname = $1") || attr(got, "db.operation.name") != "SELECT" {
		t.Errorf("first query: status %v, attributes %v; want unset status, the SQL text and operation SELECT", got.Status, got.Attributes)
	}
	if got := queries[1]; got.Status.Code != codes.Error || got.Status.Description != "query failed: SQLSTATE 22P02" || attr(got, "db.response.status_code") != "22P02" {
		t.Errorf("failed query: status %+v, attributes %v; want error with SQLSTATE 22P02 only", got.Status, got.Attributes)
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
