// Package replica sends the lookups' queries to PostgreSQL read replicas
// (hot standbys fed by streaming replication) that are close enough behind
// the primary, spread round-robin over them, and to the primary when none
// is usable. A checker measures each replica's lag from WAL positions and
// skips a replica that is down, refusing or too far behind.
package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxLag       = 5 * time.Second
	DefaultInterval     = 250 * time.Millisecond
	DefaultCheckTimeout = time.Second
	DefaultMaxBackoff   = 10 * time.Second
)

// Config configures a Router.
type Config struct {
	Logger *slog.Logger
	// Primary answers when no replica is usable, and its WAL position is
	// what the replicas' lag is measured against.
	Primary *pgxpool.Pool
	// Replicas are the read replicas' pools.
	Replicas []*pgxpool.Pool
	// MaxLag is the largest lag of a replica that still answers lookups.
	MaxLag time.Duration
	// Interval is the time between two checks of a usable replica.
	Interval time.Duration
	// CheckTimeout bounds one check; a replica that does not answer in
	// time is skipped.
	CheckTimeout time.Duration
	// MaxBackoff is the longest wait before checking a failed replica again.
	MaxBackoff time.Duration
	NowFunc    func() time.Time
}

// Status is what the checker last found about one replica.
type Status struct {
	// Name is the replica's host:port.
	Name string
	// Usable is whether lookups go to it.
	Usable bool
	// Lag is an upper bound of how long ago the oldest commit the replica
	// has not replayed was made: 0 when it has replayed all the primary
	// had written, +Inf when unknown.
	Lag time.Duration
	// Err is why it is skipped, when it is not usable.
	Err error
}

type member struct {
	name string
	pool *pgxpool.Pool

	mu           sync.Mutex
	status       Status
	lastCaughtUp time.Time // when the primary's position was read that the replica had reached
	catalogErr   error     // the configuration compiles differently on the replica
	wake         chan struct{}
}

// Router runs queries on a usable replica or on the primary. Its zero value
// is not usable; call New, and Run to keep the replicas' state current.
type Router struct {
	cfg     Config
	members []*member
	usable  atomic.Pointer[[]*member]
	next    atomic.Uint64
}

// New returns a Router that treats every replica as unusable until its
// first check: lookups go to the primary until Run has measured a replica.
func New(cfg Config) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	r := &Router{cfg: cfg}
	for _, p := range cfg.Replicas {
		m := &member{name: Name(p.Config().ConnConfig), pool: p, wake: make(chan struct{}, 1)}
		m.status = Status{Name: m.name, Lag: time.Duration(math.MaxInt64), Err: errors.New("not checked yet")}
		r.members = append(r.members, m)
	}
	r.usable.Store(&[]*member{})
	return r
}

// Name is how a replica is named in logs, metrics and /readyz: its
// host:port, never its password.
func Name(cc *pgx.ConnConfig) string {
	return net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))
}

// Statuses returns the state of every replica, in configuration order.
func (r *Router) Statuses() []Status {
	out := make([]Status, 0, len(r.members))
	for _, m := range r.members {
		m.mu.Lock()
		out = append(out, m.status)
		m.mu.Unlock()
	}
	return out
}

// Pools returns the replicas' names and pools, for pool metrics.
func (r *Router) Pools() map[string]*pgxpool.Pool {
	out := make(map[string]*pgxpool.Pool, len(r.members))
	for _, m := range r.members {
		out[m.name] = m.pool
	}
	return out
}

// pick returns the next usable replica, or nil for the primary.
func (r *Router) pick() *member {
	u := *r.usable.Load()
	if len(u) == 0 {
		return nil
	}
	return u[r.next.Add(1)%uint64(len(u))]
}

// QueryRow runs a single-row query on a usable replica or the primary. A
// replica that fails at the connection level is skipped from then on and
// the query runs again on the primary (lookups only read).
func (r *Router) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	m := r.pick()
	if m == nil {
		return r.cfg.Primary.QueryRow(ctx, sql, args...)
	}
	return &routedRow{r: r, m: m, ctx: ctx, sql: sql, args: args}
}

