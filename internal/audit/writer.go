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
	DefaultSettleTimeout = time.Minute
)

// ErrRejected marks a batch the database refused for its content (not for
// being unreachable): retrying cannot help, so the Writer drops the batch and
// counts its entries as dropped. WriteFunc wraps its error with it.
var ErrRejected = errors.New("access log batch rejected")

// UncertainError is returned by a WriteFunc whose commit was sent but not
// answered (the connection broke): the batch may be stored or not. Receipt
// names the write (a transaction id) for Config.StatusFunc.
type UncertainError struct {
	Receipt string
	Err     error
}

func (e *UncertainError) Error() string {
	return fmt.Sprintf("write %s not acknowledged: %v", e.Receipt, e.Err)
}

func (e *UncertainError) Unwrap() error { return e.Err }

// TxStatus is what became of a write whose commit was not acknowledged.
type TxStatus int

// The states of a write in doubt.
const (
	TxInProgress TxStatus = iota // not ended yet: ask again later
	TxCommitted                  // stored
	TxAborted                    // not stored
)

// Config configures a Writer.
type Config struct {
	Logger *slog.Logger
	// WriteFunc stores one batch atomically: every entry or none (COPY).
	WriteFunc func(ctx context.Context, batch []Entry) error
	// StatusFunc, when set, reports what became of a write that failed
	// with an *UncertainError (its commit was sent, its answer lost). The
	// Writer asks it before writing the batch again, so a batch that was
	// stored after all is not stored twice. Without it, or when the answer
	// stays unknown for SettleTimeout, delivery is at least once.
	StatusFunc func(ctx context.Context, receipt string) (TxStatus, error)
	// SettleTimeout bounds the time the Writer asks StatusFunc about one
	// write before writing its batch again anyway.
	SettleTimeout time.Duration
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
	// doubt is the write in doubt, if any: its batch, the oldest entries
	// queued, may have been stored. Only the flushing goroutine (Run's, or
	// the drainer once Run has stopped) uses it.
	doubt *doubt

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
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
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

// FailedBatches returns the number of batch writes that failed, and of
// checks of a write in doubt that found no answer (each retry counts).
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
// A batch whose write failed is written again later. When the failure left
// its commit in doubt (an *UncertainError), Config.StatusFunc is asked first,
// so a commit that went through unacknowledged is not repeated; without
// StatusFunc, or when the answer stays unknown for SettleTimeout, delivery is
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
	d := w.doubt
	w.doubt = nil
	if left == 0 {
		return nil
	}
	w.dropped.Add(uint64(left))
	if d != nil {
		return fmt.Errorf("access log: %d entries not written (%d of them by transaction %s, which may have committed): %w",
			left, min(d.n, left), d.receipt, ctx.Err())
	}
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
		var err error
		if w.doubt != nil {
			err = w.settle(ctx)
		} else if err = w.write(ctx, batch); errors.Is(err, ErrRejected) {
			w.remove(len(batch))
			w.dropped.Add(uint64(len(batch)))
			w.cfg.Logger.Error("access log batch rejected; entries dropped", "entries", len(batch), "err", err)
			continue
		}
		switch {
		case err == nil:
			if failing {
				w.cfg.Logger.Info("access log writes resumed", "queued", w.QueueDepth())
				failing = false
			}
			backoff = w.cfg.MinBackoff
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

// write writes batch, the oldest entries queued, and takes them off the
// queue once stored. A failure that leaves the commit in doubt becomes
// w.doubt when StatusFunc can settle it.
func (w *Writer) write(ctx context.Context, batch []Entry) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.WriteTimeout)
	defer cancel()
	err := w.cfg.WriteFunc(wctx, batch)
	if err == nil {
		w.remove(len(batch))
		w.written.Add(uint64(len(batch)))
		return nil
	}
	var ue *UncertainError
	if w.cfg.StatusFunc != nil && errors.As(err, &ue) {
		w.doubt = &doubt{receipt: ue.Receipt, n: len(batch), since: time.Now()}
	}
	return err
}

// doubt is a write whose commit was not acknowledged.
type doubt struct {
	receipt string
	n       int       // entries in its batch
	since   time.Time // when it failed
}

// settle asks StatusFunc what became of the write in doubt. Committed: its
// entries are taken off the queue as written. Aborted: the doubt is
// cleared, so the next pass writes them again. In progress, or no answer:
// an error, to ask again after a backoff, until SettleTimeout has passed
// since the write failed; then the doubt is cleared anyway (a duplicate row
// is possible, a lost one is not).
func (w *Writer) settle(ctx context.Context) error {
	d := w.doubt
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.WriteTimeout)
	status, err := w.cfg.StatusFunc(sctx, d.receipt)
	cancel()
	switch {
	case err == nil && status == TxCommitted:
		w.doubt = nil
		n := min(d.n, w.QueueDepth())
		w.remove(n)
		w.written.Add(uint64(n))
		w.cfg.Logger.Info("access log batch was stored although its commit was not acknowledged; not written again",
			"entries", n, "transaction", d.receipt)
		return nil
	case err == nil && status == TxAborted:
		w.doubt = nil
		return nil
	case time.Since(d.since) >= w.cfg.SettleTimeout:
		w.doubt = nil
		w.cfg.Logger.Warn("access log: no answer on whether a batch was stored; writing it again (a duplicate row is possible)",
			"entries", d.n, "transaction", d.receipt, "asked_for", w.cfg.SettleTimeout.String(), "err", err)
		return nil
	case err == nil:
		return fmt.Errorf("access log: the write of transaction %s has not ended yet", d.receipt)
	default:
		return fmt.Errorf("access log: ask whether transaction %s was stored: %w", d.receipt, err)
	}
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
