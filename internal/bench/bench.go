// Package bench measures custinfo beside the database's own limit. It fills a
// bench database with the demo customers, runs the real custinfo server as a
// child process, drives it with requests signed as the helpdesk signs them,
// and, in the same run and at the same connection counts, sends the lookup's
// own statement straight through pgx and through pgbench. The result is one
// table of rates, latencies, errors, server CPU and memory, and ratios.
package bench

import (
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/reload"
)

// Target names of the table's rows.
const (
	TargetDirect   = "pgx-direct"
	TargetPgbench  = "pgbench"
	TargetCustinfo = "custinfo"
)

// Config says what to measure and how long.
type Config struct {
	// DatabaseURL names the bench database; it is created when missing.
	DatabaseURL string
	// Binary is the custinfo executable to serve and to load the demo data with.
	Binary string
	// Rows is the number of demo customers.
	Rows int64
	// Conns are the connection counts to measure at.
	Conns []int
	// Warmup and Duration are the unmeasured and the measured part of a phase.
	Warmup   time.Duration
	Duration time.Duration
	// Runs repeats every phase; the table shows medians.
	Runs int
	// Key is the demo key the server checks and the load generator signs with.
	Key string
	// Lookup is the lookup to request (a demo lookup).
	Lookup string
	// HitPercent is the share of requests that name an existing customer.
	HitPercent int
	// Pgbench is the pgbench executable; empty skips that baseline.
	Pgbench string
	// DirectPoolConns is the pool size of the pgx baseline: 0 means pgx's
	// default, which custinfo serve also uses; -1 means one connection per
	// worker, like pgbench.
	DirectPoolConns int
	// ServeArgs are extra arguments of the measured server.
	ServeArgs []string
	// Variants are other server configurations measured beside it.
	Variants []Variant
	// Recreate drops and recreates the bench database first.
	Recreate bool
	// WorkloadSize is the number of distinct requests drawn from.
	WorkloadSize int
	// Seed makes the workload repeatable.
	Seed uint64
	// Out receives progress lines and the table.
	Out io.Writer
}

// Variant is a server configuration measured beside the main one, at some
// of the connection counts.
type Variant struct {
	Name  string
	Conns []int
	Args  []string
	// Binary, when set, is another custinfo executable to serve with (an
	// older build, say); the variant's Args still apply.
	Binary string
	// Tracing turns the server's OpenTelemetry tracing on, exporting every
	// span to a collector stand-in the bench runs on the same machine.
	Tracing bool
}

// Report is the outcome of a run.
type Report struct {
	Config    Config
	Started   time.Time
	Finished  time.Time
	Machine   machine
	GoVersion string
	PGVersion string
	LoadStart string
	LoadEnd   string
	// SQL is the lookup's statement, as the pgx baseline sends it.
	SQL string
	// Rows holds, per connection count, one row per target in table order.
	Rows []Row
}

// Row is the medians of one target at one connection count.
type Row struct {
	Conns  int
	Target string
	Runs   []result
	// Ratio is the median of the per-run ratio of this target's rate to
	// pgx-direct's (and to pgbench's), 0 when not applicable.
	Ratio        float64
	RatioPgbench float64
	server       bool
}

