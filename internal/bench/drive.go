package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// stepFunc sends one request and reports whether its answer was the expected
// one (nil) or not.
type stepFunc func(ctx context.Context) error

// batchStepFunc sends one query that answers n requests and reports n, how
// many of them were not answered as expected, and the first such error.
type batchStepFunc func(ctx context.Context) (n, failed int, err error)

// result is the measurement of one phase.
type result struct {
	Requests int
	Errors   int
	ErrorMsg string // one of the errors, for the report
	Elapsed  time.Duration
	P50      time.Duration
	P95      time.Duration
	P99      time.Duration
	// Server is the server process's CPU and memory; zero for the baselines.
	ServerCPU time.Duration
	ServerRSS int64
	ServerHWM int64
	// PGCPU is the CPU time of the bench database's client backends over
	// the measured window (see backendMeter); PGMeasured tells whether it
	// could be read.
	PGCPU      time.Duration
	PGMeasured bool
}

// rate returns requests per second.
func (r result) rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// cpuPercent returns the server's CPU use in percent of one core.
func (r result) cpuPercent() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return 100 * r.ServerCPU.Seconds() / r.Elapsed.Seconds()
}

// cpuPerRequest returns the server's CPU time per answered request (one
// without an error) in microseconds; 0 when nothing was answered.
func (r result) cpuPerRequest() float64 {
	answered := r.Requests - r.Errors
	if answered <= 0 {
		return 0
	}
	return float64(r.ServerCPU.Microseconds()) / float64(answered)
}

// pgCPUPerRequest returns the database backends' CPU time per answered
// request in microseconds; 0 when nothing was answered.
func (r result) pgCPUPerRequest() float64 {
	answered := r.Requests - r.Errors
	if answered <= 0 {
		return 0
	}
	return float64(r.PGCPU.Microseconds()) / float64(answered)
}

// phase is one load phase: conns workers, each running its own step in a
// loop, for warmup (not measured) then dur.
type phase struct {
	conns  int
	warmup time.Duration
	dur    time.Duration
	// newStep returns worker w's step and a function that releases it;
	// newBatchStep, when set instead, a step that answers several requests.
	newStep      func(w int) (stepFunc, func())
	newBatchStep func(w int) (batchStepFunc, func())
	// windowFunc, when set, is called at the start and the end of the measured window.
	windowFunc func(end bool)
}

// drive runs the phase and returns its measurement. A request counts when it
// starts inside the measured window; a query that answers k requests counts
// k, each with the query's latency.
func drive(ctx context.Context, p phase) result {
	start := time.Now()
	mStart := start.Add(p.warmup)
	mEnd := mStart.Add(p.dur)
	ctx, cancel := context.WithDeadline(ctx, mEnd.Add(30*time.Second))
	defer cancel()

	type workerResult struct {
		lat    []time.Duration
		errs   int
		errMsg string
	}
	results := make([]workerResult, p.conns)
	var wg sync.WaitGroup
	for w := range p.conns {
		step, release := p.step(w)
		wg.Go(func() {
			defer release()
			r := &results[w]
			r.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(mEnd) {
					return
				}
				n, failed, err := step(ctx)
				d := time.Since(t0)
				if t0.Before(mStart) {
					continue
				}
				for range n {
					r.lat = append(r.lat, d)
				}
				r.errs += failed
				if err != nil && r.errMsg == "" {
					r.errMsg = err.Error()
				}
			}
		})
	}
	if p.windowFunc != nil {
		wg.Go(func() {
			for i, at := range []time.Time{mStart, mEnd} {
				t := time.NewTimer(time.Until(at))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				p.windowFunc(i == 1)
			}
		})
	}
	wg.Wait()

	var all []time.Duration
	var res result
	for _, r := range results {
		all = append(all, r.lat...)
		res.Errors += r.errs
		if res.ErrorMsg == "" {
			res.ErrorMsg = r.errMsg
		}
	}
	res.Requests = len(all)
	res.Elapsed = p.dur
	res.P50, res.P95, res.P99 = percentiles(all)
	return res
}

// step returns worker w's step, as a batch step answering one request
// when the phase has plain steps.
func (p phase) step(w int) (batchStepFunc, func()) {
	if p.newBatchStep != nil {
		return p.newBatchStep(w)
	}
	step, release := p.newStep(w)
	return func(ctx context.Context) (int, int, error) {
		if err := step(ctx); err != nil {
			return 1, 1, err
		}
		return 1, 0, nil
	}, release
}

// percentiles returns the 50th, 95th and 99th percentile (nearest rank) of
// lat, which it sorts.
func percentiles(lat []time.Duration) (p50, p95, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(lat)))) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return at(0.50), at(0.95), at(0.99)
}
