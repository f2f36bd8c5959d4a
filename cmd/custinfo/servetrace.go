package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/custinfo/custinfo/internal/tracing"
)

// serveTracing is serve's OpenTelemetry tracing, configured by the OTEL_*
// environment variables; its zero value is tracing off.
type serveTracing struct {
	provider *tracing.Provider
}

// startTracing starts tracing when the environment asks for it.
func startTracing(ctx context.Context, getenv func(string) string, logger *slog.Logger) (*serveTracing, error) {
	t := &serveTracing{}
	if getenv == nil {
		return t, nil
	}
	p, err := tracing.New(ctx, getenv)
	if err != nil {
		return nil, err
	}
	if p != nil {
		logger.Info("tracing lookups", "otlp_endpoint", p.Endpoint)
	}
	t.provider = p
	return t, nil
}

// tracer returns the tracer of lookup requests, nil when tracing is off.
func (t *serveTracing) tracer() trace.Tracer {
	if t.provider == nil {
		return nil
	}
	return t.provider.Tracer
}

// poolOptions makes the pool trace the queries of traced requests.
func (t *serveTracing) poolOptions(cfg *pgxpool.Config) {
	if t.provider != nil {
		cfg.ConnConfig.Tracer = &tracing.QueryTracer{Tracer: t.provider.Tracer}
	}
}

// stop sends the spans still queued, waiting for the collector at most 5 s.
func (t *serveTracing) stop(logger *slog.Logger) {
	if t.provider == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.provider.Shutdown(ctx); err != nil {
		logger.Warn("tracing: spans not all sent", "err", err)
	}
}
