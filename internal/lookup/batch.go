package lookup

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults for CoalescerConfig fields left zero.
const (
	DefaultMaxInFlight  = 1
	DefaultMaxBatch     = 64
	DefaultBatchTimeout = 2 * time.Second
)

// BatchQuerier runs single-row and multi-row queries; *pgxpool.Pool satisfies it.
type BatchQuerier interface {
	Querier
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CoalescerConfig configures a Coalescer.
type CoalescerConfig struct {
	// DB runs the queries.
	DB BatchQuerier
	// MaxInFlight is how many queries of one lookup run side by side before
	// further requests wait to be answered together; 0 means DefaultMaxInFlight.
	MaxInFlight int
	// MaxBatch bounds the requests one query answers; 0 means DefaultMaxBatch.
	MaxBatch int
	// Timeout bounds a coalesced query; every request also keeps its own
	// deadline. 0 means DefaultBatchTimeout.
	Timeout time.Duration
}

// Coalescer runs lookups like Lookup.Run, but answers the requests for the
// same lookup that arrive while MaxInFlight of its queries are running with
// one query, as soon as one of those ends; a goroutine of the Coalescer runs
// it. A request never waits for others to arrive: when fewer queries are in
// flight it runs at once, alone. Every request keeps its own deadline.
//
// The coalesced query runs the lookup's own statement once per request in a
// LATERAL join over the requests' values, so each request gets exactly the
// row (and match count) that it would get alone. Only statements with one
// present matched param are coalesced; the others run alone. If a coalesced
// query fails, each of its requests runs alone, so one request's bad value
// does not fail the others.
type Coalescer struct {
	cfg      CoalescerConfig
	wg       sync.WaitGroup // the goroutines running coalesced queries
	batches  atomic.Uint64
	answered atomic.Uint64
}

// NewCoalescer returns a Coalescer.
func NewCoalescer(cfg CoalescerConfig) *Coalescer {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultBatchTimeout
	}
	return &Coalescer{cfg: cfg}
}

// Stats returns the number of coalesced queries run so far and the number
// of requests they answered.
func (c *Coalescer) Stats() (batches, requests uint64) {
	return c.batches.Load(), c.answered.Load()
}

// Run binds the request values and runs the lookup, coalesced with the
// other requests for it that are waiting.
func (c *Coalescer) Run(ctx context.Context, l *Lookup, values map[string]string) (Result, error) {
	p, err := l.Bind(values)
	if err != nil {
		return Result{}, err
	}
	return c.Exec(ctx, l, p)
}

// Exec runs a lookup bound by l.Bind, coalesced with the other requests for
// it that are waiting.
func (c *Coalescer) Exec(ctx context.Context, l *Lookup, p Prepared) (Result, error) {
	q := l.batchQueue(p.mask)
	if q == nil {
		return l.Exec(ctx, c.cfg.DB, p)
	}
	q.mu.Lock()
	if q.inflight < c.cfg.MaxInFlight {
		q.inflight++
		q.mu.Unlock()
		res, err := l.Exec(ctx, c.cfg.DB, p)
		c.next(l, q)
		return res, err
	}
	w := &waiter{p: p, ready: make(chan struct{})}
	w.deadline, _ = ctx.Deadline()
	q.pending = append(q.pending, w)
	q.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
		// Gone from the queue, or its query is under way and its answer
		// will be dropped: either way the request ends now.
		q.leave(w)
		return Result{}, &QueryError{Lookup: l.Name, Err: ctx.Err()}
	}
	if w.retry {
		return l.Exec(ctx, c.cfg.DB, p)
	}
	return w.res, w.err
}

// Wait blocks until the coalesced queries under way have ended; call it
// when no more requests come.
func (c *Coalescer) Wait() {
	if c != nil {
		c.wg.Wait()
	}
}

// waiter is a request waiting to be answered by a coalesced query.
type waiter struct {
	p        Prepared
	deadline time.Time     // the request's; zero if none
	ready    chan struct{} // closed when the request is answered
	retry    bool          // the coalesced query failed: run alone
	res      Result
	err      error
}

// batchQueue holds the requests waiting for one statement of a lookup.
type batchQueue struct {
	sql string // the coalesced statement

	mu       sync.Mutex
	inflight int
	pending  []*waiter
}

// leave takes w out of the queue if it is still waiting.
func (q *batchQueue) leave(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.pending, w); i >= 0 {
		q.pending = slices.Delete(q.pending, i, i+1)
	}
}

