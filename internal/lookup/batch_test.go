package lookup_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/testwait"
)

// batchFixture has numbers shared by several customers in different
// spellings, NULL results, a view without a key, and lookups of every match
// mode, so that coalesced answers can be compared with plain ones.
const batchFixture = `
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TABLE fam (id int PRIMARY KEY, code text NOT NULL, phone text, email text, email_c citext, name text, since date, n int);
INSERT INTO fam VALUES
    (3, 'F-3', '010-5555-0000', 'c@x', 'C@x', 'C', '2020-01-01', 30),
    (1, 'F-1', '01055550000', 'A@x', 'a@X', 'A', '2022-01-01', 10),
    (2, 'F-2', '+82 10-5555-0000', 'b@x', 'b@x', 'B', NULL, 20),
    (4, 'F-4', '010-1234-5678', 'd@x', 'd@x', NULL, '2021-01-01', 40),
    (5, 'F-5', '+1 415-555-2671', 'e@x', 'E@X', 'Park', NULL, 50),
    (6, 'F-6', '02-312-3456', 'shared@x', 'shared@x', '이서연', '2019-01-01', 60),
    (7, 'F-7', '023123456', 'SHARED@x', 'SHARED@x', '이서연 둘째', '2018-01-01', 70);
CREATE VIEW famv AS SELECT phone, name, code FROM fam;
INSERT INTO custinfo.lookups (name, source, order_by) VALUES
    ('asc', 'fam', 'since'), ('desc', 'fam', 'since DESC'), ('pk', 'fam', NULL), ('view', 'famv', NULL),
    ('by_code', 'fam', NULL), ('by_n', 'fam', NULL), ('by_email', 'fam', 'n DESC'), ('by_email_c', 'fam', NULL),
    ('two', 'fam', NULL);
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)
SELECT l, 'callNum', 'phone', 'phone', true, 'nation', 'KR' FROM unnest(ARRAY['asc','desc','pk','view']) l;
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region) VALUES
    ('by_code', 'code', 'code', 'exact', true, NULL, NULL),
    ('by_n', 'n', 'n', 'exact', true, NULL, NULL),
    ('by_email', 'email', 'email', 'ci', true, NULL, NULL),
    ('by_email_c', 'email', 'email_c', 'ci', true, NULL, NULL),
    ('two', 'callNum', 'phone', 'phone', true, NULL, 'KR'),
    ('two', 'email', 'email', 'exact', false, NULL, NULL);
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)
SELECT l, 'userName', 'name', 1 FROM unnest(ARRAY['asc','desc','pk','view','by_code','by_n','by_email','by_email_c','two']) l
UNION ALL
SELECT l, 'id', 'code', 2 FROM unnest(ARRAY['asc','desc','pk','view','by_code','by_n','by_email','by_email_c','two']) l;
`

// batchRequests are requests of every lookup of batchFixture: several
// matches, the same number twice and in other spellings, misses, NULLs.
var batchRequests = map[string][]map[string]string{
	"phone": {
		{"callNum": "010-5555-0000"},
		{"callNum": "010-1234-5678", "nation": "82"},
		{"callNum": "+14155552671"},
		{"callNum": "02-312-3456", "nation": "KR"},
		{"callNum": "010-9999-9999"},
		{"callNum": "+82 10 5555 0000"},
		{"callNum": "01055550000"},
		{"callNum": "010-8888-7777"},
	},
	"by_code":    {{"code": "F-1"}, {"code": "F-9"}, {"code": "F-3"}, {"code": "F-1"}},
	"by_n":       {{"n": "10"}, {"n": "999"}, {"n": "70"}},
	"by_email":   {{"email": "SHARED@X"}, {"email": "a@x"}, {"email": "nobody@x"}},
	"by_email_c": {{"email": "shared@X"}, {"email": "e@x"}, {"email": "x@y"}},
	"two":        {{"callNum": "010-5555-0000"}, {"callNum": "02-312-3456"}, {"callNum": "010-0000-0000"}},
}

