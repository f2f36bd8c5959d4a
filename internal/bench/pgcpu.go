package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// backendMeter measures the CPU time that the PostgreSQL server, running on
// this machine, spends in the client backends of the bench database: it
// lists them in pg_stat_activity (every client backend of the database but
// the meter's own; not autovacuum, the WAL writer or the checkpointer) and
// reads utime+stime of each from /proc/PID/stat.
//
// A reading counts the CPU time since the first reading after reset: of a
// backend listed then, what it used since; of a backend first listed later
// (it connected in between), everything it used since it started. A backend
// that exits between two readings keeps its last reading: what it used
// after that is not counted.
//
// The bench goes on without it when it cannot read (PostgreSQL on another
// machine, say): fail records why, says so once, and the column stays empty.
type backendMeter struct {
	conn   *pgx.Conn
	out    io.Writer
	failed error

	started bool
	base    map[int]time.Duration // a backend's CPU time when first read, 0 if it started later
	last    map[int]time.Duration // its CPU time at the last reading
	retired time.Duration         // CPU of backends whose pid was taken by a new one
}

// newBackendMeter connects to the bench database for listing its backends;
// out receives the note of a failure.
func newBackendMeter(ctx context.Context, databaseURL string, out io.Writer) (*backendMeter, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse bench database url: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "custinfo-bench-meter"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to list backends: %w", err)
	}
	return &backendMeter{conn: conn, out: out}, nil
}

func (m *backendMeter) close() {
	_ = m.conn.Close(context.Background())
}

// usable reports whether m (which may be nil) still measures.
func (m *backendMeter) usable() bool { return m != nil && m.failed == nil }

// fail stops the measuring for the rest of the run, with a note of why.
func (m *backendMeter) fail(err error) {
	if m.failed != nil {
		return
	}
	m.failed = err
	fmt.Fprintf(m.out, "PostgreSQL CPU per request is not measured from now on: %v\n", err)
}

// reset forgets the backends read so far; the next reading is the new start.
func (m *backendMeter) reset() {
	m.started = false
	m.base, m.last = map[int]time.Duration{}, map[int]time.Duration{}
	m.retired = 0
}

// read returns the CPU time the backends used since the first reading after
// reset (0 at that reading).
func (m *backendMeter) read(ctx context.Context) (time.Duration, error) {
	if m.base == nil {
		m.reset()
	}
	pids, err := m.backends(ctx)
	if err != nil {
		return 0, err
	}
	cpus, err := backendCPU(pids)
	if err != nil {
		return 0, err
	}
	for pid, cpu := range cpus {
		last, seen := m.last[pid]
		switch {
		case !m.started:
			m.base[pid] = cpu
		case !seen:
			m.base[pid] = 0
		case cpu < last:
			// The pid of a backend that exited is a new backend's now.
			m.retired += last - m.base[pid]
			m.base[pid] = 0
		}
		m.last[pid] = cpu
	}
	m.started = true
	total := m.retired
	for pid, cpu := range m.last {
		total += cpu - m.base[pid]
	}
	return total, nil
}

// backends lists the pids of the bench database's client backends but the
// meter's own.
func (m *backendMeter) backends(ctx context.Context) ([]int, error) {
	rows, err := m.conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil {
		return nil, fmt.Errorf("list backends: %w", err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("list backends: %w", err)
	}
	out := make([]int, len(pids))
	for i, p := range pids {
		out[i] = int(p)
	}
	return out, nil
}

// backendCPU reads the CPU time of each PostgreSQL process in pids from
// /proc. A pid without a /proc entry has exited and is left out; a pid of a
// process that is not postgres, or none of several pids found, means the
// database does not run on this machine (or in another pid namespace).
func backendCPU(pids []int) (map[int]time.Duration, error) {
	out := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read stat of backend %d: %w", pid, err)
		}
		if name := statComm(stat); name != "postgres" {
			return nil, fmt.Errorf("backend %d is process %q here, not postgres: is PostgreSQL on another machine or in a container?", pid, name)
		}
		cpu, err := parseStatCPU(stat)
		if err != nil {
			return nil, fmt.Errorf("backend %d: %w", pid, err)
		}
		out[pid] = cpu
	}
	if len(pids) > 1 && len(out) == 0 {
		return nil, fmt.Errorf("none of %d backends is in /proc: is PostgreSQL on another machine or in a container?", len(pids))
	}
	return out, nil
}

// statComm returns the command name (field 2) of the text of /proc/PID/stat.
func statComm(stat []byte) string {
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return ""
	}
	return string(stat[i+1 : j])
}

// cpuSample is a reading of a backendMeter and when it was taken.
type cpuSample struct {
	at  time.Time
	cpu time.Duration
}

// sampler reads a backendMeter every interval in a goroutine of its own,
// for a window known only afterwards (pgbench's, from its log).
type sampler struct {
	quit    chan struct{}
	done    sync.WaitGroup
	samples []cpuSample
	err     error
}

// startSampler resets m and reads it at once and then every interval until
// stop or the end of ctx; m must not be used by anything else meanwhile. A
// reading is never cut short by stop (a query cancelled half way would
// leave the meter's connection unusable).
func startSampler(ctx context.Context, m *backendMeter, interval time.Duration) *sampler {
	s := &sampler{quit: make(chan struct{})}
	m.reset()
	s.done.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			cpu, err := m.read(ctx)
			if err != nil {
				s.err = err
				return
			}
			s.samples = append(s.samples, cpuSample{at: time.Now(), cpu: cpu})
			select {
			case <-ctx.Done():
				s.err = ctx.Err()
				return
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	})
	return s
}

// stop ends the sampling and returns the samples taken, or the error that
// ended it.
func (s *sampler) stop() ([]cpuSample, error) {
	close(s.quit)
	s.done.Wait()
	return s.samples, s.err
}

// cpuBetween returns the CPU time used between from and to, interpolating
// linearly between the samples around each; false when the samples do not
// cover the window.
func cpuBetween(samples []cpuSample, from, to time.Time) (time.Duration, bool) {
	at := func(t time.Time) (time.Duration, bool) {
		for i := 1; i < len(samples); i++ {
			a, b := samples[i-1], samples[i]
			if t.Before(a.at) || t.After(b.at) {
				continue
			}
			span := b.at.Sub(a.at)
			if span <= 0 {
				return b.cpu, true
			}
			f := float64(t.Sub(a.at)) / float64(span)
			return a.cpu + time.Duration(f*float64(b.cpu-a.cpu)), true
		}
		return 0, false
	}
	c0, ok0 := at(from)
	c1, ok1 := at(to)
	if !ok0 || !ok1 || to.Before(from) {
		return 0, false
	}
	return c1 - c0, true
}