type routedRow struct {
	r    *Router
	m    *member
	ctx  context.Context
	sql  string
	args []any
}

func (row *routedRow) Scan(dest ...any) error {
	err := row.m.pool.QueryRow(row.ctx, row.sql, row.args...).Scan(dest...)
	if err == nil || !row.r.failover(row.ctx, row.m, err) {
		return err
	}
	return row.r.cfg.Primary.QueryRow(row.ctx, row.sql, row.args...).Scan(dest...)
}

// Query runs a multi-row query on a usable replica or the primary. A
// replica that fails before the first row is skipped and the query runs on
// the primary.
func (r *Router) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	m := r.pick()
	if m == nil {
		return r.cfg.Primary.Query(ctx, sql, args...)
	}
	rows, err := m.pool.Query(ctx, sql, args...)
	if err == nil || !r.failover(ctx, m, err) {
		return rows, err
	}
	return r.cfg.Primary.Query(ctx, sql, args...)
}

// failover reports whether a query that failed on m with err should run
// again on the primary: m could not answer (down, restarting, refusing, or
// a conflict with replay), and the caller still waits. A replica that is
// unreachable is marked unusable at once.
func (r *Router) failover(ctx context.Context, m *member, err error) bool {
	if ctx.Err() != nil || errors.Is(err, pgx.ErrNoRows) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "40001": // canceled by a conflict with recovery
			return true
		case pgErr.Code == "57014": // canceled by statement_timeout: slow, not down
			return false
		case len(pgErr.Code) >= 2 && (pgErr.Code[:2] == "08" || pgErr.Code[:2] == "57" || pgErr.Code[:2] == "53"):
			r.markDown(m, err)
			return true
		case strings.HasPrefix(pgErr.Code, "42"):
			// The lookup compiled against the primary's catalog; the
			// replica has not replayed a schema change yet.
			return true
		}
		return false
	}
	var scanErr pgx.ScanArgError
	if errors.As(err, &scanErr) {
		return false
	}
	r.markDown(m, err)
	return true
}

func (r *Router) markDown(m *member, err error) {
	m.mu.Lock()
	was := m.status.Usable
	m.status.Usable = false
	m.status.Err = fmt.Errorf("query failed: %w", err)
	m.mu.Unlock()
	if was {
		r.cfg.Logger.Warn("replica failed a query; lookups skip it until it answers a check", "replica", m.name, "err", err)
		r.publish()
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// publish recomputes the list of usable replicas.
func (r *Router) publish() {
	u := make([]*member, 0, len(r.members))
	for _, m := range r.members {
		m.mu.Lock()
		if m.status.Usable {
			u = append(u, m)
		}
		m.mu.Unlock()
	}
	r.usable.Store(&u)
}

// Run checks every replica until ctx ends: one goroutine per replica, each
// ended and waited for before Run returns.
func (r *Router) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, m := range r.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watch(ctx, m)
		}()
	}
	wg.Wait()
	return nil
}

// watch checks m every Interval while it is usable, and with a growing
// backoff while it fails.
func (r *Router) watch(ctx context.Context, m *member) {
	backoff := r.cfg.Interval
	for {
		err := r.check(ctx, m)
		wait := r.cfg.Interval
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, r.cfg.MaxBackoff)
		} else {
			backoff = r.cfg.Interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Check checks every replica once, now (for tests and the first load).
func (r *Router) Check(ctx context.Context) {
	var wg sync.WaitGroup
	for _, m := range r.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.check(ctx, m)
		}()
	}
	wg.Wait()
}