// answer is what a request got, comparable across the two paths.
type answer struct {
	Fields  map[string]string
	Matches int64
	Err     string
}

func answerOf(res lookup.Result, err error) answer {
	switch {
	case errors.Is(err, lookup.ErrNoMatch):
		return answer{Err: "no match"}
	case err != nil:
		return answer{Err: err.Error()}
	}
	return answer{Fields: fields(res), Matches: res.Matches}
}

func TestCoalescedAnswersEqualPlain(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: pool})
	groups := map[string]string{"asc": "phone", "desc": "phone", "pk": "phone", "view": "phone",
		"by_code": "by_code", "by_n": "by_n", "by_email": "by_email", "by_email_c": "by_email_c", "two": "two"}
	for name, group := range groups {
		t.Run(name, func(t *testing.T) {
			l := get(t, snap, name)
			reqs := batchRequests[group]
			var want []answer
			for _, v := range reqs {
				want = append(want, answerOf(l.Run(ctx, pool, v)))
			}
			res, errs, err := c.RunTogether(ctx, l, reqs)
			if err != nil {
				t.Fatal(err)
			}
			var got []answer
			for i := range res {
				got = append(got, answerOf(res[i], errs[i]))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("coalesced answers differ from plain ones (-plain +coalesced):\n%s", diff)
			}
		})
	}
	if b, n := c.Stats(); b != uint64(len(groups)) || n == 0 {
		t.Errorf("Stats() = %d queries, %d requests; want %d queries", b, n, len(groups))
	}
}

// BatchQuery gives the statement and arguments a Coalescer runs: run
// through pgx directly, they answer each request as it is answered alone.
func TestBatchQueryAnswersAsPlain(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	for _, name := range []string{"asc", "by_code"} {
		l := get(t, snap, name)
		group := map[string]string{"asc": "phone", "by_code": "by_code"}[name]
		reqs := batchRequests[group]
		want := map[int]answer{}
		ps := make([]lookup.Prepared, len(reqs))
		for i, v := range reqs {
			a := answerOf(l.Run(ctx, pool, v))
			if a.Err == "" {
				want[i] = answer{Fields: a.Fields, Matches: a.Matches}
			}
			p, err := l.Bind(v)
			if err != nil {
				t.Fatalf("%s: Bind(%v): %v", name, v, err)
			}
			ps[i] = p
		}
		sql, args, err := l.BatchQuery(ps)
		if err != nil {
			t.Fatalf("%s: BatchQuery: %v", name, err)
		}
		if plain, _ := l.BatchStatement(reqs[0]); sql != plain {
			t.Errorf("%s: BatchQuery statement = %q, want the coalescer's %q", name, sql, plain)
		}
		rows, err := pool.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: run the batch statement: %v", name, err)
		}
		got := map[int]answer{}
		for rows.Next() {
			var ord int32
			var userName, id *string
			var matches int64
			if err := rows.Scan(&ord, &userName, &id, &matches); err != nil {
				t.Fatalf("%s: scan: %v", name, err)
			}
			f := map[string]string{"userName": "", "id": ""}
			if userName != nil {
				f["userName"] = *userName
			}
			if id != nil {
				f["id"] = *id
			}
			got[int(ord)] = answer{Fields: f, Matches: matches}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: rows: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: batch answers differ from plain ones (-plain +batch):\n%s", name, diff)
		}
	}

	two := get(t, snap, "two")
	var ps []lookup.Prepared
	for _, v := range []map[string]string{{"callNum": "010-5555-0000"}, {"callNum": "010-5555-0000", "email": "c@x"}} {
		p, err := two.Bind(v)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if _, _, err := two.BatchQuery(ps); err == nil {
		t.Errorf("BatchQuery(requests of two statements) = nil error, want one")
	}
	if _, _, err := two.BatchQuery(ps[1:]); err == nil {
		t.Errorf("BatchQuery(two matched params present) = nil error, want one")
	}
	if _, _, err := two.BatchQuery(nil); err == nil {
		t.Errorf("BatchQuery(nil) = nil error, want one")
	}
}

