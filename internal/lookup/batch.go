package lookup

import (
	"context"
	"errors"
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
	DefaultMaxWaiting   = 256
	DefaultBatchTimeout = 2 * time.Second
	DefaultStallMin     = 10 * time.Millisecond
	DefaultStallMax     = 200 * time.Millisecond
	DefaultAbandonMin   = 50 * time.Millisecond
)

// StallFactor is how many times a lookup's recent query latency a query may
// run before it stops holding later requests back (see Coalescer).
const StallFactor = 4

// ErrQueueFull is the cause (inside a *QueryError) of a request refused
// because too many requests already wait for the same lookup.
var ErrQueueFull = errors.New("too many requests wait for this lookup's queries")

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
	// MaxWaiting bounds the requests waiting for one lookup's statement;
	// one more is refused with ErrQueueFull. 0 means DefaultMaxWaiting.
	MaxWaiting int
	// Timeout bounds a coalesced query; every request also keeps its own
	// deadline. 0 means DefaultBatchTimeout.
	Timeout time.Duration
	// StallMin and StallMax clamp the stall limit: StallFactor times the
	// lookup's recent query latency. 0 means DefaultStallMin, DefaultStallMax.
	StallMin, StallMax time.Duration
	// AbandonMin is the least time a coalesced query runs before it may be
	// abandoned; 0 means DefaultAbandonMin.
	AbandonMin time.Duration
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
// present matched param are coalesced; the others run alone.
//
// A slow neighbour never holds a request back for long. A query that has run
// longer than the stall limit (StallFactor times the moving average of the
// lookup's query latency, clamped to StallMin..StallMax) gives up its place
// in flight: the requests waiting behind it run at once, and a request that
// arrives later runs alone. A coalesced query that runs past StallFactor
// times that latency (at least AbandonMin, but not clamped above, so that a
// uniformly slow database does not have every query thrown away and redone)
// is abandoned (cancelled), and so is one that fails or reaches the
// earliest deadline of its requests: each of its requests is then answered
// at once by running alone, in parallel, within its own remaining time. So
// a request waits at most about one stall limit for its neighbours, and one
// bad value or slow row fails only its own request. At most MaxWaiting
// requests wait per statement; more are refused with ErrQueueFull rather
// than queued behind a database that does not keep up.
type Coalescer struct {
	cfg       CoalescerConfig
	wg        sync.WaitGroup // the goroutines running coalesced queries, armed timers
	batches   atomic.Uint64
	answered  atomic.Uint64
	stalls    atomic.Uint64
	abandoned atomic.Uint64
	rejected  atomic.Uint64
}

// NewCoalescer returns a Coalescer.
func NewCoalescer(cfg CoalescerConfig) *Coalescer {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.MaxWaiting <= 0 {
		cfg.MaxWaiting = DefaultMaxWaiting
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultBatchTimeout
	}
	if cfg.StallMin <= 0 {
		cfg.StallMin = DefaultStallMin
	}
	if cfg.StallMax <= 0 {
		cfg.StallMax = DefaultStallMax
	}
	cfg.StallMax = max(cfg.StallMax, cfg.StallMin)
	if cfg.AbandonMin <= 0 {
		cfg.AbandonMin = DefaultAbandonMin
	}
	return &Coalescer{cfg: cfg}
}

// Stats returns the number of coalesced queries run so far and the number
// of requests they answered.
func (c *Coalescer) Stats() (batches, requests uint64) {
	return c.batches.Load(), c.answered.Load()
}

// CoalescerCounters are a Coalescer's counts since it was made.
type CoalescerCounters struct {
	// Batches is the number of coalesced queries run, Batched the requests
	// they answered.
	Batches, Batched uint64
	// Stalls counts queries that ran past the stall limit and gave up their
	// place in flight, so that requests behind them ran without waiting.
	Stalls uint64
	// Abandoned counts coalesced queries given up (stalled, out of time or
	// failed) whose requests were answered by running alone.
	Abandoned uint64
	// Rejected counts requests refused with ErrQueueFull.
	Rejected uint64
}