// Run sets up the bench database and measures every target at every
// connection count.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg, Started: time.Now(), Machine: readMachine(runtime.NumCPU()), LoadStart: loadAvg()}
	if bi, err := buildinfo.ReadFile(cfg.Binary); err == nil {
		rep.GoVersion = bi.GoVersion
	}
	out := cfg.Out

	if err := ensureDatabase(ctx, cfg.DatabaseURL, cfg.Recreate); err != nil {
		return nil, err
	}
	if err := loadDemo(ctx, cfg.Binary, cfg.DatabaseURL, cfg.Rows, cfg.Key, out); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect bench database: %w", err)
	}
	defer pool.Close()
	if err := pool.QueryRow(ctx, `SHOW server_version`).Scan(&rep.PGVersion); err != nil {
		return nil, fmt.Errorf("read server version: %w", err)
	}
	l, err := loadLookup(ctx, pool, cfg.Lookup)
	if err != nil {
		return nil, err
	}
	rep.SQL = l.SQL()
	pool.Close()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	items := newWorkload(rng, cfg.WorkloadSize, cfg.Rows, cfg.HitPercent)
	for k := range items {
		p, err := l.Bind(items[k].values)
		if err != nil {
			return nil, fmt.Errorf("bind %s: %w", items[k].body, err)
		}
		items[k].sql, items[k].args = p.SQL, p.Args
	}
	script := ""
	if cfg.Pgbench != "" {
		// Uniform ids in 1..maxID hit a customer HitPercent of the time.
		maxID := min(cfg.Rows*100/int64(max(cfg.HitPercent, 1)), numberMod-1)
		if script, err = pgbenchScript(l.SQL(), maxID); err != nil {
			return nil, err
		}
	}

	dir, err := os.MkdirTemp("", "custinfo-bench")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	servers := map[string]*server{}
	defer func() {
		for _, s := range servers {
			_ = s.stop()
		}
	}()
	mainArgs := append([]string{"--log-level", "warn"}, cfg.ServeArgs...)
	if servers[TargetCustinfo], err = startServer(ctx, cfg.Binary, cfg.DatabaseURL, dir, TargetCustinfo, mainArgs, nil); err != nil {
		return nil, err
	}
	var sink *otlpSink
	for _, v := range cfg.Variants {
		args := append(slices.Clone(mainArgs), v.Args...)
		bin := cmp.Or(v.Binary, cfg.Binary)
		var env []string
		if v.Tracing {
			if sink == nil {
				if sink, err = startOTLPSink(); err != nil {
					return nil, err
				}
				defer func() {
					fmt.Fprintf(cfg.Out, "OTLP sink: %d trace exports, %d bytes received from the tracing variants\n", sink.exports.Load(), sink.bytes.Load())
					sink.close()
				}()
			}
			env = sink.env()
		}
		if servers[v.Name], err = startServer(ctx, bin, cfg.DatabaseURL, dir, "variant"+fmt.Sprint(len(servers)), args, env); err != nil {
			return nil, err
		}
	}

	key := []byte(cfg.Key)
	for _, conns := range cfg.Conns {
		rows := map[string]*Row{}
		var order []string
		add := func(target string, run int, res result, isServer bool) {
			r, ok := rows[target]
			if !ok {
				r = &Row{Conns: conns, Target: target, server: isServer}
				rows[target] = r
				order = append(order, target)
			}
			r.Runs = append(r.Runs, res)
			fmt.Fprintf(out, "conns %3d  run %d/%d  %-22s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d%s\n",
				conns, run+1, cfg.Runs, target, res.rate(), ms(res.P50), ms(res.P99), res.Errors, errSuffix(res))
		}
		for run := range cfg.Runs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := cfg.direct(ctx, conns, l, items, run)
			if err != nil {
				return nil, err
			}
			add(TargetDirect, run, res, false)
			if script != "" {
				res, err := runPgbench(ctx, cfg.Pgbench, cfg.DatabaseURL, script, dir, conns, runtime.NumCPU(), cfg.Warmup, cfg.Duration)
				if err != nil {
					return nil, err
				}
				add(TargetPgbench, run, res, false)
			}
			res, err = cfg.custinfo(ctx, servers[TargetCustinfo], conns, items, key, run)
			if err != nil {
				return nil, err
			}
			add(TargetCustinfo, run, res, true)
			for _, v := range cfg.Variants {
				if !slices.Contains(v.Conns, conns) {
					continue
				}
				res, err := cfg.custinfo(ctx, servers[v.Name], conns, items, key, run)
				if err != nil {
					return nil, err
				}
				add(v.Name, run, res, true)
			}
		}
		for _, target := range order {
			r := rows[target]
			if r.server {
				r.Ratio = medianRatio(r.Runs, rows[TargetDirect].Runs)
				if pb, ok := rows[TargetPgbench]; ok {
					r.RatioPgbench = medianRatio(r.Runs, pb.Runs)
				}
			}
			rep.Rows = append(rep.Rows, *r)
		}
	}
	for name, s := range servers {
		if err := s.stop(); err != nil {
			fmt.Fprintf(out, "server %s: %v\n", name, err)
		}
		delete(servers, name)
	}
	rep.Finished = time.Now()
	rep.LoadEnd = loadAvg()
	return rep, nil
}

