package httpapi

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// lookupRoute is the route of the lookups, as registered with Echo.
const lookupRoute = "/v1/lookups/:name"

// Span names: one server span per lookup request, with a child for each
// step that may take time or fail. The database query's span, "db.query",
// comes from the pool's pgx tracer (internal/tracing).
const (
	SpanLookup    = "POST /v1/lookups/{name}"
	SpanSignature = "signature.verify"
	SpanBind      = "lookup.bind"
)

// traceContext reads the caller's W3C traceparent and tracestate headers.
var traceContext = propagation.TraceContext{}

// startRequestSpan starts the span of a lookup request, as a child of the
// caller's trace when it sent a valid traceparent, and puts it in the
// request's context. It returns nil when tracing is off or the request is
// not a lookup.
func (s *server) startRequestSpan(c *echo.Context) trace.Span {
	if s.cfg.Tracer == nil || c.Path() != lookupRoute {
		return nil
	}
	r := c.Request()
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := s.cfg.Tracer.Start(ctx, SpanLookup,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", http.MethodPost),
			attribute.String("http.route", "/v1/lookups/{name}"),
		))
	c.SetRequest(r.WithContext(ctx))
	return span
}

// endRequestSpan records what the request's outcome may tell a trace: the
// lookup's name (only once a key verified the request, as in the metrics),
// the outcome code and status. Never the query's value, a key or a
// signature; the reason of a failure stays in the log.
func endRequestSpan(span trace.Span, o *Outcome) {
	if span == nil {
		return
	}
	name := UnknownLookup
	if o.Verified {
		name = o.Lookup
	}
	span.SetAttributes(
		attribute.String("custinfo.lookup", name),
		attribute.String("custinfo.code", o.Code),
		attribute.Int("http.response.status_code", o.Status),
		attribute.String("custinfo.request_id", o.RequestID),
	)
	if o.Verified {
		span.SetAttributes(attribute.Int64("custinfo.key_id", o.KeyID), attribute.Int64("custinfo.matches", o.Matches))
	}
	if o.Status >= 500 {
		span.SetStatus(codes.Error, o.Code)
	}
	span.End()
}

// startSpan starts a child span of ctx's span, or returns nil when tracing
// is off.
func (s *server) startSpan(ctx context.Context, name string) trace.Span {
	if s.cfg.Tracer == nil {
		return nil
	}
	_, span := s.cfg.Tracer.Start(ctx, name)
	return span
}

// endSpan ends a span of startSpan, marking it failed when err is not nil.
// The error's text is not recorded: it may quote what the caller sent.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, "failed")
	}
	span.End()
}