// Counters returns the Coalescer's counts so far.
func (c *Coalescer) Counters() CoalescerCounters {
	if c == nil {
		return CoalescerCounters{}
	}
	return CoalescerCounters{
		Batches:   c.batches.Load(),
		Batched:   c.answered.Load(),
		Stalls:    c.stalls.Load(),
		Abandoned: c.abandoned.Load(),
		Rejected:  c.rejected.Load(),
	}
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
	now := time.Now()
	q.mu.Lock()
	if q.inflight >= c.cfg.MaxInFlight {
		c.sweep(q, now, true)
		c.fill(l, q, now)
	}
	if q.inflight < c.cfg.MaxInFlight {
		r := &run{start: now}
		q.inflight++
		q.runs = append(q.runs, r)
		q.mu.Unlock()
		res, err := l.Exec(ctx, c.cfg.DB, p)
		c.finish(l, q, r, ctx.Err() == nil)
		return res, err
	}
	if len(q.pending) >= c.cfg.MaxWaiting {
		q.mu.Unlock()
		c.rejected.Add(1)
		return Result{}, &QueryError{Lookup: l.Name, Err: ErrQueueFull}
	}
	w := &waiter{p: p, ready: make(chan struct{})}
	w.deadline, _ = ctx.Deadline()
	q.pending = append(q.pending, w)
	c.arm(l, q, now)
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
	settled  atomic.Bool   // res, err and retry are set (once)
	retry    bool          // no answer from a coalesced query: run alone
	res      Result
	err      error
}

// settle answers w, unless it was answered already, and wakes it.
func (w *waiter) settle(res Result, err error, retry bool) {
	if !w.settled.CompareAndSwap(false, true) {
		return
	}
	w.res, w.err, w.retry = res, err, retry
	close(w.ready)
}

// run is a query holding a place in flight: a request running alone in its
// own goroutine (batch nil) or a query of the Coalescer answering batch.
type run struct {
	start     time.Time
	released  bool // gave up its place in flight (stalled or abandoned)
	abandoned bool // its requests were woken to run alone
	batch     []*waiter
	cancel    context.CancelFunc // ends the query of batch
}

// batchQueue holds the requests waiting for one statement of a lookup.
type batchQueue struct {
	sql string // the coalesced statement

	mu       sync.Mutex
	inflight int    // places in flight taken
	runs     []*run // the queries running, but abandoned ones
	pending  []*waiter
	latency  time.Duration // moving average of the queries' durations (see observe)
	armed    bool          // timer will call tick
	timer    *time.Timer
}

// leave takes w out of the queue if it is still waiting.
func (q *batchQueue) leave(w *waiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.pending, w); i >= 0 {
		q.pending = slices.Delete(q.pending, i, i+1)
	}
}

// limits returns how long a query of q may run before it stops holding
// later requests back (StallFactor times the recent latency, clamped to
// StallMin..StallMax), and before a coalesced query is abandoned (the same
// multiple, at least AbandonMin, not clamped above: an abandoned query is
// cancelled, which costs its database connection, and when the whole
// database is slow its queries must not all be thrown away and redone).
// Before any query of q has ended, the latency is unknown and both are
// StallMax at least: new connections are slow to open. q.mu is held.
func (c *Coalescer) limits(q *batchQueue) (stall, abandon time.Duration) {
	if q.latency == 0 {
		return c.cfg.StallMax, max(c.cfg.StallMax, c.cfg.AbandonMin)
	}
	d := StallFactor * q.latency
	return min(max(d, c.cfg.StallMin), c.cfg.StallMax), max(d, c.cfg.AbandonMin)
}

// observe adds a query's duration d to q's moving average. One sample
// counts at most twice the abandon limit, so a single very slow query does
// not make the limits lax for long. q.mu is held.
func (q *batchQueue) observe(d time.Duration) {
	if q.latency == 0 {
		q.latency = d
		return
	}
	d = min(d, 2*StallFactor*q.latency)
	q.latency += (d - q.latency) / 8
}