// A value that fails the coalesced query (an integer column given text)
// fails only its own request: the others are answered alone.
func TestCoalescedBadValueFailsAlone(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "by_n")
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: pool})
	reqs := []map[string]string{{"n": "10"}, {"n": "ten"}, {"n": "70"}, {"n": "5"}}
	res, errs, err := c.RunTogether(ctx, l, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range reqs {
		want := answerOf(l.Run(ctx, pool, v))
		if got := answerOf(res[i], errs[i]); !cmp.Equal(want, got) {
			t.Errorf("request %v: coalesced %+v, plain %+v", v, got, want)
		}
	}
	var ie *lookup.InputError
	if !errors.As(errs[1], &ie) {
		t.Errorf("bad value: error %v, want an *InputError", errs[1])
	}
}

func TestBatchStatementUsesIndex(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture+`
CREATE INDEX fam_phone_idx ON fam (custinfo.phone_key(phone));
INSERT INTO fam (id, code, phone) SELECT i, 'G-' || i, '010-' || lpad(i::text, 8, '0') FROM generate_series(100, 20000) i;
ANALYZE fam;`)
	l := get(t, snap, "pk")
	sql, err := l.BatchStatement(map[string]string{"callNum": "010-5555-0000"})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), "EXPLAIN "+sql, []string{"010-5555-0000", "01055550000", "010-1234-5678"}, []int32{0, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(plan, "\n"), "fam_phone_idx") {
		t.Errorf("plan of %s does not use the phone index:\n%s", sql, strings.Join(plan, "\n"))
	}
}

// gatedDB holds the queries of the real pool until the gate opens, so that
// requests pile up behind the first one.
type gatedDB struct {
	lookup.BatchQuerier
	gate    chan struct{}
	arrived atomic.Int32 // queries that reached the gate
	// batchGate, when set, holds the coalesced (multi-row) queries.
	batchGate chan struct{}
	batches   atomic.Int32 // coalesced queries that reached batchGate
}

func (g *gatedDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if g.batchGate != nil {
		g.batches.Add(1)
		select {
		case <-g.batchGate:
		case <-ctx.Done():
		}
	}
	return g.BatchQuerier.Query(ctx, sql, args...)
}

func (g *gatedDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	g.arrived.Add(1)
	select {
	case <-g.gate:
	case <-ctx.Done():
	}
	return g.BatchQuerier.QueryRow(ctx, sql, args...)
}

func TestCoalescerRunsWaitingRequestsTogether(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "desc")
	db := &gatedDB{BatchQuerier: pool, gate: make(chan struct{})}
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: db, MaxInFlight: 1, StallMin: time.Minute})
	reqs := batchRequests["phone"]

	got := make([]answer, len(reqs))
	var wg sync.WaitGroup
	// The first request runs alone and holds the only place in flight.
	wg.Go(func() { got[0] = answerOf(c.Run(ctx, l, reqs[0])) })
	testwait.Until(t, "the first query to start", 10*time.Second, func() bool { return db.arrived.Load() == 1 })
	for i := 1; i < len(reqs); i++ {
		wg.Go(func() { got[i] = answerOf(c.Run(ctx, l, reqs[i])) })
	}
	testwait.Until(t, "the other requests to wait", 10*time.Second, func() bool { return l.Waiting(reqs[0]) == len(reqs)-1 })
	// A request that gives up while waiting leaves the queue and is not run.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := c.Run(short, l, reqs[1]); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run with a deadline while waiting = %v, want DeadlineExceeded", err)
	}
	if n := l.Waiting(reqs[0]); n != len(reqs)-1 {
		t.Errorf("%d requests waiting after one gave up, want %d", n, len(reqs)-1)
	}
	close(db.gate)
	wg.Wait()

	for i, v := range reqs {
		if want := answerOf(l.Run(ctx, pool, v)); !cmp.Equal(want, got[i]) {
			t.Errorf("request %v: coalesced %+v, plain %+v", v, got[i], want)
		}
	}
	if b, n := c.Stats(); b != 1 || n != uint64(len(reqs)-1) {
		t.Errorf("Stats() = %d queries, %d requests; want 1 query for the %d that waited", b, n, len(reqs)-1)
	}
	// Idle again: a request runs at once, alone.
	c.Wait()
	if a := answerOf(c.Run(ctx, l, reqs[0])); !cmp.Equal(a, got[0]) {
		t.Errorf("idle run = %+v, want %+v", a, got[0])
	}
	if b, _ := c.Stats(); b != 1 {
		t.Errorf("an idle request was coalesced (%d queries)", b)
	}
}

