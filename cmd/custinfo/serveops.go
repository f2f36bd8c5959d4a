package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/reload"
)

// serveOpsFlags registers the flags of the operational settings.
func serveOpsFlags(fs *flag.FlagSet, e *env, f *serveFlags) {
	fs.IntVar(&f.minConns, "pool-min-conns", 0, "database connections kept open even when idle (0: none, or pool_min_conns in the URL)")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", e.stringEnv("CUSTINFO_TRUSTED_PROXIES", ""),
		"comma-separated CIDRs of the reverse proxies whose X-Forwarded-For names the client; only these are trusted (empty: the socket peer is the client) (env CUSTINFO_TRUSTED_PROXIES)")
	fs.StringVar(&f.tlsCert, "tls-cert", e.stringEnv("CUSTINFO_TLS_CERT", ""), "serve HTTPS (TLS 1.2+) with this PEM certificate chain, reloaded on SIGHUP (env CUSTINFO_TLS_CERT)")
	fs.StringVar(&f.tlsKey, "tls-key", e.stringEnv("CUSTINFO_TLS_KEY", ""), "PEM private key of --tls-cert, reloaded on SIGHUP (env CUSTINFO_TLS_KEY)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", e.stringEnv("CUSTINFO_METRICS_ADDR", ""),
		"serve /metrics (and /healthz, /readyz) on this separate plain-HTTP address, for Prometheus; /metrics is never served on --addr, where the helpdesk connects (empty: no metrics) (env CUSTINFO_METRICS_ADDR)")
	fs.StringVar(&f.replay, "replay", e.stringEnv("CUSTINFO_REPLAY", "lookup"),
		"reuse of a verified signature within --timestamp-window: lookup refuses it on any other lookup (a retry to the same one is answered); strict refuses every second use. Remembered per instance only (env CUSTINFO_REPLAY)")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 5*time.Second, "time to read a request's headers")
	fs.DurationVar(&f.readTimeout, "read-timeout", 10*time.Second, "time to read a whole request")
	fs.DurationVar(&f.writeTimeout, "write-timeout", 0, "time from the end of a request's headers to the end of its answer (0: --query-timeout + 10s)")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 120*time.Second, "how long an idle keep-alive connection stays open")
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// serveOps is what serve runs around the lookup handler: the client-address
// rule, TLS, readiness, metrics and their listener, and SIGHUP.
type serveOps struct {
	logger   *slog.Logger
	trusted  []netip.Prefix
	cert     *certReloader // nil: plain HTTP
	metrics  *httpapi.Metrics
	draining atomic.Bool
	replay   httpapi.ReplayMode
	// replicas names the replicas in use for /readyz; nil without replicas.
	replicas func() (inUse, skipped []string)
}

// newServeOps checks the operational flags and loads the TLS certificate,
// before anything connects.
func newServeOps(f serveFlags, logger *slog.Logger) (*serveOps, error) {
	o := &serveOps{logger: logger}
	trusted, err := httpapi.ParsePrefixes(f.trustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	o.trusted = trusted
	if f.tlsCert != "" || f.tlsKey != "" {
		if o.cert, err = newCertReloader(f.tlsCert, f.tlsKey); err != nil {
			return nil, err
		}
		logger.Info("TLS certificate loaded", "file", f.tlsCert, "not_after", o.cert.notAfter().UTC().Format(time.RFC3339))
	}
	if o.replay, err = httpapi.ParseReplayMode(f.replay); err != nil {
		return nil, fmt.Errorf("--replay: %w", err)
	}
	if f.minConns < 0 || f.maxConns < 0 || (f.maxConns > 0 && f.minConns > f.maxConns) {
		return nil, fmt.Errorf("--pool-min-conns %d and --pool-max-conns %d: want 0 <= min <= max", f.minConns, f.maxConns)
	}
	return o, nil
}

// newMetrics creates the metrics of pool and the hooks serveOps knows of.
func (o *serveOps) newMetrics(pool *pgxpool.Pool) *httpapi.Metrics {
	o.metrics = httpapi.NewMetrics(pool)
	if o.cert != nil {
		o.metrics.TLSCertNotAfterFunc = o.cert.notAfter
	}
	return o.metrics
}

// ready returns the /readyz check: the server is not shutting down and the
// database answers. The cause of a failure goes to the log, not to the
// unauthenticated caller.
func (o *serveOps) ready(pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		if o.draining.Load() {
			return errors.New("shutting down")
		}
		if err := pool.Ping(ctx); err != nil {
			o.logger.Warn("readiness: database ping failed", "err", err)
			return errors.New("database unreachable")
		}
		return nil
	}
}