// sweep makes the queries of q that have run past the stall limit give up
// their place in flight when a request needs it (waiting, or requests
// pending), and abandons the coalesced queries past the abandon limit. A
// stalled query goes on, within its requests' deadlines. q.mu is held.
func (c *Coalescer) sweep(q *batchQueue, now time.Time, waiting bool) {
	stall, abandon := c.limits(q)
	waiting = waiting || len(q.pending) > 0
	kept := q.runs[:0]
	for _, r := range q.runs {
		age := now.Sub(r.start)
		if !r.released && waiting && age >= stall {
			r.released = true
			q.inflight--
			c.stalls.Add(1)
		}
		if len(r.batch) > 1 && !r.abandoned && age >= abandon {
			c.abandon(q, r)
			q.observe(age) // at least this slow: the limits follow a slow database
			continue
		}
		kept = append(kept, r)
	}
	clear(q.runs[len(kept):])
	q.runs = kept
}

// abandon gives up the coalesced query of r: it is cancelled and its
// requests run alone now. q.mu is held.
func (c *Coalescer) abandon(q *batchQueue, r *run) {
	if !r.released {
		r.released = true
		q.inflight--
	}
	r.abandoned = true
	c.abandoned.Add(1)
	r.cancel()
	for _, w := range r.batch {
		w.settle(Result{}, nil, true)
	}
}

// fill starts coalesced queries for the waiting requests while places in
// flight are free: each answers up to MaxBatch of them, in a goroutine of
// the Coalescer, within the earliest of their deadlines. q.mu is held.
func (c *Coalescer) fill(l *Lookup, q *batchQueue, now time.Time) {
	for q.inflight < c.cfg.MaxInFlight && len(q.pending) > 0 {
		n := min(len(q.pending), c.cfg.MaxBatch)
		batch := slices.Clone(q.pending[:n])
		rest := copy(q.pending, q.pending[n:])
		clear(q.pending[rest:])
		q.pending = q.pending[:rest]

		end := now.Add(c.cfg.Timeout)
		for _, w := range batch {
			if !w.deadline.IsZero() && w.deadline.Before(end) {
				end = w.deadline
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), end)
		r := &run{start: now, batch: batch, cancel: cancel}
		q.inflight++
		q.runs = append(q.runs, r)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer cancel()
			c.answer(ctx, l, q, r)
			c.finish(l, q, r, ctx.Err() == nil)
		}()
	}
	c.arm(l, q, now)
}

// finish ends r: its place in flight (unless it gave it up already) goes to
// the waiting requests. timely tells whether the query ended by itself,
// not by a deadline or abandonment; its duration then counts in the
// lookup's latency.
func (c *Coalescer) finish(l *Lookup, q *batchQueue, r *run, timely bool) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if timely {
		q.observe(now.Sub(r.start))
	}
	if !r.released {
		q.inflight--
	}
	if i := slices.Index(q.runs, r); i >= 0 {
		q.runs = slices.Delete(q.runs, i, i+1)
	}
	c.fill(l, q, now)
}

// arm starts a timer for the next time sweep has something to do: a query
// holding its place passes the stall limit while requests wait, or a
// coalesced query passes the abandon limit. q.mu is held. A timer no longer
// needed is stopped, so Wait does not wait for it.
func (c *Coalescer) arm(l *Lookup, q *batchQueue, now time.Time) {
	var at time.Time
	stall, abandon := c.limits(q)
	next := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	for _, r := range q.runs {
		if !r.released && len(q.pending) > 0 {
			next(r.start.Add(stall))
		}
		if len(r.batch) > 1 && !r.abandoned {
			next(r.start.Add(abandon))
		}
	}
	if q.armed {
		if at.IsZero() && q.timer.Stop() {
			q.armed = false
			c.wg.Done()
		}
		return
	}
	if at.IsZero() {
		return
	}
	q.armed = true
	c.wg.Add(1)
	q.timer = time.AfterFunc(max(at.Sub(now), 0), func() {
		defer c.wg.Done()
		c.tick(l, q)
	})
}

// tick is the timer of arm: it sweeps stalled queries out of the way and
// starts queries for the requests that waited for them.
func (c *Coalescer) tick(l *Lookup, q *batchQueue) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.armed = false
	c.sweep(q, now, false)
	c.fill(l, q, now) // arms again if needed
}

