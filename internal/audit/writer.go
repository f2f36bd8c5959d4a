package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultQueueSize     = 10000
	DefaultBatchSize     = 1000
	DefaultFlushInterval = 200 * time.Millisecond
	DefaultWriteTimeout  = 10 * time.Second
	DefaultDrainTimeout  = 10 * time.Second
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultWarnInterval  = 10 * time.Second
)

// ErrRejected marks a batch the database refused for its content (not for
// being unreachable): retrying cannot help, so the Writer drops the batch and
// counts its entries as dropped. WriteFunc wraps its error with it.
var ErrRejected = errors.New("access log batch rejected")

// Config configures a Writer.
type Config struct {
	Logger *slog.Logger
	// WriteFunc stores one batch atomically: every entry or none (COPY).
	WriteFunc func(ctx context.Context, batch []Entry) error
	// StoredFunc, when set, reports whether an entry is stored already.
	// After a failed write the Writer asks it about the batch's first entry
	// before writing the batch again: a write whose commit went through
	// but was not acknowledged (the connection broke at that moment) is not
	// repeated. Without it delivery is at least once.
	StoredFunc func(ctx context.Context, e Entry) (bool, error)
	// Hasher masks and hashes each entry's clear Query before it is written.
	Hasher Hasher
	// QueueSize bounds the entries held in memory, including the batch being
	// written; an Add beyond it is dropped.
	QueueSize int
	// BatchSize is the most entries written at once; a full batch is
	// written at once, a partial one after FlushInterval.
	BatchSize     int
	FlushInterval time.Duration
	// WriteTimeout bounds one batch write.
	WriteTimeout time.Duration
	// DrainTimeout bounds the final flush when Run's context ends (Close
	// takes its own context).
	DrainTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between failed writes of a
	// batch; it doubles after each failure.
	MinBackoff, MaxBackoff time.Duration
	// WarnInterval is the least time between two warnings about drops or
	// write failures.
	WarnInterval time.Duration
}

// Writer queues access-log entries in memory and writes them in batches. Add
// never blocks; one goroutine, Run, writes; Close flushes what is queued.
type Writer struct {
	cfg Config

	mu      sync.Mutex
	ring    []Entry // queue: ring[head], ..., ring[head+n-1] (mod len)
	head, n int
	closed  bool // Add drops
	running bool // Run was called

	wake     chan struct{} // a full batch is waiting
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
	done     chan struct{} // closed when Run returns

	batch   []Entry    // Run's (or the drainer's) copy of the batch being written
	drainMu sync.Mutex // one drain at a time
	// unsure is the length of the last batch whose write failed without a
	// rejection: it may have been stored. Only the flushing goroutine (Run's,
	// or the drainer once Run has stopped) uses it.
	unsure int

	written, dropped, failed atomic.Uint64
	lastDropWarn             atomic.Int64 // unix nanoseconds
	lastFailWarn             time.Time    // writer goroutine only
}

// NewWriter returns a Writer; start Run in a goroutine, and call Close when
// no more entries come.
func NewWriter(cfg Config) *Writer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	cfg.BatchSize = min(cfg.BatchSize, cfg.QueueSize)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.WarnInterval <= 0 {
		cfg.WarnInterval = DefaultWarnInterval
	}
	return &Writer{
		cfg:  cfg,
		ring: make([]Entry, cfg.QueueSize),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
}

