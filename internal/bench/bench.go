// Package bench measures custinfo beside the database's own limit. It fills a
// bench database with the demo customers, runs the real custinfo server as a
// child process, drives it with requests signed as the helpdesk signs them,
// and, in the same run and at the same connection counts, sends the lookup's
// own statement straight through pgx and through pgbench, and the server's
// coalesced statement through pgx in the batches the server formed. The
// result is one table of rates, latencies, errors, server and database CPU
// per request, memory, and ratios.
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
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/reload"
)

// Target names of the table's rows. The pgbench rows are named after their
// clients (see pgbenchTarget).
const (
	TargetDirect    = "pgx-direct"
	TargetCoalesced = "pgx-direct, coalesced"
	TargetPgbench   = "pgbench"
	TargetCustinfo  = "custinfo"
)

// pgbenchTarget names the pgbench row with n clients.
func pgbenchTarget(n int) string { return TargetPgbench + " (" + clients(n) + ")" }

func clients(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}

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
	// DirectPoolConns is the pool size of the pgx baselines: 0 means the
	// pool custinfo serve opens (pgx's default unless ServeArgs set
	// --pool-max-conns); -1 means one connection per worker, like pgbench.
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

	servePool int // the pool size of custinfo serve, set by Run
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
	// SQL is the lookup's statement, as the pgx baseline sends it;
	// BatchSQL its coalesced form, as the server and the coalesced pgx
	// baseline send it ("" if the lookup's requests are not coalesced).
	SQL      string
	BatchSQL string
	// PoolSize is the database pool of custinfo serve, and the clients of
	// the pgbench baseline that ratios are taken against.
	PoolSize int
	// Rows holds, per connection count, one row per target in table order.
	Rows []Row
	// Mixes are the batches custinfo formed, per connection count and run,
	// as the coalesced pgx baseline repeated them.
	Mixes []MixNote
}

// MixNote is how custinfo answered its requests in one phase, and with how
// many workers the coalesced pgx baseline then sent the same mix.
type MixNote struct {
	Conns, Run, Workers int
	Mix                 batchMix
}

