// Package reload keeps the current configuration snapshot: it loads and
// compiles the custinfo tables, swaps the result in atomically, and reloads on
// NOTIFY from the config triggers, with a periodic re-read as a fallback.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	DefaultInterval = 30 * time.Second
	DefaultBackoff  = time.Second
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
	// Instance, when set, names this server: every load records its
	// outcome in its row of custinfo.status.
	Instance *Instance
}

// Holder holds the current snapshot and reloads it.
type Holder struct {
	cfg     Config
	cur     atomic.Pointer[lookup.Snapshot]
	mu      sync.Mutex // serialises loads
	started time.Time
	// statusBroken is set while writing custinfo.status fails (under mu).
	statusBroken bool
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
	return &Holder{cfg: cfg, started: cfg.NowFunc()}
}

// Snapshot returns the current snapshot, nil before the first good load.
func (h *Holder) Snapshot() *lookup.Snapshot { return h.cur.Load() }

// Load reads and compiles the configuration and swaps it in. On failure the
// last good snapshot keeps serving and the error is returned.
func (h *Holder) Load(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	snap, err := h.load(ctx)
	if h.cfg.ReloadFunc != nil {
		h.cfg.ReloadFunc(err)
	}
	h.recordStatus(ctx, snap, err)
	if err != nil {
		h.cfg.Logger.Error("config reload failed; the last good configuration keeps serving", "err", err)
		return err
	}
	h.cur.Store(snap)
	problems := snap.Problems()
	for _, p := range problems {
		h.cfg.Logger.Error("lookup misconfigured", "problem", p)
	}
	h.cfg.Logger.Info("config loaded", "lookups", len(snap.Names()), "problems", len(problems))
	return nil
}

func (h *Holder) load(ctx context.Context) (*lookup.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := h.cfg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	cfg, err := store.New(tx).LoadConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	snap, err := lookup.Compile(ctx, h.cfg.Pool, cfg, h.cfg.NowFunc())
	if err != nil {
		return nil, fmt.Errorf("compile config: %w", err)
	}
	return snap, nil
}

// Run reloads on every notification and every Interval until ctx ends. The
// listener reconnects after a failure and reloads then, since notifications
// sent while it was away are lost.
func (h *Holder) Run(ctx context.Context) error {
	for {
		err := h.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		h.cfg.Logger.Warn("config listener lost; reconnecting", "err", err, "backoff", h.cfg.Backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(h.cfg.Backoff):
		}
	}
}

func (h *Holder) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, h.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Changes made while nobody listened are picked up now.
	if h.Snapshot() != nil {
		_ = h.Load(ctx)
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
			_ = h.Load(ctx)
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		default:
			h.drain(ctx, conn)
			_ = h.Load(ctx)
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
