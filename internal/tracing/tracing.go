// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables, exporting over OTLP/HTTP, and traces the database
// queries made under a traced request through pgx's QueryTracer hook.
//
// Tracing is off unless the environment names an OTLP endpoint; when off,
// New returns a nil Provider and callers skip every span.
//
// No span carries a value the helpdesk sent (a phone number) or a key:
// spans name the lookup, the outcome code and the SQL text, which holds
// parameters ($1), never values.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the service.name of custinfo's spans unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
const ServiceName = "custinfo"

// ScopeName names the instrumentation scope of custinfo's spans.
const ScopeName = "github.com/custinfo/custinfo"

// Propagator reads and writes the W3C traceparent and tracestate headers.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Provider exports custinfo's spans; Shutdown flushes them.
type Provider struct {
	tp *sdktrace.TracerProvider
	// Tracer makes custinfo's spans.
	Tracer trace.Tracer
	// Endpoint is the URL spans are sent to.
	Endpoint string
}

// Endpoint returns the OTLP/HTTP traces URL the environment names, or ""
// when tracing is off: OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none
// turn it off, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
// OTEL_EXPORTER_OTLP_ENDPOINT (with /v1/traces appended) turn it on.
// OTEL_TRACES_EXPORTER=otlp without an endpoint means the OTLP default,
// http://localhost:4318/v1/traces.
func Endpoint(getenv func(string) string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return "", nil
	}
	exporter := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	switch exporter {
	case "none":
		return "", nil
	case "", "otlp":
	default:
		return "", fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", exporter)
	}
	proto := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
	if proto == "" {
		proto = strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
	}
	if proto != "" && proto != "http/protobuf" {
		return "", fmt.Errorf("OTLP protocol %q: custinfo exports http/protobuf only", proto)
	}
	endpoint := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	if endpoint == "" {
		if base := strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); base != "" {
			endpoint = strings.TrimSuffix(base, "/") + "/v1/traces"
		}
	}
	if endpoint == "" {
		if exporter != "otlp" {
			return "", nil
		}
		endpoint = "http://localhost:4318/v1/traces"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTLP traces endpoint %q: want an http:// or https:// URL", endpoint)
	}
	return endpoint, nil
}

// New returns a Provider exporting to the endpoint the environment names,
// or nil when tracing is off. The exporter's other settings (headers,
// timeout, compression, TLS) and the sampler (OTEL_TRACES_SAMPLER, default
// parent-based always-on) and batching (OTEL_BSP_*) follow the standard
// variables; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service.
func New(ctx context.Context, getenv func(string) string) (*Provider, error) {
	endpoint, err := Endpoint(getenv)
	if err != nil || endpoint == "" {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	opts := []resource.Option{
		resource.WithAttributes(attribute.String("service.name", ServiceName)),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES
		resource.WithTelemetrySDK(),
	}
	if name := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); name != "" {
		opts = append(opts, resource.WithAttributes(attribute.String("service.name", name)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Provider{tp: tp, Tracer: tp.Tracer(ScopeName), Endpoint: endpoint}, nil
}

// Shutdown exports the spans still queued and stops the exporter; ctx
// bounds how long it waits for the collector.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down tracing: %w", err)
	}
	return nil
}

// QueryTracer makes a "db.query" span for each query run under a recording
// span (a traced request); queries of background work (reloads, the access
// log, readiness pings) run untraced. It records the SQL text and the rows
// returned, never the arguments.
type QueryTracer struct {
	Tracer trace.Tracer
}

var _ pgx.QueryTracer = (*QueryTracer)(nil)

// TraceQueryStart starts the query's span when ctx carries a recording span.
func (q *QueryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	op, _, _ := strings.Cut(strings.TrimSpace(data.SQL), " ")
	ctx, _ = q.Tracer.Start(ctx, "db.query",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.operation.name", strings.ToUpper(op)),
			attribute.String("db.query.text", data.SQL),
		))
	return ctx
}

// TraceQueryEnd ends the span TraceQueryStart started. A failure is recorded
// by its SQLSTATE only: a PostgreSQL error message may quote a value.
func (q *QueryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if data.Err != nil {
		desc := "query failed"
		var pgErr *pgconn.PgError
		switch {
		case errors.As(data.Err, &pgErr):
			span.SetAttributes(attribute.String("db.response.status_code", pgErr.Code))
			desc = "query failed: SQLSTATE " + pgErr.Code
		case errors.Is(data.Err, context.DeadlineExceeded), errors.Is(data.Err, context.Canceled):
			desc = "query canceled or timed out"
		}
		span.SetStatus(codes.Error, desc)
	} else {
		span.SetAttributes(attribute.Int64("db.response.returned_rows", data.CommandTag.RowsAffected()))
	}
	span.End()
}
