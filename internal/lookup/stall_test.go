package lookup_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/testwait"
)

// heldDB holds every query of the real pool that asks for the slow value,
// and, with holdBatches, every coalesced query, until release is closed or
// the query's context ends. It records the deadlines of coalesced queries.
type heldDB struct {
	lookup.BatchQuerier
	slow        string
	holdBatches bool
	release     chan struct{}
	held        atomic.Int32 // queries that were held

	mu        sync.Mutex
	deadlines []time.Time // of the coalesced queries
}

func newHeldDB(db lookup.BatchQuerier, slow string) *heldDB {
	return &heldDB{BatchQuerier: db, slow: slow, release: make(chan struct{})}
}

func (h *heldDB) asksSlow(args []any) bool {
	for _, a := range args {
		switch v := a.(type) {
		case string:
			if v == h.slow {
				return true
			}
		case []string:
			if slices.Contains(v, h.slow) {
				return true
			}
		}
	}
	return false
}

func (h *heldDB) hold(ctx context.Context) {
	h.held.Add(1)
	select {
	case <-h.release:
	case <-ctx.Done():
	}
}

func (h *heldDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if h.asksSlow(args) {
		h.hold(ctx)
	}
	return h.BatchQuerier.QueryRow(ctx, sql, args...)
}

func (h *heldDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	d, _ := ctx.Deadline()
	h.mu.Lock()
	h.deadlines = append(h.deadlines, d)
	h.mu.Unlock()
	if h.holdBatches || h.asksSlow(args) {
		h.hold(ctx)
	}
	return h.BatchQuerier.Query(ctx, sql, args...)
}

// slowStart runs the request for code through c until the test cancels it,
// and waits until its query is held: it then holds the only place in flight.
func slowStart(t *testing.T, c *lookup.Coalescer, l *lookup.Lookup, h *heldDB, code string) (cancel func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	before := h.held.Load()
	go func() {
		_, err := c.Run(ctx, l, map[string]string{"code": code})
		ch <- err
	}()
	testwait.Until(t, "the slow query to be held", 10*time.Second, func() bool { return h.held.Load() > before })
	return cancel, ch
}

// A query that runs past the stall limit no longer holds later requests
// back: they run, and are answered, while it still runs.
func TestStalledQueryDoesNotHoldOthersBack(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "by_code")
	h := newHeldDB(pool, "F-3")
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: h, StallMin: 20 * time.Millisecond, StallMax: 20 * time.Millisecond})
	cancelSlow, slowDone := slowStart(t, c, l, h, "F-3")
	defer cancelSlow()

	codes := []string{"F-1", "F-2", "F-4", "F-9", "F-5"}
	got := make([]answer, len(codes))
	var wg sync.WaitGroup
	for i, code := range codes {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			got[i] = answerOf(c.Run(rctx, l, map[string]string{"code": code}))
		})
	}
	wg.Wait()
	select {
	case err := <-slowDone:
		t.Fatalf("the slow request ended (%v) before the test released it", err)
	default:
	}
	for i, code := range codes {
		if want := answerOf(l.Run(ctx, pool, map[string]string{"code": code})); !cmp.Equal(got[i], want) {
			t.Errorf("request %s behind a stalled query: %+v, want %+v", code, got[i], want)
		}
	}
	if n := c.Counters().Stalls; n < 1 {
		t.Errorf("Counters().Stalls = %d, want at least 1", n)
	}
	close(h.release)
	if err := <-slowDone; err != nil {
		t.Errorf("slow request after release: %v", err)
	}
	c.Wait()
}

// A coalesced query runs no longer than the earliest deadline of its
// requests; when that passes, the others are answered alone at once.
func TestBatchBoundedByEarliestDeadline(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "by_code")
	h := newHeldDB(pool, "F-3")
	h.holdBatches = true
	defer close(h.release)
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: h, Timeout: time.Minute, StallMin: time.Minute})
	cancelSlow, slowDone := slowStart(t, c, l, h, "F-3")

	start := time.Now()
	early := start.Add(1500 * time.Millisecond)
	late := start.Add(30 * time.Second)
	codes := []string{"F-1", "F-2", "F-4"}
	deadlines := []time.Time{early, late, late}
	got := make([]answer, len(codes))
	errs := make([]error, len(codes))
	ended := make([]time.Duration, len(codes))
	var wg sync.WaitGroup
	for i, code := range codes {
		wg.Go(func() {
			rctx, cancel := context.WithDeadline(ctx, deadlines[i])
			defer cancel()
			res, err := c.Run(rctx, l, map[string]string{"code": code})
			got[i], errs[i], ended[i] = answerOf(res, err), err, time.Since(start)
		})
	}
	testwait.Until(t, "three requests to wait", 10*time.Second, func() bool { return l.Waiting(map[string]string{"code": "F-1"}) == 3 })
	cancelSlow() // its place goes to the three, in one coalesced query (held)
	<-slowDone
	wg.Wait()

	h.mu.Lock()
	batchDeadlines := slices.Clone(h.deadlines)
	h.mu.Unlock()
	if len(batchDeadlines) != 1 {
		t.Fatalf("%d coalesced queries, want 1", len(batchDeadlines))
	}
	if d := batchDeadlines[0]; d.IsZero() || d.After(early) {
		t.Errorf("coalesced query's deadline is %v after the start, want at most the earliest request's, %v", d.Sub(start), early.Sub(start))
	}
	if !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("request with the earliest deadline: %v, want DeadlineExceeded", errs[0])
	}
	for i := 1; i < len(codes); i++ {
		if want := answerOf(l.Run(ctx, pool, map[string]string{"code": codes[i]})); !cmp.Equal(got[i], want) {
			t.Errorf("request %s after the coalesced query ran out of time: %+v, want %+v", codes[i], got[i], want)
		}
		if ended[i] > 15*time.Second {
			t.Errorf("request %s answered after %v, long after the coalesced query ended", codes[i], ended[i])
		}
	}
	t.Logf("earliest deadline %v; the others answered after %v and %v", early.Sub(start), ended[1], ended[2])
	if n := c.Counters().Abandoned; n != 1 {
		t.Errorf("Counters().Abandoned = %d, want 1", n)
	}
	c.Wait()
}