// answer answers the requests of r.batch with one query, or wakes them to
// run alone when it fails or ctx ends first.
func (c *Coalescer) answer(ctx context.Context, l *Lookup, q *batchQueue, r *run) {
	batch := r.batch
	if len(batch) == 1 {
		w := batch[0]
		res, err := l.Exec(ctx, c.cfg.DB, w.p)
		w.settle(res, err, false)
		return
	}
	res, errs, err := c.query(ctx, l, q, batch)
	c.batches.Add(1)
	c.answered.Add(uint64(len(batch)))
	if err != nil {
		q.mu.Lock()
		if !r.abandoned { // else counted already
			r.abandoned = true
			c.abandoned.Add(1)
		}
		q.mu.Unlock()
	}
	for i, w := range batch {
		if err != nil {
			w.settle(Result{}, nil, true)
			continue
		}
		w.settle(res[i], errs[i], false)
	}
}

// query runs the coalesced statement for batch and returns each request's
// answer, or the error that failed the query.
func (c *Coalescer) query(ctx context.Context, l *Lookup, q *batchQueue, batch []*waiter) ([]Result, []error, error) {
	vals, ords, err := batchArgs(len(batch), func(i int) []any { return batch[i].p.Args })
	if err != nil {
		return nil, nil, err
	}
	rows, err := c.cfg.DB.Query(ctx, q.sql, vals, ords)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	b := getRowBuf(len(l.Results), true)
	defer putRowBuf(b)
	res := make([]Result, len(batch))
	errs := make([]error, len(batch))
	found := make([]bool, len(batch))
	for rows.Next() {
		if err := rows.Scan(b.dest...); err != nil {
			return nil, nil, err
		}
		ord := b.ord
		if ord < 0 || int(ord) >= len(batch) || found[ord] {
			return nil, nil, fmt.Errorf("coalesce: unexpected request %d in the answer", ord)
		}
		found[ord] = true
		res[ord] = Result{Fields: b.fields(l), Matches: b.matches}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	for i := range batch {
		if !found[i] {
			errs[i] = ErrNoMatch
		}
	}
	return res, errs, nil
}

// batchArgs returns the two arguments of a coalesced statement for n
// requests whose bound arguments are args(i): every value of the matched
// param (a phone param has several), and beside each the index of its
// request.
func batchArgs(n int, args func(i int) []any) ([]string, []int32, error) {
	var vals []string
	ords := make([]int32, 0, n)
	for i := range n {
		a := args(i)
		if len(a) != 1 {
			return nil, nil, fmt.Errorf("coalesce: %d arguments, want 1", len(a))
		}
		switch v := a[0].(type) {
		case []string:
			for _, s := range v {
				vals = append(vals, s)
				ords = append(ords, int32(i))
			}
		case string:
			vals = append(vals, v)
			ords = append(ords, int32(i))
		default:
			return nil, nil, fmt.Errorf("coalesce: argument of type %T", v)
		}
	}
	return vals, ords, nil
}

// BatchQuery returns the statement and arguments with which a Coalescer
// answers the requests ps (bound by l.Bind) with one query, for running
// them elsewhere (custinfo-bench measures the database answering the
// server's batches). Each row of the answer is the int4 index in ps of the
// request it answers, then the lookup's results as text and the match
// count, as Exec reads them; a request without a row has no match. It
// fails when ps is empty or its requests do not all bind to one coalesced
// statement (more than one matched param present is never coalesced).
func (l *Lookup) BatchQuery(ps []Prepared) (string, []any, error) {
	if len(ps) == 0 {
		return "", nil, errors.New("coalesce: no requests")
	}
	q := l.batchQueue(ps[0].mask)
	if q == nil {
		return "", nil, fmt.Errorf("coalesce: lookup %q does not coalesce these requests", l.Name)
	}
	for _, p := range ps[1:] {
		if p.mask != ps[0].mask {
			return "", nil, fmt.Errorf("coalesce: lookup %q: requests of different statements", l.Name)
		}
	}
	vals, ords, err := batchArgs(len(ps), func(i int) []any { return ps[i].Args })
	if err != nil {
		return "", nil, err
	}
	return q.sql, []any{vals, ords}, nil
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
