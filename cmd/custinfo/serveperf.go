package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/custinfo/custinfo/internal/lookup"
)

// perfFlags registers serve's flags for profiling and query coalescing.
func perfFlags(fs *flag.FlagSet, e *env, f *serveFlags) {
	fs.StringVar(&f.pprofAddr, "pprof-addr", e.stringEnv("CUSTINFO_PPROF_ADDR", ""),
		"serve Go's profiler (/debug/pprof/) on this separate address, e.g. 127.0.0.1:6060; off when empty (env CUSTINFO_PPROF_ADDR). Never expose it")
	coalesce, err := strconv.ParseBool(e.stringEnv("CUSTINFO_COALESCE", "true"))
	if err != nil {
		coalesce = true
	}
	fs.BoolVar(&f.coalesce, "coalesce", coalesce,
		"answer the requests for one lookup that wait while its queries run with one query; a request never waits when none do (env CUSTINFO_COALESCE; --coalesce=false to turn off)")
	fs.IntVar(&f.coalesceInFlight, "coalesce-in-flight", lookup.DefaultMaxInFlight,
		"with --coalesce: queries of one lookup run side by side before requests wait to be answered together")
}

// newCoalescer returns the coalescer serve's flags ask for, or nil.
func newCoalescer(f serveFlags, db lookup.BatchQuerier) *lookup.Coalescer {
	if !f.coalesce {
		return nil
	}
	return lookup.NewCoalescer(lookup.CoalescerConfig{DB: db, MaxInFlight: f.coalesceInFlight, Timeout: f.queryTimeout})
}

// startPprof serves the profiler on addr until the returned stop is called;
// with an empty addr it does nothing.
func startPprof(addr string, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof listener", "err", err)
		}
	}()
	logger.Warn("profiler listening; do not expose it", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
