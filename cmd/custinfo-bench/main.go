// Command custinfo-bench measures the custinfo server beside the database's
// own limit on the same machine and writes the table to docs/benchmarks.md.
// See internal/bench; "make bench" runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/custinfo/custinfo/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, "custinfo-bench:", err)
		}
		os.Exit(1)
	}
}

// variants collects repeated --variant flags, NAME:CONNS:ARGS.
type variants []bench.Variant

func (v *variants) String() string { return "" }

func (v *variants) Set(s string) error {
	name, rest, ok1 := strings.Cut(s, ":")
	conns, args, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || name == "" {
		return fmt.Errorf("want NAME:CONNS:ARGS, e.g. 'info-log:32:--log-level info'")
	}
	cs, err := parseConns(conns)
	if err != nil {
		return err
	}
	*v = append(*v, bench.Variant{Name: name, Conns: cs, Args: strings.Fields(args)})
	return nil
}

func parseConns(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("connection count %q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("custinfo-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/custinfo_bench?sslmode=disable"),
		"bench database, created when missing (env BENCH_DATABASE_URL)")
	binary := fs.String("binary", "bin/custinfo", "the custinfo executable to measure")
	rows := fs.Int64("rows", 1_000_000, "number of demo customers")
	conns := fs.String("conns", "1,8,32,64", "connection counts, comma-separated")
	duration := fs.Duration("duration", 5*time.Second, "measured time of each phase")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each phase")
	runs := fs.Int("runs", 1, "repeat every phase this many times; the table shows medians")
	key := fs.String("key", "custinfo-bench-key-4f1c2a", "demo key to install and sign with")
	lookupName := fs.String("lookup", "customer", "lookup to request")
	hits := fs.Int("hits", 80, "percent of requests that name an existing customer")
	pgbench := fs.String("pgbench", "pgbench", "pgbench executable; empty to skip that baseline")
	directPool := fs.Int("direct-pool-conns", 0, "pool size of the pgx-direct baselines: 0 for custinfo serve's (pgx's default unless --serve-args set --pool-max-conns), -1 for one connection per worker like pgbench")
	serveArgs := fs.String("serve-args", "", "extra arguments of the measured custinfo serve, space-separated")
	var vs variants
	fs.Var(&vs, "variant", "also measure a server with extra arguments: NAME:CONNS:ARGS (repeatable)")
	variantBinaries := map[string]string{}
	fs.Func("variant-binary", "run variant NAME with another custinfo executable: NAME=PATH (repeatable)", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("want NAME=PATH")
		}
		variantBinaries[name] = path
		return nil
	})
	noDefaultVariants := fs.Bool("no-variants", false, "do not measure the default variants (info-level logging and tracing at 32 connections, no coalescing at 8, 32 and 64)")
	tracingConns := fs.String("tracing", "", "also measure a server with OpenTelemetry tracing on, exporting every span to a local OTLP sink, at these connection counts (comma-separated)")
	recreate := fs.Bool("recreate", false, "drop and recreate the bench database first")
	seed := fs.Uint64("seed", 1, "workload seed")
	out := fs.String("out", "docs/benchmarks.md", "Markdown document to write the run into; empty for none")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cs, err := parseConns(*conns)
	if err != nil {
		return fmt.Errorf("--conns: %w", err)
	}
	if !*noDefaultVariants {
		vs = append(variants{
			{Name: "custinfo, info log", Conns: []int{32}, Args: []string{"--log-level", "info"}},
			{Name: "custinfo, no coalescing", Conns: []int{8, 32, 64}, Args: []string{"--coalesce=false"}},
			{Name: "custinfo, tracing", Conns: []int{32}, Tracing: true},
		}, vs...)
	}
	if *tracingConns != "" {
		tc, err := parseConns(*tracingConns)
		if err != nil {
			return fmt.Errorf("--tracing: %w", err)
		}
		vs = slices.DeleteFunc(vs, func(v bench.Variant) bool { return v.Name == "custinfo, tracing" })
		vs = append(vs, bench.Variant{Name: "custinfo, tracing", Conns: tc, Tracing: true})
	}
	for name, path := range variantBinaries {
		i := slices.IndexFunc(vs, func(v bench.Variant) bool { return v.Name == name })
		if i < 0 {
			return fmt.Errorf("--variant-binary %s: no --variant of that name", name)
		}
		vs[i].Binary = path
	}
	pb := *pgbench
	if pb != "" {
		if p, err := exec.LookPath(pb); err == nil {
			pb = p
		} else {
			fmt.Fprintf(stderr, "pgbench not found (%v); that baseline is skipped\n", err)
			pb = ""
		}
	}
	rep, err := bench.Run(ctx, bench.Config{
		DatabaseURL: *dbURL, Binary: *binary, Rows: *rows, Conns: cs,
		Warmup: *warmup, Duration: *duration, Runs: *runs,
		Key: *key, Lookup: *lookupName, HitPercent: *hits, Pgbench: pb, DirectPoolConns: *directPool,
		ServeArgs: strings.Fields(*serveArgs), Variants: vs, Recreate: *recreate,
		Seed: *seed, Out: stderr,
	})
	if err != nil {
		return err
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *out != "" {
		command := "custinfo-bench " + strings.Join(args, " ")
		if err := bench.WriteMarkdown(*out, rep.Markdown(strings.TrimSpace(command))); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", *out)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