// Add queues e and reports whether it was accepted. It never blocks, and
// leaves masking and hashing e.Query to the writing goroutine. When the queue
// is full, or the Writer is closed, e is dropped and counted.
func (w *Writer) Add(e Entry) bool {
	e.clean()
	w.mu.Lock()
	if w.closed || w.n == len(w.ring) {
		w.mu.Unlock()
		w.drop(1)
		return false
	}
	w.ring[(w.head+w.n)%len(w.ring)] = e
	w.n++
	full := w.n >= w.cfg.BatchSize
	w.mu.Unlock()
	if full {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Written returns the number of entries stored so far.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Dropped returns the number of entries lost: refused by a full or closed
// queue, rejected by the database, or left unwritten when Close gave up.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// FailedBatches returns the number of batch writes that failed (each retry
// counts).
func (w *Writer) FailedBatches() uint64 { return w.failed.Load() }

// QueueDepth returns the number of entries waiting, including the batch
// being written.
func (w *Writer) QueueDepth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// QueueCapacity returns the most entries the queue holds.
func (w *Writer) QueueCapacity() int { return len(w.ring) }

// Run writes queued entries until Close is called or ctx ends. When ctx ends
// it flushes the queue (for at most Config.DrainTimeout) before returning;
// after Close it returns at once and Close flushes (a Run that starts after
// Close returns nil at once). An in-flight batch write is cancelled by
// neither: it ends by itself or after WriteTimeout.
//
// A batch whose write failed is written again later; with
// Config.StoredFunc it is first looked for, so each entry is stored once even
// when a commit went through unacknowledged. Without StoredFunc delivery is
// at least once: such an outage can leave a duplicate row.
func (w *Writer) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.running:
		w.mu.Unlock()
		return errors.New("audit: Writer.Run called twice")
	case w.closed:
		w.mu.Unlock()
		return nil // Close came first and flushed
	}
	w.running = true
	w.mu.Unlock()
	defer close(w.done)

	t := time.NewTimer(w.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return nil
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.DrainTimeout)
			defer cancel()
			return w.drain(dctx)
		case <-w.wake:
		case <-t.C:
		}
		w.flush(ctx, w.stop, false)
		t.Reset(w.cfg.FlushInterval)
	}
}

// Close stops accepting entries, stops Run, and writes everything queued,
// retrying while the database is unreachable, until the queue is empty or ctx
// ends; entries still queued then are counted as dropped and reported in the
// error. Calling Close again flushes again (a no-op when empty).
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	running := w.running
	w.mu.Unlock()
	w.stopOnce.Do(func() { close(w.stop) })
	if running {
		select {
		case <-w.done:
		case <-ctx.Done():
			return fmt.Errorf("access log: writer still busy with a batch: %w", ctx.Err())
		}
	}
	return w.drain(ctx)
}

// drain writes until the queue is empty, then closes it, or until ctx ends,
// then counts what is left as dropped.
func (w *Writer) drain(ctx context.Context) error {
	w.drainMu.Lock()
	defer w.drainMu.Unlock()
	if w.flush(ctx, nil, true) {
		return nil
	}
	w.mu.Lock()
	left := w.n
	w.closed = true
	w.clear(w.n)
	w.mu.Unlock()
	w.unsure = 0
	if left == 0 {
		return nil
	}
	w.dropped.Add(uint64(left))
	return fmt.Errorf("access log: %d entries not written: %w", left, ctx.Err())
}