// closeWhenDraining answers with "Connection: close" once the server is
// draining, so clients and load balancers open their next connection
// elsewhere.
func (o *serveOps) closeWhenDraining(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// serveHTTP serves srv on ln, with TLS when a certificate is configured.
func (o *serveOps) serveHTTP(srv *http.Server, ln net.Listener) error {
	if o.cert == nil {
		return srv.Serve(ln)
	}
	srv.TLSConfig = o.cert.tlsConfig()
	return srv.ServeTLS(ln, "", "")
}

// start starts what runs beside the lookup listener: the operations
// listener of --metrics-addr and the SIGHUP handler. The returned stop shuts
// both down and waits for them; call it once.
func (o *serveOps) start(ctx context.Context, f serveFlags, pool *pgxpool.Pool, holder *reload.Holder) (stop func(), err error) {
	var opsSrv *http.Server
	opsErr := make(chan error, 1)
	if f.metricsAddr != "" {
		ln, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on --metrics-addr %s: %w", f.metricsAddr, err)
		}
		opsSrv = &http.Server{
			Handler: httpapi.NewOpsHandler(httpapi.Config{
				SnapshotFunc: holder.Snapshot,
				ReadyFunc:    o.ready(pool),
				ReplicasFunc: o.replicas,
			}, o.metrics),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(o.logger.Handler(), slog.LevelWarn),
		}
		o.logger.Info("serving metrics and health", "addr", ln.Addr().String())
		if f.metricsReady != nil {
			f.metricsReady(ln.Addr().String())
		}
		go func() { opsErr <- opsSrv.Serve(ln) }()
	} else {
		o.logger.Info("no --metrics-addr: /metrics is not served")
	}

	hctx, hcancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	hupDone := make(chan struct{})
	go func() {
		defer close(hupDone)
		defer signal.Stop(hup)
		for {
			select {
			case <-hctx.Done():
				return
			case <-hup:
				o.hangup(hctx, holder)
			}
		}
	}()

	return func() {
		hcancel()
		<-hupDone
		if opsSrv == nil {
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := opsSrv.Shutdown(sctx); err != nil {
			o.logger.Warn("metrics listener shutdown", "err", err)
		}
		if err := <-opsErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.logger.Error("metrics listener", "err", err)
		}
	}, nil
}

// hangup answers SIGHUP: it reloads the TLS certificate, keeping the old one
// when the new files do not load, and re-reads the configuration.
func (o *serveOps) hangup(ctx context.Context, holder *reload.Holder) {
	o.logger.Info("SIGHUP: reloading")
	if o.cert != nil {
		if err := o.cert.reload(); err != nil {
			o.logger.Error("TLS certificate reload failed; the previous certificate keeps serving", "err", err)
		} else {
			o.logger.Info("TLS certificate reloaded", "not_after", o.cert.notAfter().UTC().Format(time.RFC3339))
		}
	}
	if holder != nil {
		_ = holder.Load(ctx) // logs its own failure
	}
}

// poolOptions applies --pool-min-conns, raising the pool's maximum to it
// when the maximum was left at pgx's default.
func (o *serveOps) poolOptions(f serveFlags) func(*pgxpool.Config) {
	return func(cfg *pgxpool.Config) {
		if f.minConns <= 0 {
			return
		}
		cfg.MinConns = int32(f.minConns)
		if cfg.MaxConns < cfg.MinConns {
			cfg.MaxConns = cfg.MinConns
		}
	}
}