// A coalesced query that stalls on one slow value is abandoned: the other
// requests are answered alone at once, without waiting for the slow one.
func TestAbandonedBatchAnswersSurvivorsAtOnce(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "by_code")
	h := newHeldDB(pool, "F-3")
	const limit = time.Second
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: h, Timeout: time.Minute, StallMin: limit, StallMax: limit})
	cancelFirst, firstDone := slowStart(t, c, l, h, "F-3")

	codes := []string{"F-3", "F-1", "F-2"} // the first is held again, in the coalesced query and alone
	got := make([]answer, len(codes))
	ended := make([]time.Time, len(codes))
	var survivors atomic.Int32 // answered, of the requests but the first
	var wg sync.WaitGroup
	for i, code := range codes {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			got[i] = answerOf(c.Run(rctx, l, map[string]string{"code": code}))
			ended[i] = time.Now()
			if i > 0 {
				survivors.Add(1)
			}
		})
	}
	testwait.Until(t, "three requests to wait", 10*time.Second, func() bool { return l.Waiting(map[string]string{"code": "F-1"}) == 3 })
	cancelFirst()
	<-firstDone
	batchStart := time.Now()
	testwait.Until(t, "the others to be answered while the slow one is held", 20*time.Second, func() bool {
		return survivors.Load() == int32(len(codes)-1)
	})
	if c.Counters().Abandoned != 1 {
		t.Errorf("Counters().Abandoned = %d, want 1", c.Counters().Abandoned)
	}
	if n := h.held.Load(); n < 3 {
		t.Errorf("%d queries held, want 3: the first, the coalesced one and the slow request alone", n)
	}
	close(h.release)
	wg.Wait()
	for i := 1; i < len(codes); i++ {
		if want := answerOf(l.Run(ctx, pool, map[string]string{"code": codes[i]})); !cmp.Equal(got[i], want) {
			t.Errorf("request %s beside a slow one: %+v, want %+v", codes[i], got[i], want)
		}
		if d := ended[i].Sub(batchStart); d > 10*limit {
			t.Errorf("request %s answered %v after its coalesced query started, want about the stall limit (%v)", codes[i], d, limit)
		}
	}
	if want := answerOf(l.Run(ctx, pool, map[string]string{"code": "F-3"})); !cmp.Equal(got[0], want) {
		t.Errorf("slow request after release: %+v, want %+v", got[0], want)
	}
	c.Wait()
}

// The requests waiting for one statement are bounded: one more is refused
// at once with ErrQueueFull.
func TestCoalescerQueueBounded(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "by_code")
	h := newHeldDB(pool, "F-3")
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: h, MaxWaiting: 2, StallMin: time.Minute})
	cancelSlow, slowDone := slowStart(t, c, l, h, "F-3")
	defer cancelSlow()

	codes := []string{"F-1", "F-2"}
	got := make([]answer, len(codes))
	var wg sync.WaitGroup
	for i, code := range codes {
		wg.Go(func() { got[i] = answerOf(c.Run(ctx, l, map[string]string{"code": code})) })
	}
	testwait.Until(t, "two requests to wait", 10*time.Second, func() bool { return l.Waiting(map[string]string{"code": "F-1"}) == 2 })
	_, err := c.Run(ctx, l, map[string]string{"code": "F-4"})
	var qe *lookup.QueryError
	if !errors.Is(err, lookup.ErrQueueFull) || !errors.As(err, &qe) || qe.Lookup != "by_code" {
		t.Errorf("third waiting request: %v, want a *QueryError for by_code wrapping ErrQueueFull", err)
	}
	if n := c.Counters().Rejected; n != 1 {
		t.Errorf("Counters().Rejected = %d, want 1", n)
	}
	close(h.release)
	wg.Wait()
	if err := <-slowDone; err != nil {
		t.Errorf("slow request after release: %v", err)
	}
	for i, code := range codes {
		if want := answerOf(l.Run(ctx, pool, map[string]string{"code": code})); !cmp.Equal(got[i], want) {
			t.Errorf("waiting request %s: %+v, want %+v", code, got[i], want)
		}
	}
	c.Wait()
}
