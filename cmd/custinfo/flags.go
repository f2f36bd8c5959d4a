package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// newFlagSet returns a flag set that prints its usage to the env's stderr and
// returns errors instead of exiting.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("custinfo "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: custinfo %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// stringEnv returns the environment value of key, or def.
func (e *env) stringEnv(key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

// durationEnv returns the environment value of key as a duration, or def.
func (e *env) durationEnv(key string, def time.Duration) time.Duration {
	if v := e.getenv(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// databaseFlag registers --database-url with DATABASE_URL as its default.
func databaseFlag(fs *flag.FlagSet, e *env) *string {
	return fs.String("database-url", e.stringEnv("DATABASE_URL", ""),
		"PostgreSQL connection URL (env DATABASE_URL), e.g. postgres://user@localhost:5432/db")
}

// connect opens a pool to url, checking that it answers. Each opt adjusts
// the pool's configuration before it opens.
func connect(ctx context.Context, url string, maxConns int32, opts ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, fmt.Errorf("no database: set --database-url or DATABASE_URL")
	}
	cfg, err := poolConfig(url, maxConns, opts...)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to %s: %w", redactURL(cfg), err)
	}
	return pool, nil
}

// poolConfig parses url into a pool configuration with serve's defaults
// (connect timeout, application_name); each opt adjusts it. The query exec
// mode comes from the URL: default_query_exec_mode=exec (or
// simple_protocol) runs without named prepared statements, as PgBouncer
// before 1.21 needs in transaction mode.
func poolConfig(url string, maxConns int32, opts ...func(*pgxpool.Config)) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A dead network must not hold a pool slot for minutes: without
		// connect_timeout in the URL, a connection attempt gives up after 5 s.
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	for _, opt := range opts {
		opt(cfg)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "custinfo"
	}
	return cfg, nil
}

// connectWaitFlag registers --connect-wait with CUSTINFO_CONNECT_WAIT as its
// default: how long a one-shot command keeps retrying its first connection.
func connectWaitFlag(fs *flag.FlagSet, e *env) *time.Duration {
	return fs.Duration("connect-wait", e.durationEnv("CUSTINFO_CONNECT_WAIT", 0),
		"keep retrying the first database connection for this long, e.g. while a container starts (env CUSTINFO_CONNECT_WAIT; 0: try once)")
}

// connectWaiting is connect that, for up to wait, tries again after a failed
// first connection (a database that is still starting refuses connections).
// A URL that does not parse fails at once; the last error is returned.
func connectWaiting(ctx context.Context, wait time.Duration, url string, maxConns int32) (*pgxpool.Pool, error) {
	if wait <= 0 {
		return connect(ctx, url, maxConns)
	}
	if url != "" {
		if _, err := pgxpool.ParseConfig(url); err != nil {
			return nil, fmt.Errorf("parse database url: %w", err)
		}
	}
	deadline := time.Now().Add(wait)
	backoff := 250 * time.Millisecond
	for {
		pool, err := connect(ctx, url, maxConns)
		remaining := time.Until(deadline)
		if err == nil || url == "" || remaining <= 0 {
			return pool, err
		}
		t := time.NewTimer(min(backoff, remaining))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up waiting: %w)", err, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func redactURL(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// parseArgs parses flags that may stand before, between or after the
// positional arguments ("migrate up --database-url URL"); fs.Args() then
// holds the positional ones in order.
func parseArgs(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...) // after "--" everything is positional
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}
