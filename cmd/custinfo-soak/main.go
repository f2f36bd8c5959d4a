// Command custinfo-soak runs the real custinfo server under mixed load for a
// set time while mappings are edited and keys rotated over SQL, and checks
// that nothing went wrong: no unexpected status, no 5xx, no goroutine growth,
// one access-log row per answered lookup. It exits 1 when a check fails.
// "make soak" runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case errors.Is(err, errFailed):
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "custinfo-soak:", err)
		os.Exit(1)
	}
}

// errFailed is returned when the soak ran but a check failed; the report
// already says which.
var errFailed = errors.New("soak checks failed")

// config is what the flags set.
type config struct {
	serverURL   string // maintenance database of the PostgreSQL server
	database    string // name of the soak database, created afresh
	binary      string
	duration    time.Duration
	workers     int
	rows        int64
	editEvery   time.Duration
	rotateEvery time.Duration
	keep        bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("custinfo-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.serverURL, "server-url", envOr("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"a database of the PostgreSQL server, to create the soak database from (env TEST_DATABASE_URL)")
	fs.StringVar(&c.database, "database", "custinfo_soak", "name of the soak database; dropped and created afresh")
	fs.StringVar(&c.binary, "binary", "bin/custinfo", "the custinfo executable to run")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "time under load")
	fs.IntVar(&c.workers, "workers", 8, "concurrent clients")
	fs.Int64Var(&c.rows, "rows", 100_000, "demo customers")
	fs.DurationVar(&c.editEvery, "edit-every", 750*time.Millisecond, "time between two mapping edits")
	fs.DurationVar(&c.rotateEvery, "rotate-every", 0, "time between two key rotations (0: a quarter of --duration)")
	fs.BoolVar(&c.keep, "keep", false, "keep the soak database afterwards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case c.duration < time.Second || c.duration > 24*time.Hour:
		return fmt.Errorf("--duration %v: want between 1s and 24h", c.duration)
	case c.workers < 1 || c.workers > 256:
		return fmt.Errorf("--workers %d: want between 1 and 256", c.workers)
	case c.rows < 100 || c.rows > 10_000_000:
		return fmt.Errorf("--rows %d: want between 100 and 10000000", c.rows)
	case c.editEvery < 10*time.Millisecond:
		return fmt.Errorf("--edit-every %v: want at least 10ms", c.editEvery)
	}
	if c.rotateEvery <= 0 {
		c.rotateEvery = c.duration / 4
	}
	return soak(ctx, c, stdout)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
