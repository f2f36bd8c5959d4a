package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/store"
)

type serveFlags struct {
	databaseURL     string
	addr            string
	queryTimeout    time.Duration
	timestampWindow time.Duration
	maxBody         int64
	maxConns        int
	reloadInterval  time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
	instance        string

	minConns          int
	trustedProxies    string
	tlsCert, tlsKey   string
	metricsAddr       string
	replay            string
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	// metricsReady, when set, receives the --metrics-addr listener's address.
	metricsReady func(addr string)

	auditKey       string
	auditRegion    string
	accessLogQueue int
	// accessLogPartitionDays: how many days ahead serve creates the access
	// log's partitions (0: none).
	accessLogPartitionDays int

	pprofAddr        string
	coalesce         bool
	coalesceInFlight int

	replicaURLs   urlList
	maxReplicaLag time.Duration
	listenURL     string
	drainDelay    time.Duration

	// getenv reads the OTEL_* variables of tracing; nil: tracing off.
	getenv func(string) string
}

func runServe(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "serve", "[flags]")
	var f serveFlags
	fs.StringVar(&f.databaseURL, "database-url", e.stringEnv("DATABASE_URL", ""), "PostgreSQL connection URL (env DATABASE_URL)")
	fs.StringVar(&f.addr, "addr", e.stringEnv("CUSTINFO_ADDR", ":8080"), "listen address (env CUSTINFO_ADDR)")
	fs.DurationVar(&f.queryTimeout, "query-timeout", e.durationEnv("CUSTINFO_QUERY_TIMEOUT", httpapi.DefaultQueryTimeout), "time a lookup's query may take before it answers 500 (env CUSTINFO_QUERY_TIMEOUT)")
	fs.DurationVar(&f.timestampWindow, "timestamp-window", e.durationEnv("CUSTINFO_TIMESTAMP_WINDOW", httpapi.DefaultTimestampWindow), "accepted clock difference of X-TC-Timestamp, either way (env CUSTINFO_TIMESTAMP_WINDOW)")
	fs.Int64Var(&f.maxBody, "max-body", httpapi.DefaultMaxBody, "largest accepted request body in bytes")
	fs.IntVar(&f.maxConns, "pool-max-conns", 0, "largest number of database connections (0: pgx default, or pool_max_conns in the URL)")
	fs.DurationVar(&f.reloadInterval, "reload-interval", e.durationEnv("CUSTINFO_RELOAD_INTERVAL", reload.DefaultInterval), "periodic config re-read, besides NOTIFY (env CUSTINFO_RELOAD_INTERVAL)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", e.durationEnv("CUSTINFO_SHUTDOWN_TIMEOUT", 15*time.Second), "time to finish in-flight requests on SIGTERM (env CUSTINFO_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&f.logFormat, "log-format", e.stringEnv("CUSTINFO_LOG_FORMAT", "json"), "log format: json or text (env CUSTINFO_LOG_FORMAT)")
	fs.StringVar(&f.instance, "instance", e.stringEnv("CUSTINFO_INSTANCE", defaultInstance()), "this server's name in custinfo.status (env CUSTINFO_INSTANCE)")
	fs.StringVar(&f.logLevel, "log-level", e.stringEnv("CUSTINFO_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env CUSTINFO_LOG_LEVEL)")
	accessLogFlags(fs, e, &f)
	serveOpsFlags(fs, e, &f)
	perfFlags(fs, e, &f)
	scaleFlags(fs, e, &f)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	f.getenv = e.getenv
	logger, err := newLogger(e.stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	return serve(ctx, f, logger, nil)
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
}

// serve runs the server until ctx ends, then drains it. ready, when set,
// receives the listening address (for tests that listen on port 0).
func serve(ctx context.Context, f serveFlags, logger *slog.Logger, ready func(addr string)) error {
	ops, err := newServeOps(f, logger)
	if err != nil {
		return err
	}
	tracer, err := startTracing(ctx, f.getenv, logger)
	if err != nil {
		return err
	}
	defer tracer.stop(logger) // after the last request's spans end
	poolOpts := ops.poolOptions(f)
	dbs, err := openDatabases(ctx, f, func(c *pgxpool.Config) { poolOpts(c); tracer.poolOptions(c) }, logger)
	if err != nil {
		return err
	}
	defer dbs.close()
	pool := dbs.primary
	metrics := ops.newMetrics(pool)
	dbs.observe(metrics)
	ops.replicas = dbs.replicasInUse()

	used := newKeyUse()
	rcfg := reload.Config{Logger: logger, Pool: pool, ListenConfig: dbs.listen, Interval: f.reloadInterval, ReloadFunc: metrics.ObserveReload,
		Instance: used.instance(f.instance)}
	if dbs.router != nil {
		rcfg.LoadedFunc = dbs.router.CheckCatalog // the snapshot must fit the catalog the replicas query
	}
	holder := reload.New(rcfg)
	if err := checkMigrated(ctx, pool); err != nil {
		return err
	}
	if err := holder.Load(ctx); err != nil {
		return fmt.Errorf("initial config load (is the schema migrated? run custinfo migrate up): %w", err)
	}
	if err := warnKeys(ctx, store.New(pool), logger); err != nil {
		return fmt.Errorf("check keys: %w", err)
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		_ = holder.Run(runCtx)
	}()
	replicasDone := make(chan struct{})
	go func() {
		defer close(replicasDone)
		dbs.run(runCtx)
	}()
	defer func() {
		stopRun()
		<-reloadDone
		<-replicasDone
	}()
	alog, err := startAccessLog(runCtx, pool, f, logger)
	if err != nil {
		return err
	}
	defer alog.close(logger) // before the pool closes; a no-op after the flush below
	stopPprof, err := startPprof(f.pprofAddr, logger)
	if err != nil {
		return err
	}
	defer stopPprof()
	coalescer := newCoalescer(f, dbs.lookups())
	defer coalescer.Wait() // its queries end before the pool closes
	metrics.AccessLogQueueDepthFunc = alog.QueueDepth
	metrics.AccessLogWrittenFunc = alog.Written
	metrics.AccessLogDroppedFunc = alog.Dropped
	metrics.AccessLogFailedWritesFunc = alog.FailedBatches
	metrics.AccessLogPartitionsFunc = alog.PartitionsEnsured
	metrics.ReadyFunc = ops.ready(pool)
	if coalescer != nil {
		metrics.CoalescerStatsFunc = coalescer.Stats
		metrics.WatchCoalescer(coalescer.Counters)
	}

	handler := httpapi.New(httpapi.Config{
		Logger:          logger,
		SnapshotFunc:    holder.Snapshot,
		DB:              dbs.lookups(),
		ReadyFunc:       ops.ready(pool),
		ReplicasFunc:    ops.replicas,
		IPExtractor:     httpapi.ClientIPExtractor(ops.trusted),
		Metrics:         metrics,
		TimestampWindow: f.timestampWindow,
		MaxBody:         f.maxBody,
		QueryTimeout:    f.queryTimeout,
		DoneFunc:        func(o *httpapi.Outcome) { used.note(o); alog.add(o) },
		Coalescer:       coalescer,
		Replay:          ops.replay,
		Tracer:          tracer.tracer(),
	})
	srv := &http.Server{
		Handler:           ops.closeWhenDraining(handler),
		ReadHeaderTimeout: orDefault(f.readHeaderTimeout, 5*time.Second),
		ReadTimeout:       orDefault(f.readTimeout, 10*time.Second),
		WriteTimeout:      orDefault(f.writeTimeout, f.queryTimeout+10*time.Second),
		IdleTimeout:       orDefault(f.idleTimeout, 120*time.Second),
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.addr, err)
	}
	stopOps, err := ops.start(ctx, f, pool, holder)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer stopOps()
	logger.Info("serving", "addr", ln.Addr().String(), "tls", ops.cert != nil, "pid", os.Getpid())
	if ready != nil {
		ready(ln.Addr().String())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- ops.serveHTTP(srv, ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Drain: /readyz answers 503 and each answer closes its connection, so
	// a load balancer stops sending here before the listener closes. Idle
	// connections stay open until then: closing one now could race with a
	// request the balancer is sending on it.
	ops.draining.Store(true)
	if f.drainDelay > 0 {
		logger.Info("draining: /readyz answers 503", "drain_delay", f.drainDelay.String())
		time.Sleep(f.drainDelay)
	}
	logger.Info("shutting down", "timeout", f.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	alog.close(logger) // every request is answered: flush its access-log rows
	if err := holder.Stopped(sctx); err != nil {
		logger.Warn("could not mark this server stopped in custinfo.status", "err", err)
	}
	logger.Info("stopped")
	return nil
}

// errNotMigrated is serve's whole answer on a database without the schema.
var errNotMigrated = errors.New("the database has no custinfo schema yet: run custinfo migrate up (with the same DATABASE_URL), then start serve again")

// checkMigrated returns errNotMigrated when the custinfo tables are missing.
func checkMigrated(ctx context.Context, pool interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) error {
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('custinfo.lookups') IS NOT NULL AND to_regclass('custinfo.api_keys') IS NOT NULL`).Scan(&ok); err != nil {
		return fmt.Errorf("look for the custinfo schema: %w", err)
	}
	if !ok {
		return errNotMigrated
	}
	return nil
}