// check measures m's lag and updates its state. It returns an error when m
// could not be read (down or refusing), not when it is merely behind.
func (r *Router) check(ctx context.Context, m *member) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CheckTimeout)
	defer cancel()
	sampled := r.cfg.NowFunc()
	var primaryLSN int64
	perr := r.cfg.Primary.QueryRow(ctx, `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&primaryLSN)
	var (
		recovering bool
		replayLSN  *int64
		replayAge  *float64
	)
	err := m.pool.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		(pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint,
		extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8`).Scan(&recovering, &replayLSN, &replayAge)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) && err != nil {
		return nil // shutting down
	}
	now := r.cfg.NowFunc()

	m.mu.Lock()
	prev := m.status
	st := Status{Name: m.name, Lag: time.Duration(math.MaxInt64)}
	switch {
	case err != nil:
		st.Err = fmt.Errorf("check: %w", err)
	case !recovering || replayLSN == nil:
		st.Err = errors.New("not a standby (pg_is_in_recovery() is false)")
	case m.catalogErr != nil:
		st.Err = m.catalogErr
	case perr != nil:
		// Without the primary's position the lag is unknown; keep the
		// last verdict until the primary answers again.
		st = prev
	default:
		if *replayLSN >= primaryLSN {
			m.lastCaughtUp = sampled
			st.Lag = 0
		} else {
			// Both bounds are upper bounds of the age of the oldest commit
			// not replayed yet: it was made after the last position seen
			// replayed, and after the last transaction replayed.
			if !m.lastCaughtUp.IsZero() {
				st.Lag = now.Sub(m.lastCaughtUp)
			}
			if replayAge != nil {
				st.Lag = min(st.Lag, time.Duration(max(*replayAge, 0)*float64(time.Second)))
			}
		}
		if st.Lag <= r.cfg.MaxLag {
			st.Usable = true
		} else {
			st.Err = fmt.Errorf("replay lag over --max-replica-lag %s", r.cfg.MaxLag)
		}
	}
	m.status = st
	m.mu.Unlock()

	if st.Usable != prev.Usable {
		if st.Usable {
			r.cfg.Logger.Info("replica in use", "replica", m.name, "lag", st.Lag.String())
		} else {
			r.cfg.Logger.Warn("replica skipped", "replica", m.name, "reason", st.Err)
		}
		r.publish()
	}
	if err != nil {
		return st.Err
	}
	return nil
}

// CheckCatalog compiles cfg against each replica's catalog, as snap was
// compiled against the primary's. A replica on which a lookup compiles to
// other SQL or other problems (a schema change not replayed yet, a table
// missing) is skipped until a later CheckCatalog finds it agreeing; one
// that cannot be read is left to the checker.
func (r *Router) CheckCatalog(ctx context.Context, cfg lookup.Config, snap *lookup.Snapshot) {
	var wg sync.WaitGroup
	for _, m := range r.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			got, err := lookup.Compile(cctx, m.pool, cfg, snap.LoadedAt)
			if err != nil {
				return
			}
			mismatch := catalogMismatch(got, snap)
			m.mu.Lock()
			changed := (mismatch == nil) != (m.catalogErr == nil)
			m.catalogErr = mismatch
			if mismatch != nil && m.status.Usable {
				m.status.Usable = false
				m.status.Err = mismatch
			}
			m.mu.Unlock()
			if changed {
				if mismatch != nil {
					r.cfg.Logger.Warn("replica skipped", "replica", m.name, "reason", mismatch)
				} else {
					r.cfg.Logger.Info("replica catalog agrees with the primary again", "replica", m.name)
				}
				r.publish()
				select {
				case m.wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	wg.Wait()
}

func catalogMismatch(got, want *lookup.Snapshot) error {
	for _, name := range want.Names() {
		w, _ := want.Get(name)
		g, ok := got.Get(name)
		if !ok || g.SQL() != w.SQL() || strings.Join(g.Problems, "; ") != strings.Join(w.Problems, "; ") {
			return fmt.Errorf("lookup %q compiles differently against the replica's catalog than against the primary's", name)
		}
	}
	return nil
}
