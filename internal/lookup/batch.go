package lookup

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults for CoalescerConfig fields left zero.
const (
	DefaultMaxInFlight  = 2
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
// one query, as soon as one of those ends. A request never waits for others
// to arrive: when fewer queries are in flight it runs at once, alone.
//
// The coalesced query runs the lookup's own statement once per request in a
// LATERAL join over the requests' values, so each request gets exactly the
// row (and match count) that it would get alone. Only statements with one
// present matched param are coalesced; the others run alone. If a coalesced
// query fails, each of its requests runs alone, so one request's bad value
// does not fail the others.
type Coalescer struct {
	cfg      CoalescerConfig
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
	q := l.batchQueue(p.mask)
	if q == nil {
		return l.Exec(ctx, c.cfg.DB, p)
	}
	q.mu.Lock()
	if q.inflight < c.cfg.MaxInFlight {
		q.inflight++
		q.mu.Unlock()
		res, err := l.Exec(ctx, c.cfg.DB, p)
		c.next(q)
		return res, err
	}
	w := &waiter{p: p, ready: make(chan struct{})}
	q.pending = append(q.pending, w)
	q.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
		if lead := q.leave(w); !lead {
			// Still waiting, or answered by another request's query.
			return Result{}, &QueryError{Lookup: l.Name, Err: ctx.Err()}
		}
		<-w.ready // closed already: the request leads its batch and must run it
	}
	if w.batch != nil {
		c.run(l, q, w.batch)
		c.next(q)
	}
	if w.retry {
		return l.Exec(ctx, c.cfg.DB, p)
	}
	return w.res, w.err
}

// waiter is a request waiting to be answered by a coalesced query.
type waiter struct {
	p     Prepared
	ready chan struct{} // closed when the request leads a batch, or is answered
	// batch is set, under the queue's lock, when the request is to run the
	// batch (itself first) for all of them.
	batch []*waiter
	retry bool // the batch failed: run alone
	res   Result
	err   error
}

// batchQueue holds the requests waiting for one statement of a lookup.
type batchQueue struct {
	sql string // the coalesced statement

	mu       sync.Mutex
	inflight int
	pending  []*waiter
}

// leave takes w out of the queue when it is still waiting, and reports
// whether it leads a batch (and must run it).
func (q *batchQueue) leave(w *waiter) (lead bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, o := range q.pending {
		if o == w {
			q.pending = append(q.pending[:i], q.pending[i+1:]...)
			return false
		}
	}
	return w.batch != nil
}

// next hands the caller's place in flight to the waiting requests, if any:
// the first of them runs a query for up to MaxBatch of them.
func (c *Coalescer) next(q *batchQueue) {
	q.mu.Lock()
	if len(q.pending) == 0 {
		q.inflight--
		q.mu.Unlock()
		return
	}
	n := min(len(q.pending), c.cfg.MaxBatch)
	batch := make([]*waiter, n)
	copy(batch, q.pending)
	rest := copy(q.pending, q.pending[n:])
	clear(q.pending[rest:])
	q.pending = q.pending[:rest]
	batch[0].batch = batch
	q.mu.Unlock()
	close(batch[0].ready)
}

// run answers the requests of batch with one query and wakes them; the
// first is the caller.
func (c *Coalescer) run(l *Lookup, q *batchQueue, batch []*waiter) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	lead := batch[0]
	if len(batch) == 1 {
		lead.res, lead.err = l.Exec(ctx, c.cfg.DB, lead.p)
		return
	}
	err := c.query(ctx, l, q, batch)
	c.batches.Add(1)
	c.answered.Add(uint64(len(batch)))
	for _, w := range batch {
		if err != nil {
			w.retry = true
		}
		if w != lead {
			close(w.ready)
		}
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