func (cfg *Config) check() error {
	switch {
	case cfg.Binary == "":
		return errors.New("bench: no custinfo binary")
	case cfg.Rows < 1 || cfg.Rows > MaxRows:
		return fmt.Errorf("bench: rows must be between 1 and %d", MaxRows)
	case len(cfg.Conns) == 0:
		return errors.New("bench: no connection counts")
	case cfg.Duration <= 0 || cfg.Warmup < 0:
		return errors.New("bench: duration must be positive and warmup not negative")
	case cfg.HitPercent < 0 || cfg.HitPercent > 100:
		return errors.New("bench: hit percent must be between 0 and 100")
	}
	for _, c := range cfg.Conns {
		if c < 1 || c > 1000 {
			return fmt.Errorf("bench: connection count %d out of range 1..1000", c)
		}
	}
	for _, v := range cfg.Variants {
		if v.Name == "" || v.Name == TargetCustinfo || v.Name == TargetDirect || v.Name == TargetPgbench {
			return fmt.Errorf("bench: variant name %q is empty or taken", v.Name)
		}
	}
	if cfg.Runs < 1 {
		cfg.Runs = 1
	}
	if cfg.WorkloadSize < 1 {
		cfg.WorkloadSize = 1 << 15
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	return nil
}

// loadLookup compiles the configuration of the bench database as the server
// does and returns the lookup called name.
func loadLookup(ctx context.Context, pool *pgxpool.Pool, name string) (*lookup.Lookup, error) {
	h := reload.New(reload.Config{Pool: pool})
	if err := h.Load(ctx); err != nil {
		return nil, fmt.Errorf("load lookups: %w", err)
	}
	l, ok := h.Snapshot().Get(name)
	if !ok {
		return nil, fmt.Errorf("bench: no lookup %q in the bench database", name)
	}
	if l.Broken() {
		return nil, fmt.Errorf("bench: lookup %q is misconfigured: %v", name, l.Problems)
	}
	return l, nil
}

// direct measures the pgx baseline at conns connections.
func (cfg *Config) direct(ctx context.Context, conns int, l *lookup.Lookup, items []item, run int) (result, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return result{}, fmt.Errorf("parse bench database url: %w", err)
	}
	switch {
	case cfg.DirectPoolConns > 0:
		pc.MaxConns = int32(cfg.DirectPoolConns)
	case cfg.DirectPoolConns < 0:
		pc.MaxConns = int32(conns)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "custinfo-bench"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return result{}, fmt.Errorf("connect bench database: %w", err)
	}
	defer pool.Close()
	if err := fillPool(ctx, pool, min(conns, int(pc.MaxConns))); err != nil {
		return result{}, err
	}
	seed := cfg.Seed + uint64(run)*1000 + 1
	return drive(ctx, phase{
		conns: conns, warmup: cfg.Warmup, dur: cfg.Duration,
		newStep: func(w int) (stepFunc, func()) { return directStep(pool, len(l.Results), items, seed, w) },
	}), nil
}

// fillPool opens all n connections of pool before a phase, so connecting
// (a new backend each) is not measured.
func fillPool(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conns := make([]*pgxpool.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = pool.Acquire(ctx) })
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			c.Release()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("open %d connections: %w", n, err)
	}
	return nil
}

// custinfo measures server s at conns connections, with its CPU and memory.
func (cfg *Config) custinfo(ctx context.Context, s *server, conns int, items []item, key []byte, run int) (result, error) {
	var before, after procStat
	var procErr error
	seed := cfg.Seed + uint64(run)*1000 + 2
	res := drive(ctx, phase{
		conns: conns, warmup: cfg.Warmup, dur: cfg.Duration,
		newStep: func(w int) (stepFunc, func()) {
			return httpStep(s.addr, cfg.Lookup, key, items, seed, w)
		},
		windowFunc: func(end bool) {
			st, err := readProc(s.pid())
			if err != nil && procErr == nil {
				procErr = err
			}
			if end {
				after = st
			} else {
				before = st
			}
		},
	})
	if procErr != nil {
		return result{}, fmt.Errorf("measure server: %w", procErr)
	}
	if before.valid && after.valid {
		res.ServerCPU = after.cpu - before.cpu
		res.ServerRSS = after.rss
		res.ServerHWM = after.hwm
	}
	return res, nil
}

func medianRatio(a, b []result) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i].rate() > 0 {
			rs = append(rs, a[i].rate()/b[i].rate())
		}
	}
	return median(rs)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func errSuffix(r result) string {
	if r.ErrorMsg == "" {
		return ""
	}
	return " (" + r.ErrorMsg + ")"
}
