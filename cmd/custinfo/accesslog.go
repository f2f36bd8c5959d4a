package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/phone"
	"github.com/custinfo/custinfo/internal/store"
)

// defaultRetention is how long access-log rows are kept by default: Korean
// personal-information rules ask for at least one year.
const defaultRetention = 365 * 24 * time.Hour

func runAccessLog(ctx context.Context, args []string, e *env) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: custinfo access-log partitions|prune|hash [flags]")
		return exitError(2)
	}
	switch args[0] {
	case "partitions":
		return runAccessLogPartitions(ctx, args[1:], e)
	case "prune":
		return runAccessLogPrune(ctx, args[1:], e)
	case "hash":
		return runAccessLogHash(args[1:], e)
	default:
		return fmt.Errorf("access-log: unknown action %q (want partitions, prune or hash)", args[0])
	}
}

// defaultPartitionDays is how many days ahead of today the access log's
// daily partitions are created, by serve and by access-log partitions ensure.
const defaultPartitionDays = 7

func runAccessLogPartitions(ctx context.Context, args []string, e *env) error {
	if len(args) == 0 || (args[0] != "ensure" && args[0] != "list") {
		fmt.Fprintln(e.stderr, "usage: custinfo access-log partitions ensure|list [flags]")
		return exitError(2)
	}
	action := args[0]
	fs := newFlagSet(e, "access-log partitions "+action, "[flags]\n\nensure creates the access log's daily partitions (UTC days) from --from to --days\nafter today, and moves rows waiting in the default partition into theirs; serve\ndoes the same hourly. list prints every partition with its bounds.")
	dbURL := databaseFlag(fs, e)
	days := fs.Int("days", defaultPartitionDays, "ensure: create partitions up to this many days after today")
	from := fs.String("from", "", "ensure: first day to create, YYYY-MM-DD (default today, UTC); an earlier day makes room for rows of the past")
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("access-log partitions %s: unexpected argument %q", action, fs.Arg(0))
	}
	today := time.Now().UTC()
	first := today
	if *from != "" {
		d, err := time.Parse(time.DateOnly, *from)
		if err != nil {
			return fmt.Errorf("access-log partitions ensure: --from %q: want a date such as 2026-01-31", *from)
		}
		first = d
	}
	if *days < 0 || *days >= store.MaxPartitionDays {
		return fmt.Errorf("access-log partitions ensure: --days must be between 0 and %d", store.MaxPartitionDays-1)
	}
	last := today.AddDate(0, 0, *days)
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)
	if action == "ensure" {
		n, err := st.EnsureAccessLogPartitions(ctx, first, last)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created %d partitions (%s to %s)\n", n, first.Format(time.DateOnly), last.Format(time.DateOnly))
		return nil
	}
	parts, err := st.AccessLogPartitions(ctx)
	if err != nil {
		return err
	}
	bound := func(t *time.Time, none string) string {
		if t == nil {
			return none
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, p := range parts {
		if p.Default {
			fmt.Fprintf(e.stdout, "%-28s DEFAULT\n", p.Name)
			continue
		}
		fmt.Fprintf(e.stdout, "%-28s %-20s to %s\n", p.Name, bound(p.From, "MINVALUE"), bound(p.To, "MAXVALUE"))
	}
	return nil
}

func runAccessLogPrune(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "access-log prune", "[flags]\n\nRemoves access-log rows older than --older-than: drops each daily partition\nwholly older, and deletes the older rows of the partitions that are not a day\n(access_log_legacy, rows from before partitioning, and access_log_default) in\nbatches. The default keeps one year, the least that Korean personal-information\nrules ask for.")
	dbURL := databaseFlag(fs, e)
	olderThan := fs.String("older-than", e.stringEnv("CUSTINFO_ACCESS_LOG_RETENTION", "365d"),
		"remove rows older than this: a duration such as 8760h, or days such as 365d (env CUSTINFO_ACCESS_LOG_RETENTION)")
	batch := fs.Int("batch", 10000, "rows deleted per statement from the partitions that are not a day")
	dryRun := fs.Bool("dry-run", false, "only count what would be removed")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("access-log prune: unexpected argument %q", fs.Arg(0))
	}
	age, err := parseRetention(*olderThan)
	if err != nil {
		return fmt.Errorf("access-log prune: --older-than: %w", err)
	}
	if *batch < 1 || *batch > 1_000_000 {
		return fmt.Errorf("access-log prune: --batch must be between 1 and 1000000")
	}
	if age < defaultRetention {
		fmt.Fprintf(e.stderr, "warning: keeping less than one year (%s); personal-information rules ask for at least one year\n", age)
	}
	before := time.Now().Add(-age)
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	st := store.New(pool)
	what := fmt.Sprintf("older than %s (before %s)", strings.TrimSpace(*olderThan), before.UTC().Format(time.RFC3339))
	res, err := st.PruneAccessLog(ctx, before, *batch, *dryRun, nil)
	if *dryRun {
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "would drop %d partitions (%d rows) and delete %d rows %s\n", len(res.Dropped), res.DroppedRows, res.Deleted, what)
		for _, p := range res.Dropped {
			fmt.Fprintf(e.stdout, "  %s\n", p)
		}
		return nil
	}
	if err != nil {
		fmt.Fprintf(e.stdout, "dropped %d partitions and deleted %d rows before stopping\n", len(res.Dropped), res.Deleted)
		return err
	}
	fmt.Fprintf(e.stdout, "dropped %d partitions and deleted %d rows %s\n", len(res.Dropped), res.Deleted, what)
	for _, p := range res.Dropped {
		fmt.Fprintf(e.stdout, "  %s\n", p)
	}
	return nil
}