// next hands the caller's place in flight to the waiting requests, if any: a
// goroutine of the Coalescer answers up to MaxBatch of them with one query,
// then calls next in turn. The caller does not wait for it.
func (c *Coalescer) next(l *Lookup, q *batchQueue) {
	q.mu.Lock()
	if len(q.pending) == 0 {
		q.inflight--
		q.mu.Unlock()
		return
	}
	n := min(len(q.pending), c.cfg.MaxBatch)
	batch := slices.Clone(q.pending[:n])
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	q.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(l, q, batch)
		c.next(l, q)
	}()
}

// run answers the requests of batch with one query and wakes them. The
// query may run until the last of their deadlines, at most Timeout.
func (c *Coalescer) run(l *Lookup, q *batchQueue, batch []*waiter) {
	limit := time.Now().Add(c.cfg.Timeout)
	var last time.Time
	for _, w := range batch {
		if w.deadline.IsZero() || w.deadline.After(limit) {
			last = limit
			break
		}
		if w.deadline.After(last) {
			last = w.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), last)
	defer cancel()
	if len(batch) == 1 {
		w := batch[0]
		w.res, w.err = l.Exec(ctx, c.cfg.DB, w.p)
		close(w.ready)
		return
	}
	err := c.query(ctx, l, q, batch)
	c.batches.Add(1)
	c.answered.Add(uint64(len(batch)))
	for _, w := range batch {
		w.retry = err != nil
		close(w.ready)
	}
}

// query runs the coalesced statement for batch and stores each request's
// answer in its waiter.
func (c *Coalescer) query(ctx context.Context, l *Lookup, q *batchQueue, batch []*waiter) error {
	var vals []string
	ords := make([]int32, 0, len(batch))
	for i, w := range batch {
		switch v := w.p.Args[0].(type) {
		case []string:
			for _, s := range v {
				vals = append(vals, s)
				ords = append(ords, int32(i))
			}
		case string:
			vals = append(vals, v)
			ords = append(ords, int32(i))
		default:
			return fmt.Errorf("coalesce: argument of type %T", v)
		}
	}
	rows, err := c.cfg.DB.Query(ctx, q.sql, vals, ords)
	if err != nil {
		return err
	}
	defer rows.Close()
	b := getRowBuf(len(l.Results), true)
	defer putRowBuf(b)
	found := make([]bool, len(batch))
	for rows.Next() {
		if err := rows.Scan(b.dest...); err != nil {
			return err
		}
		ord := b.ord
		if ord < 0 || int(ord) >= len(batch) || found[ord] {
			return fmt.Errorf("coalesce: unexpected request %d in the answer", ord)
		}
		found[ord] = true
		batch[ord].res = Result{Fields: b.fields(l), Matches: b.matches}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for i, w := range batch {
		if !found[i] {
			w.res, w.err = Result{}, ErrNoMatch
		}
	}
	return nil
}

// batchQueue returns the queue of the statement for mask, or nil when that
// statement is not coalesced (more than one present matched param).
func (l *Lookup) batchQueue(mask uint32) *batchQueue {
	if bits.OnesCount32(mask) != 1 || l.Broken() {
		return nil
	}
	l.stmtMu.Lock()
	defer l.stmtMu.Unlock()
	if q, ok := l.queues[mask]; ok {
		return q
	}
	if l.queues == nil {
		l.queues = map[uint32]*batchQueue{}
	}
	q := &batchQueue{sql: l.batchStatement(mask)}
	l.queues[mask] = q
	return q
}

// batchStatement returns the coalesced form of the statement for mask
// (one present matched param): the statement itself, run once per request
// in a LATERAL join over the requests' values. $1 holds the values and $2
// the index of the request each belongs to; a phone param has several
// values (spellings) per request, gathered back into one array.
func (l *Lookup) batchStatement(mask uint32) string {
	p := l.params[l.matched[bits.TrailingZeros32(mask)]]
	from := "unnest($1::text[], $2::int4[]) AS custinfo_req (v, ord)"
	if p.Match == MatchPhone {
		from = "(SELECT u.ord, array_agg(u.v) AS v FROM unnest($1::text[], $2::int4[]) AS u (v, ord) GROUP BY u.ord) AS custinfo_req"
	}
	inner := l.query("custinfo_src", l.whereArgs(mask, func(int) string { return "custinfo_req.v" }))
	return "SELECT custinfo_req.ord, custinfo_row.* FROM " + from + " CROSS JOIN LATERAL (" + inner + ") AS custinfo_row"
}