// Row is the medians of one target at one connection count.
type Row struct {
	Conns  int
	Target string
	Runs   []result
	// Ratio, RatioCoalesced and RatioPgbench are the medians of the per-run
	// ratios of this target's rate to pgx-direct's, to the coalesced pgx
	// baseline's and to pgbench's with as many clients as custinfo's
	// database pool; 0 when not applicable.
	Ratio          float64
	RatioCoalesced float64
	RatioPgbench   float64
	server         bool
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
	if cfg.servePool, err = servePoolSize(cfg.DatabaseURL, cfg.ServeArgs); err != nil {
		return nil, err
	}
	rep.PoolSize = cfg.servePool
	meter, err := newBackendMeter(ctx, cfg.DatabaseURL, out)
	if err != nil {
		return nil, err
	}
	defer meter.close()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	items := newWorkload(rng, cfg.WorkloadSize, cfg.Rows, cfg.HitPercent)
	for k := range items {
		p, err := l.Bind(items[k].values)
		if err != nil {
			return nil, fmt.Errorf("bind %s: %w", items[k].body, err)
		}
		items[k].sql, items[k].args, items[k].prep = p.SQL, p.Args, p
	}
	if len(items) > 1 {
		if sql, _, err := l.BatchQuery([]lookup.Prepared{items[0].prep, items[1].prep}); err == nil {
			rep.BatchSQL = sql
		}
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
	if servers[TargetCustinfo], err = startServer(ctx, cfg.Binary, cfg.DatabaseURL, dir, TargetCustinfo, mainArgs, nil, true); err != nil {
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
		if servers[v.Name], err = startServer(ctx, bin, cfg.DatabaseURL, dir, "variant"+fmt.Sprint(len(servers)), args, env, false); err != nil {
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
		pgbenchClients := []int{conns}
		if cfg.servePool != conns {
			pgbenchClients = append(pgbenchClients, cfg.servePool)
		}
		for run := range cfg.Runs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := cfg.direct(ctx, conns, l, items, run, meter)
			if err != nil {
				return nil, err
			}
			add(TargetDirect, run, res, false)
			if script != "" {
				for _, clients := range pgbenchClients {
					res, err := runPgbench(ctx, cfg.Pgbench, cfg.DatabaseURL, script, dir, clients, runtime.NumCPU(), cfg.Warmup, cfg.Duration, meter)
					if err != nil {
						return nil, err
					}
					add(pgbenchTarget(clients), run, res, false)
				}
			}
			res, mix, err := cfg.custinfo(ctx, servers[TargetCustinfo], conns, items, key, run, meter)
			if err != nil {
				return nil, err
			}
			add(TargetCustinfo, run, res, true)
			// After custinfo, whose batches it repeats.
			workers := mix.workers(conns)
			rep.Mixes = append(rep.Mixes, MixNote{Conns: conns, Run: run, Workers: workers, Mix: mix})
			fmt.Fprintf(out, "conns %3d  run %d/%d  custinfo's batches: %s; %s with %d worker(s)\n",
				conns, run+1, cfg.Runs, mix, TargetCoalesced, workers)
			res, err = cfg.coalesced(ctx, conns, workers, l, items, mix, run, meter)
			if err != nil {
				return nil, err
			}
			add(TargetCoalesced, run, res, false)
			for _, v := range cfg.Variants {
				if !slices.Contains(v.Conns, conns) {
					continue
				}
				res, _, err := cfg.custinfo(ctx, servers[v.Name], conns, items, key, run, meter)
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
				r.RatioCoalesced = medianRatio(r.Runs, rows[TargetCoalesced].Runs)
				if pb, ok := rows[pgbenchTarget(cfg.servePool)]; ok {
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
		if v.Name == "" || v.Name == TargetCustinfo || v.Name == TargetDirect || v.Name == TargetCoalesced || strings.HasPrefix(v.Name, TargetPgbench) {
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
func (cfg *Config) direct(ctx context.Context, conns int, l *lookup.Lookup, items []item, run int, meter *backendMeter) (result, error) {
	pool, err := cfg.directPool(ctx, conns)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	seed := cfg.Seed + uint64(run)*1000 + 1
	return driveMeasured(ctx, phase{
		conns: conns, warmup: cfg.Warmup, dur: cfg.Duration,
		newStep: func(w int) (stepFunc, func()) { return directStep(pool, len(l.Results), items, seed, w) },
	}, meter), nil
}

// coalesced measures the coalesced pgx baseline: workers goroutines, each
// sending queries of mix (see coalescedStep) through the same pool as
// pgx-direct at conns connections.
func (cfg *Config) coalesced(ctx context.Context, conns, workers int, l *lookup.Lookup, items []item, mix batchMix, run int, meter *backendMeter) (result, error) {
	pool, err := cfg.directPool(ctx, conns)
	if err != nil {
		return result{}, err
	}
	defer pool.Close()
	seed := cfg.Seed + uint64(run)*1000 + 3
	return driveMeasured(ctx, phase{
		conns: workers, warmup: cfg.Warmup, dur: cfg.Duration,
		newBatchStep: func(w int) (batchStepFunc, func()) { return coalescedStep(pool, l, items, mix, seed, w) },
	}, meter), nil
}

// directPool opens the pool of the pgx baselines at conns connections (see
// Config.DirectPoolConns), with its connections open.
func (cfg *Config) directPool(ctx context.Context, conns int) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse bench database url: %w", err)
	}
	switch {
	case cfg.DirectPoolConns > 0:
		pc.MaxConns = int32(cfg.DirectPoolConns)
	case cfg.DirectPoolConns < 0:
		pc.MaxConns = int32(conns)
	case cfg.servePool > 0:
		pc.MaxConns = int32(cfg.servePool)
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "custinfo-bench"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect bench database: %w", err)
	}
	if err := fillPool(ctx, pool, min(conns, int(pc.MaxConns))); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// driveMeasured runs p as drive does and adds the CPU time of the database's
// backends over its measured window, read with meter at its start and end
// (after p's own windowFunc).
func driveMeasured(ctx context.Context, p phase, meter *backendMeter) result {
	if !meter.usable() {
		return drive(ctx, p)
	}
	var pgCPU time.Duration
	measured := false
	inner := p.windowFunc
	p.windowFunc = func(end bool) {
		if inner != nil {
			inner(end)
		}
		if !meter.usable() {
			return
		}
		if !end {
			meter.reset()
		}
		cpu, err := meter.read(ctx)
		if err != nil {
			meter.fail(err)
			return
		}
		pgCPU, measured = cpu, end
	}
	res := drive(ctx, p)
	if measured && meter.usable() {
		res.PGCPU, res.PGMeasured = pgCPU, true
	}
	return res
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

// custinfo measures server s at conns connections, with its CPU and memory
// and, when it serves metrics, how it batched the requests it answered.
func (cfg *Config) custinfo(ctx context.Context, s *server, conns int, items []item, key []byte, run int, meter *backendMeter) (result, batchMix, error) {
	var before, after procStat
	var metrics [2]map[string]float64
	var procErr, metricsErr error
	seed := cfg.Seed + uint64(run)*1000 + 2
	res := driveMeasured(ctx, phase{
		conns: conns, warmup: cfg.Warmup, dur: cfg.Duration,
		newStep: func(w int) (stepFunc, func()) {
			return httpStep(s.addr, cfg.Lookup, key, items, seed, w)
		},
		windowFunc: func(end bool) {
			st, err := readProc(s.pid())
			if err != nil && procErr == nil {
				procErr = err
			}
			i := 0
			if end {
				after, i = st, 1
			} else {
				before = st
			}
			if s.metricsAddr != "" {
				m, err := scrapeMetrics(ctx, s.metricsAddr)
				if err != nil && metricsErr == nil {
					metricsErr = err
				}
				metrics[i] = m
			}
		},
	}, meter)
	if procErr != nil {
		return result{}, batchMix{}, fmt.Errorf("measure server: %w", procErr)
	}
	if metricsErr != nil {
		return result{}, batchMix{}, fmt.Errorf("measure server: %w", metricsErr)
	}
	if before.valid && after.valid {
		res.ServerCPU = after.cpu - before.cpu
		res.ServerRSS = after.rss
		res.ServerHWM = after.hwm
	}
	return res, newBatchMix(metrics[0], metrics[1], res.Requests-res.Errors), nil
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