// parseRetention reads a retention as a Go duration ("8760h") or a whole
// number of days ("365d"); it must be positive.
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*366 {
			return 0, fmt.Errorf("%q: want a whole number of days up to 36600, e.g. 365d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 8760h or days such as 365d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than zero", s)
	}
	return d, nil
}

func runAccessLogHash(args []string, e *env) error {
	fs := newFlagSet(e, "access-log hash", "[flags] VALUE\n\nPrints the query_hash the access log stores for VALUE, to find every lookup of\none number:  SELECT * FROM custinfo.access_log WHERE query_hash = '...' ORDER BY at;\nUse the same --audit-key as serve; give a number with its + and calling code, or\n--audit-region for the region its lookup reads it in.")
	key := auditKeyFlag(fs, e)
	region := auditRegionFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("access-log hash: give one VALUE (quote it if it has spaces)")
	}
	if *key == "" {
		return fmt.Errorf("access-log hash: no audit key: set --audit-key or CUSTINFO_AUDIT_KEY to the key serve uses")
	}
	if _, err := phone.ParseRegion(*region); err != nil {
		return fmt.Errorf("access-log hash: --audit-region: %w", err)
	}
	fmt.Fprintln(e.stdout, audit.HashQuery(*key, fs.Arg(0), *region))
	return nil
}

func auditKeyFlag(fs *flag.FlagSet, e *env) *string {
	var s string
	auditKeyVar(fs, e, &s)
	return &s
}

func auditKeyVar(fs *flag.FlagSet, e *env, p *string) {
	fs.StringVar(p, "audit-key", e.stringEnv("CUSTINFO_AUDIT_KEY", ""),
		"key of the access log's query_hash, an HMAC of the query value (env CUSTINFO_AUDIT_KEY; prefer the env: a flag shows in the process list). Empty: no hash is stored")
}

func auditRegionFlag(fs *flag.FlagSet, e *env) *string {
	var s string
	auditRegionVar(fs, e, &s)
	return &s
}

func auditRegionVar(fs *flag.FlagSet, e *env, p *string) {
	fs.StringVar(p, "audit-region", e.stringEnv("CUSTINFO_AUDIT_REGION", audit.DefaultRegion),
		"region in which national numbers are read before hashing, so all spellings of a number hash alike; a value the lookup matched as a phone number is hashed in the E.164 form the lookup read (env CUSTINFO_AUDIT_REGION)")
}

// accessLogFlags registers serve's access-log flags.
func accessLogFlags(fs *flag.FlagSet, e *env, f *serveFlags) {
	auditKeyVar(fs, e, &f.auditKey)
	auditRegionVar(fs, e, &f.auditRegion)
	fs.IntVar(&f.accessLogQueue, "access-log-queue", audit.DefaultQueueSize,
		"access-log entries held in memory while waiting to be written; beyond it entries are dropped and counted")
	fs.IntVar(&f.accessLogPartitionDays, "access-log-partition-days", defaultPartitionDays,
		"create the access log's daily partitions this many days ahead, at start and hourly (0: leave it to custinfo access-log partitions ensure)")
}

// accessLog is serve's access-log writer, running in its own goroutine,
// with the goroutine that creates the log's partitions ahead of need.
type accessLog struct {
	*audit.Writer
	runDone   chan struct{}
	stopParts context.CancelFunc
	partsDone chan struct{}
	partsOK   atomic.Int32 // 0: no attempt ended yet, 1: the last succeeded, 2: it failed
	timeout   time.Duration
	once      sync.Once
}

// partitionInterval is how often serve makes sure the access log's
// partitions exist ahead; partitionRetry the first wait after a failure.
const (
	partitionInterval = time.Hour
	partitionRetry    = time.Minute
)