// flush writes batches until the queue is empty (true), or until ctx ends or
// interrupt is closed (false). A failed write is retried with backoff; a
// rejected batch is dropped. With closeWhenEmpty, the queue is closed in the
// same step that finds it empty, so no entry is left behind.
func (w *Writer) flush(ctx context.Context, interrupt <-chan struct{}, closeWhenEmpty bool) bool {
	backoff := w.cfg.MinBackoff
	failing := false
	for {
		select {
		case <-ctx.Done():
			return false
		case <-interrupt:
			return false
		default:
		}
		batch := w.peek(closeWhenEmpty)
		if len(batch) == 0 {
			return true
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.WriteTimeout)
		stored, err := w.storedAlready(wctx, batch[0])
		switch {
		case err != nil:
		case stored:
			// The failed write committed: its entries, the oldest
			// queued, are done; those queued after it stay.
			n := w.unsure
			w.unsure = 0
			w.remove(n)
			w.written.Add(uint64(n))
			cancel()
			w.cfg.Logger.Info("access log batch was stored by a write that reported failure; not written again", "entries", n)
			continue
		default:
			err = w.cfg.WriteFunc(wctx, batch)
			w.unsure = 0
			if err != nil && !errors.Is(err, ErrRejected) {
				w.unsure = len(batch)
			}
		}
		cancel()
		switch {
		case err == nil:
			w.remove(len(batch))
			w.written.Add(uint64(len(batch)))
			if failing {
				w.cfg.Logger.Info("access log writes resumed", "queued", w.QueueDepth())
				failing = false
			}
			backoff = w.cfg.MinBackoff
		case errors.Is(err, ErrRejected):
			w.remove(len(batch))
			w.dropped.Add(uint64(len(batch)))
			w.cfg.Logger.Error("access log batch rejected; entries dropped", "entries", len(batch), "err", err)
		default:
			w.failed.Add(1)
			failing = true
			if now := time.Now(); now.Sub(w.lastFailWarn) >= w.cfg.WarnInterval {
				w.lastFailWarn = now
				w.cfg.Logger.Error("access log write failed; retrying", "queued", w.QueueDepth(),
					"capacity", len(w.ring), "retry_in", backoff.String(), "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			case <-interrupt:
				t.Stop()
				return false
			}
			backoff = min(2*backoff, w.cfg.MaxBackoff)
		}
	}
}

// storedAlready reports whether the last failed write stored its batch,
// whose first entry is first; false when no write is in doubt.
func (w *Writer) storedAlready(ctx context.Context, first Entry) (bool, error) {
	if w.unsure == 0 || w.cfg.StoredFunc == nil {
		return false, nil
	}
	stored, err := w.cfg.StoredFunc(ctx, first)
	if err != nil {
		return false, fmt.Errorf("check whether the last failed write was stored: %w", err)
	}
	return stored, nil
}

// peek copies up to a batch of the oldest entries, with their query values
// masked and hashed; they stay queued (and count against the capacity) until
// remove. Only the writing goroutine calls it, and only it moves head, so the
// slots of the batch stay put while the hashing runs without the lock.
func (w *Writer) peek(closeWhenEmpty bool) []Entry {
	w.mu.Lock()
	k := min(w.n, w.cfg.BatchSize)
	if k == 0 && closeWhenEmpty {
		w.closed = true
	}
	w.batch = w.batch[:0]
	inClear := false
	for i := range k {
		e := w.ring[(w.head+i)%len(w.ring)]
		inClear = inClear || e.Query != ""
		w.batch = append(w.batch, e)
	}
	w.mu.Unlock()
	if !inClear {
		return w.batch
	}
	for i := range w.batch {
		w.batch[i].redact(w.cfg.Hasher)
	}
	w.mu.Lock()
	for i, e := range w.batch {
		w.ring[(w.head+i)%len(w.ring)] = e // retries need not hash again
	}
	w.mu.Unlock()
	return w.batch
}

// remove takes the k oldest entries off the queue.
func (w *Writer) remove(k int) {
	w.mu.Lock()
	w.clear(k)
	w.mu.Unlock()
}

// clear drops the k oldest entries; w.mu is held.
func (w *Writer) clear(k int) {
	for i := range k {
		w.ring[(w.head+i)%len(w.ring)] = Entry{}
	}
	w.head = (w.head + k) % len(w.ring)
	w.n -= k
}

// drop counts k dropped entries and warns at most once per WarnInterval.
func (w *Writer) drop(k int) {
	total := w.dropped.Add(uint64(k))
	now := time.Now().UnixNano()
	last := w.lastDropWarn.Load()
	if now-last >= int64(w.cfg.WarnInterval) && w.lastDropWarn.CompareAndSwap(last, now) {
		w.cfg.Logger.Warn("access log queue full or closed; entries dropped",
			"dropped_total", total, "capacity", len(w.ring))
	}
}
