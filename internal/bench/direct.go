package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
)

// directStep returns a worker's step of the pgx baseline: the lookup's own
// statement with the arguments the lookup bound for the request, straight
// through pgxpool, with the answer checked as for custinfo.
func directStep(pool *pgxpool.Pool, nresults int, items []item, seed uint64, w int) (stepFunc, func()) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	one := newSingleQuery(nresults)
	step := func(ctx context.Context) error {
		return one.run(ctx, pool, &items[rng.IntN(len(items))])
	}
	return step, func() {}
}

// singleQuery runs the lookup's own statement for one request and checks
// its answer.
type singleQuery struct {
	vals    []pgtype.Text
	matches int64
	dest    []any
}

func newSingleQuery(nresults int) *singleQuery {
	q := &singleQuery{vals: make([]pgtype.Text, nresults)}
	q.dest = make([]any, 0, nresults+1)
	for i := range q.vals {
		q.dest = append(q.dest, &q.vals[i])
	}
	q.dest = append(q.dest, &q.matches)
	return q
}

func (q *singleQuery) run(ctx context.Context, pool *pgxpool.Pool, it *item) error {
	err := pool.QueryRow(ctx, it.sql, it.args...).Scan(q.dest...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return checkNoRow(it)
	case err != nil:
		return fmt.Errorf("query: %w", err)
	}
	return checkRow(it, q.vals)
}

// checkRow reports whether a row with the result values vals is the right
// answer to it: a hit, answered with its customer.
func checkRow(it *item, vals []pgtype.Text) error {
	if !it.hit {
		return errors.New("a row for a miss")
	}
	if slices.ContainsFunc(vals, func(v pgtype.Text) bool { return v.String == it.idText }) {
		return nil
	}
	return fmt.Errorf("hit answered with the wrong customer %q", vals[0].String)
}

// checkNoRow reports whether no row is the right answer to it: a miss.
func checkNoRow(it *item) error {
	if it.hit {
		return errors.New("no row for a hit")
	}
	return nil
}

// coalescedStep returns a worker's step of the coalesced pgx baseline: each
// call draws the size k of a query from mix, as the server formed them, and
// sends k requests of the workload as the server would: one alone with the
// lookup's own statement, several with the coalesced statement
// (Lookup.BatchQuery). Each of the k answers is checked as directStep
// checks one.
func coalescedStep(pool *pgxpool.Pool, l *lookup.Lookup, items []item, mix batchMix, seed uint64, w int) (batchStepFunc, func()) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	one := newSingleQuery(len(l.Results))
	var (
		batch   []*item
		ps      []lookup.Prepared
		seen    []bool
		ord     int32
		matches int64
	)
	vals := make([]pgtype.Text, len(l.Results))
	dest := []any{&ord}
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	dest = append(dest, &matches)
	step := func(ctx context.Context) (int, int, error) {
		k := mix.draw(rng)
		if k == 1 {
			if err := one.run(ctx, pool, &items[rng.IntN(len(items))]); err != nil {
				return 1, 1, err
			}
			return 1, 0, nil
		}
		batch, ps = batch[:0], ps[:0]
		for range k {
			it := &items[rng.IntN(len(items))]
			batch = append(batch, it)
			ps = append(ps, it.prep)
		}
		sql, args, err := l.BatchQuery(ps)
		if err != nil {
			return k, k, err
		}
		rows, err := pool.Query(ctx, sql, args...)
		if err != nil {
			return k, k, fmt.Errorf("coalesced query: %w", err)
		}
		defer rows.Close()
		seen = append(seen[:0], make([]bool, k)...)
		failed := 0
		var first error
		fail := func(err error) {
			failed++
			if first == nil {
				first = err
			}
		}
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				return k, k, fmt.Errorf("coalesced query: %w", err)
			}
			if ord < 0 || int(ord) >= k || seen[ord] {
				return k, k, fmt.Errorf("coalesced query: unexpected request %d in the answer", ord)
			}
			seen[ord] = true
			if err := checkRow(batch[ord], vals); err != nil {
				fail(err)
			}
		}
		if err := rows.Err(); err != nil {
			return k, k, fmt.Errorf("coalesced query: %w", err)
		}
		for i, it := range batch {
			if !seen[i] {
				if err := checkNoRow(it); err != nil {
					fail(err)
				}
			}
		}
		return k, failed, first
	}
	return step, func() {}
}