// A request answered by a coalesced query still ends at its own deadline,
// while the query goes on for the others.
func TestCoalescedRequestKeepsItsDeadline(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	l := get(t, snap, "pk")
	db := &gatedDB{BatchQuerier: pool, gate: make(chan struct{}), batchGate: make(chan struct{})}
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: db, MaxInFlight: 1, StallMin: time.Minute})
	reqs := batchRequests["phone"]

	var wg sync.WaitGroup
	var first, patient answer
	wg.Go(func() { first = answerOf(c.Run(ctx, l, reqs[0])) })
	testwait.Until(t, "the first query to start", 10*time.Second, func() bool { return db.arrived.Load() == 1 })
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	hurried := make(chan error, 1)
	go func() {
		_, err := c.Run(short, l, reqs[1])
		hurried <- err
	}()
	wg.Go(func() { patient = answerOf(c.Run(ctx, l, reqs[2])) })
	testwait.Until(t, "two requests to wait", 10*time.Second, func() bool { return l.Waiting(reqs[0]) == 2 })
	close(db.gate)
	testwait.Until(t, "the coalesced query to start", 10*time.Second, func() bool { return db.batches.Load() == 1 })
	// The coalesced query is held; the hurried request must end regardless.
	select {
	case err := <-hurried:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("request past its deadline = %v, want DeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("request past its deadline still waits for the coalesced query")
	}
	close(db.batchGate)
	wg.Wait()
	c.Wait()
	for _, tt := range []struct {
		v   map[string]string
		got answer
	}{{reqs[0], first}, {reqs[2], patient}} {
		if want := answerOf(l.Run(ctx, pool, tt.v)); !cmp.Equal(want, tt.got) {
			t.Errorf("request %v: %+v, want %+v", tt.v, tt.got, want)
		}
	}
}

// Under concurrent load every request gets the answer it gets alone.
func TestCoalescerConcurrent(t *testing.T) {
	t.Parallel()
	pool, snap := setup(t, batchFixture)
	ctx := context.Background()
	c := lookup.NewCoalescer(lookup.CoalescerConfig{DB: pool, MaxInFlight: 1, MaxBatch: 4})
	type job struct {
		l *lookup.Lookup
		v map[string]string
	}
	var jobs []job
	want := map[string]answer{}
	for _, name := range []string{"desc", "view", "by_code", "by_email", "two"} {
		l := get(t, snap, name)
		group := name
		if name == "desc" || name == "view" {
			group = "phone"
		}
		for _, v := range batchRequests[group] {
			jobs = append(jobs, job{l, v})
			want[fmt.Sprint(name, v)] = answerOf(l.Run(ctx, pool, v))
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for k := range 40 {
				j := jobs[(w*7+k)%len(jobs)]
				got := answerOf(c.Run(ctx, j.l, j.v))
				if key := fmt.Sprint(j.l.Name, j.v); !cmp.Equal(got, want[key]) {
					mu.Lock()
					t.Errorf("%s %v: coalesced %+v, plain %+v", j.l.Name, j.v, got, want[key])
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	c.Wait()
	b, n := c.Stats()
	t.Logf("%d coalesced queries answered %d of %d requests", b, n, 16*40)
}