// maintainPartitions creates the access log's partitions from today to days
// ahead, at once and then every partitionInterval, until ctx ends. Several
// servers doing so on one database create each partition once. A failure
// (a role that may not call the function, the database away) is logged and
// tried again sooner, backing off to partitionInterval.
func maintainPartitions(ctx context.Context, st *store.Store, days int, logger *slog.Logger, report func(ok bool)) {
	retry := partitionRetry
	for {
		wait := partitionInterval
		now := time.Now()
		n, err := st.EnsureAccessLogPartitions(ctx, now, now.AddDate(0, 0, days))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			report(false)
			logger.Warn("access-log partitions not created: rows of a day without one wait in custinfo.access_log_default (grant EXECUTE on custinfo.access_log_ensure_partitions, see db/roles/serve_role.sql, or run custinfo access-log partitions ensure)",
				"err", err, "retry_in", retry.String())
			wait, retry = retry, min(2*retry, partitionInterval)
		default:
			report(true)
			retry = partitionRetry
			if n > 0 {
				logger.Info("access-log partitions created", "count", n, "through", now.AddDate(0, 0, days).UTC().Format(time.DateOnly))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// startAccessLog starts the access-log writer for serve; stop it with close.
func startAccessLog(ctx context.Context, pool *pgxpool.Pool, f serveFlags, logger *slog.Logger) (*accessLog, error) {
	if _, err := phone.ParseRegion(f.auditRegion); err != nil {
		return nil, fmt.Errorf("--audit-region: %w", err)
	}
	if f.accessLogPartitionDays < 0 || f.accessLogPartitionDays >= store.MaxPartitionDays {
		return nil, fmt.Errorf("--access-log-partition-days %d: want 0 to %d", f.accessLogPartitionDays, store.MaxPartitionDays-1)
	}
	if f.accessLogQueue < 0 || f.accessLogQueue > 1_000_000 {
		return nil, fmt.Errorf("--access-log-queue %d: want 1 to 1000000 (0: the default, %d)", f.accessLogQueue, audit.DefaultQueueSize)
	}
	switch {
	case f.auditKey == "":
		logger.Warn("no audit key: access_log.query_hash stays empty, so lookups of one number cannot be searched; set CUSTINFO_AUDIT_KEY")
	case len(f.auditKey) < audit.MinKeyLen:
		logger.Warn("audit key is short: use at least 16 random characters", "length", len(f.auditKey))
	}
	st := store.New(pool)
	a := &accessLog{
		Writer: audit.NewWriter(audit.Config{
			Logger:     logger,
			WriteFunc:  st.WriteAccessLog,
			StatusFunc: st.AccessLogWriteStatus,
			Hasher:     audit.NewHasher(f.auditKey, f.auditRegion),
			QueueSize:  f.accessLogQueue,
		}),
		runDone:   make(chan struct{}),
		partsDone: make(chan struct{}),
		timeout:   f.shutdownTimeout,
	}
	go func() {
		defer close(a.runDone)
		if err := a.Run(ctx); err != nil {
			logger.Error("access log", "err", err)
		}
	}()
	pctx, stopParts := context.WithCancel(ctx)
	a.stopParts = stopParts
	go func() {
		defer close(a.partsDone)
		if f.accessLogPartitionDays > 0 {
			maintainPartitions(pctx, st, f.accessLogPartitionDays, logger, func(ok bool) {
				v := int32(2)
				if ok {
					v = 1
				}
				a.partsOK.Store(v)
			})
		}
	}()
	return a, nil
}

// PartitionsEnsured reports whether the last attempt to create the access
// log's partitions ahead succeeded; known is false before one ended (or
// when serve creates none). It suits httpapi.Metrics.AccessLogPartitionsFunc.
func (a *accessLog) PartitionsEnsured() (ok, known bool) {
	v := a.partsOK.Load()
	return v == 1, v != 0
}

// add queues the access-log entry of one answered lookup request; the
// writer masks and hashes the query value off the request's goroutine.
func (a *accessLog) add(o *httpapi.Outcome) {
	a.Add(audit.Entry{
		At:              o.At,
		RequestID:       o.RequestID,
		Lookup:          o.Lookup,
		KeyID:           o.KeyID,
		ClientIP:        o.ClientIP,
		Code:            o.Code,
		Status:          o.Status,
		Latency:         o.Latency,
		Query:           o.Query,
		QueryNormalized: o.QueryNormalized,
		Queried:         o.Code == "ok" || o.Code == httpapi.CodeNoData,
		Matches:         o.Matches,
	})
}

// close flushes the queue (for at most the shutdown timeout) and waits for
// the writer goroutine. Call it after the HTTP server has shut down and
// before the pool closes; calling it again is harmless.
func (a *accessLog) close(logger *slog.Logger) {
	a.once.Do(func() { a.flush(logger) })
}

func (a *accessLog) flush(logger *slog.Logger) {
	a.stopParts()
	<-a.partsDone
	ctx, cancel := context.WithTimeout(context.Background(), max(a.timeout, time.Second))
	defer cancel()
	err := a.Close(ctx)
	<-a.runDone
	if err != nil {
		logger.Error("access log not fully flushed", "err", err, "written", a.Written(), "dropped", a.Dropped())
		return
	}
	logger.Info("access log flushed", "written", a.Written(), "dropped", a.Dropped())
}
