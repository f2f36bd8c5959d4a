package lookup

import (
	"context"
	"fmt"
	"time"
)

// RunTogether answers every request of values with one coalesced query, as
// a Coalescer does for requests that waited together; the requests must bind
// to the same coalesced statement of l.
func (c *Coalescer) RunTogether(ctx context.Context, l *Lookup, values []map[string]string) ([]Result, []error, error) {
	batch := make([]*waiter, len(values))
	var q *batchQueue
	for i, v := range values {
		p, err := l.Bind(v)
		if err != nil {
			return nil, nil, fmt.Errorf("bind %v: %w", v, err)
		}
		qi := l.batchQueue(p.mask)
		if qi == nil || q != nil && qi != q {
			return nil, nil, fmt.Errorf("request %v does not share the first one's coalesced statement", v)
		}
		q = qi
		batch[i] = &waiter{p: p, ready: make(chan struct{})}
	}
	bctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	c.answer(bctx, l, q, &run{start: time.Now(), batch: batch, cancel: cancel})
	res := make([]Result, len(batch))
	errs := make([]error, len(batch))
	for i, w := range batch {
		if w.retry {
			res[i], errs[i] = l.Exec(ctx, c.cfg.DB, w.p)
			continue
		}
		res[i], errs[i] = w.res, w.err
	}
	return res, errs, nil
}

// Waiting returns the number of requests waiting for the coalesced
// statement that values bind to.
func (l *Lookup) Waiting(values map[string]string) int {
	p, err := l.Bind(values)
	if err != nil {
		return -1
	}
	q := l.batchQueue(p.mask)
	if q == nil {
		return -1
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// BatchStatement returns the coalesced statement that values bind to.
func (l *Lookup) BatchStatement(values map[string]string) (string, error) {
	p, err := l.Bind(values)
	if err != nil {
		return "", err
	}
	q := l.batchQueue(p.mask)
	if q == nil {
		return "", fmt.Errorf("not coalesced")
	}
	return q.sql, nil
}
