package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// directStep returns a worker's step of the pgx baseline: the lookup's own
// statement with the arguments the lookup bound for the request, straight
// through pgxpool, with the answer checked as for custinfo.
func directStep(pool *pgxpool.Pool, nresults int, items []item, seed uint64, w int) (stepFunc, func()) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	vals := make([]pgtype.Text, nresults)
	var matches int64
	dest := make([]any, 0, nresults+1)
	for i := range vals {
		dest = append(dest, &vals[i])
	}
	dest = append(dest, &matches)
	step := func(ctx context.Context) error {
		it := &items[rng.IntN(len(items))]
		err := pool.QueryRow(ctx, it.sql, it.args...).Scan(dest...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if it.hit {
				return errors.New("no row for a hit")
			}
			return nil
		case err != nil:
			return fmt.Errorf("query: %w", err)
		case !it.hit:
			return errors.New("a row for a miss")
		}
		for _, v := range vals {
			if v.String == it.idText {
				return nil
			}
		}
		return fmt.Errorf("hit answered with the wrong customer %q", vals[0].String)
	}
	return step, func() {}
}
