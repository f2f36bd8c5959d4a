// Package reload keeps the current configuration snapshot: it loads and
// compiles the custinfo tables, swaps the result in atomically, and reloads on
// NOTIFY from the config triggers, with a periodic re-read as a fallback.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/store"
)

// Channel is the NOTIFY channel of the config triggers.
const Channel = "custinfo_config"

// Defaults for Config fields left zero.
const (
	DefaultInterval     = 30 * time.Second
	DefaultBackoff      = time.Second
	DefaultPollInterval = time.Second
	DefaultProbeTimeout = 2 * time.Second
)

// Config configures a Holder.
type Config struct {
	Logger *slog.Logger
	// Pool reads the configuration and the catalog.
	Pool *pgxpool.Pool
	// Interval is the periodic re-read that covers missed notifications.
	Interval time.Duration
	// Backoff is the wait before reconnecting the listener after it fails.
	Backoff time.Duration
	NowFunc func() time.Time
	// ReloadFunc, when set, is told of every reload attempt (for metrics).
	ReloadFunc func(err error)
	// ListenConfig is the connection that LISTENs (default: Pool's). It
	// must be a session of its own: a transaction pooler (PgBouncer in
	// transaction mode) does not deliver notifications.
	ListenConfig *pgx.ConnConfig
	// PollInterval is how often the configuration is re-read when the
	// listener receives no notifications (default DefaultPollInterval).
	PollInterval time.Duration
	// ProbeTimeout is how long the listener waits for its own test
	// notification before it decides that notifications do not arrive
	// (default DefaultProbeTimeout).
	ProbeTimeout time.Duration
	// LoadedFunc, when set, is called after every load that swapped in a
	// snapshot, with the configuration it was compiled from.
	LoadedFunc func(ctx context.Context, cfg lookup.Config, snap *lookup.Snapshot)
	// Instance, when set, names this server: every load records its
	// outcome in its row of custinfo.status.
	Instance *Instance
}

// ErrNoNotifications is returned by the listener when its test
// notification does not arrive: the connection goes through a transaction
// pooler, and the Holder polls instead.
var ErrNoNotifications = errors.New("the LISTEN connection receives no notifications (a transaction pooler such as PgBouncer in transaction mode?)")

// Holder holds the current snapshot and reloads it.
type Holder struct {
	cfg     Config
	cur     atomic.Pointer[lookup.Snapshot]
	mu      sync.Mutex // serialises loads
	started time.Time
	// statusBroken is set while writing custinfo.status fails (under mu).
	statusBroken bool
	// stopped is set by Stopped (under mu): the row of custinfo.status is
	// final, and a load still running as the server stops leaves it so.
	stopped bool

	lastCfg lookup.Config // what cur was compiled from; under mu
}

// New returns a Holder with no snapshot yet; call Load, then Run.
func New(cfg Config) *Holder {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	return &Holder{cfg: cfg, started: cfg.NowFunc()}
}

// Snapshot returns the current snapshot, nil before the first good load.
func (h *Holder) Snapshot() *lookup.Snapshot { return h.cur.Load() }

// Load reads and compiles the configuration and swaps it in. On failure the
// last good snapshot keeps serving and the error is returned.
func (h *Holder) Load(ctx context.Context) error {
	_, err := h.reload(ctx, false)
	return err
}

// reload is Load; when onlyChanged is set, a configuration that compiles
// as the current one does is neither swapped in nor logged, and swapped
// reports whether it was.
func (h *Holder) reload(ctx context.Context, onlyChanged bool) (swapped bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cfg, snap, err := h.load(ctx)
	if h.cfg.ReloadFunc != nil {
		h.cfg.ReloadFunc(err)
	}
	if err != nil {
		h.recordStatus(ctx, nil, err)
		if h.cur.Load() == nil {
			h.cfg.Logger.Error("config load failed", "err", err)
		} else {
			h.cfg.Logger.Error("config reload failed; the last good configuration keeps serving", "err", err)
		}
		return false, err
	}
	if cur := h.cur.Load(); onlyChanged && cur != nil && reflect.DeepEqual(cfg, h.lastCfg) && sameCompiled(cur, snap) {
		h.recordStatus(ctx, cur, nil) // still loaded as it was: checked_at and the keys' use move on
		return false, nil
	}
	prev := h.cur.Load()
	h.recordStatus(ctx, snap, nil)
	h.cur.Store(snap)
	h.lastCfg = cfg
	// A warning is logged when it first appears, not on every reload.
	var seen []string
	if prev != nil {
		seen = prev.Warnings()
	}
	for _, w := range snap.Warnings() {
		if !slices.Contains(seen, w) {
			h.cfg.Logger.Warn("lookup slow", "warning", w)
		}
	}
	if h.cfg.LoadedFunc != nil {
		h.cfg.LoadedFunc(ctx, cfg, snap)
	}
	problems := snap.Problems()
	for _, p := range problems {
		h.cfg.Logger.Error("lookup misconfigured", "problem", p)
	}
	h.cfg.Logger.Info("config loaded", "lookups", len(snap.Names()), "problems", len(problems))
	return true, nil
}

// sameCompiled reports whether a and b hold the same lookups with the same
// SQL and problems.
func sameCompiled(a, b *lookup.Snapshot) bool {
	if !slices.Equal(a.Names(), b.Names()) {
		return false
	}
	for _, name := range a.Names() {
		la, _ := a.Get(name)
		lb, _ := b.Get(name)
		if la.SQL() != lb.SQL() || !slices.Equal(la.Problems, lb.Problems) || !slices.Equal(la.Warnings, lb.Warnings) {
			return false
		}
	}
	return true
}

func (h *Holder) load(ctx context.Context) (lookup.Config, *lookup.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := h.cfg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return lookup.Config{}, nil, fmt.Errorf("load config: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cfg, err := store.New(tx).LoadConfig(ctx)
	if err != nil {
		return lookup.Config{}, nil, fmt.Errorf("load config: %w", err)
	}
	snap, err := lookup.Compile(ctx, h.cfg.Pool, cfg, h.cfg.NowFunc())
	if err != nil {
		return lookup.Config{}, nil, fmt.Errorf("compile config: %w", err)
	}
	return cfg, snap, nil
}

// Run reloads on every notification and every Interval until ctx ends. The
// listener reconnects after a failure and reloads then, since notifications
// sent while it was away are lost.
//
// When the listener connection receives no notifications (a transaction
// pooler), Run says so and re-reads every PollInterval instead, trying the
// listener again every Interval.
func (h *Holder) Run(ctx context.Context) error {
	warned := false
	for {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoNotifications) {
			if !warned {
				h.cfg.Logger.Warn("config changes are polled: set --listen-database-url to a direct connection to the primary",
					"err", err, "poll_interval", h.cfg.PollInterval.String())
				warned = true
			}
			h.poll(ctx, h.cfg.Interval)
			continue
		}
		h.cfg.Logger.Warn("config listener lost; reconnecting", "err", err, "backoff", h.cfg.Backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(h.cfg.Backoff):
		}
	}
}

// poll re-reads the configuration every PollInterval for the duration d,
// swapping it in only when it changed.
func (h *Holder) poll(ctx context.Context, d time.Duration) {
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(h.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-tick.C:
			_, _ = h.reload(ctx, true) // logs its own failure
		}
	}
}

func (h *Holder) listen(ctx context.Context) error {
	cc := h.cfg.ListenConfig
	if cc == nil {
		cc = h.cfg.Pool.Config().ConnConfig
	}
	conn, err := pgx.ConnectConfig(ctx, cc.Copy())
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if err := h.probe(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Changes made while nobody listened are picked up now.
	if h.Snapshot() != nil {
		_, _ = h.reload(ctx, true) // logs only a configuration that changed
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, h.cfg.Interval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Periodic re-read; also proves the connection still answers.
			if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
				return fmt.Errorf("listener ping: %w", err)
			}
			_, _ = h.reload(ctx, true)
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		default:
			h.drain(ctx, conn)
			_, _ = h.reload(ctx, true)
		}
	}
}

// probe checks that conn receives notifications: it listens on a channel
// of its own, notifies it from the pool (another session) and waits. It
// runs before LISTEN on Channel, which stays the session's last statement
// (as pg_stat_activity shows it).
func (h *Holder) probe(ctx context.Context, conn *pgx.Conn) error {
	channel := fmt.Sprintf("custinfo_probe_%d", conn.PgConn().PID())
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if _, err := h.cfg.Pool.Exec(ctx, "SELECT pg_notify($1, '')", channel); err != nil {
		return fmt.Errorf("notify the listener: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, h.cfg.ProbeTimeout)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(pctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			return ErrNoNotifications
		case err != nil:
			return fmt.Errorf("wait for the test notification: %w", err)
		case n.Channel == channel:
			if _, err := conn.Exec(ctx, "UNLISTEN "+channel); err != nil {
				return fmt.Errorf("unlisten: %w", err)
			}
			return nil
		}
	}
}

// drain swallows the notifications that arrive right after the first one, so
// a transaction touching several tables causes one reload.
func (h *Holder) drain(ctx context.Context, conn *pgx.Conn) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err := conn.WaitForNotification(dctx)
		cancel()
		if err != nil {
			return
		}
	}
}
