package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/testwait"
)

func TestFailover(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name          string
		ctx           context.Context
		err           error
		retry, marked bool
	}{
		{"no row", context.Background(), pgx.ErrNoRows, false, false},
		{"connection refused", context.Background(), &pgconn.ConnectError{}, true, true},
		{"connection lost", context.Background(), fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, true},
		{"admin shutdown", context.Background(), &pgconn.PgError{Code: "57P01"}, true, true},
		{"cannot connect now", context.Background(), &pgconn.PgError{Code: "57P03"}, true, true},
		{"too many connections", context.Background(), &pgconn.PgError{Code: "53300"}, true, true},
		{"conflict with recovery", context.Background(), &pgconn.PgError{Code: "40001"}, true, false},
		{"statement timeout", context.Background(), &pgconn.PgError{Code: "57014"}, false, false},
		{"column not replayed yet", context.Background(), &pgconn.PgError{Code: "42703"}, true, false},
		{"value does not fit", context.Background(), &pgconn.PgError{Code: "22P02"}, false, false},
		{"scan error", context.Background(), pgx.ScanArgError{ColumnIndex: 0, Err: errors.New("cannot scan")}, false, false},
		{"caller gave up", canceled, &pgconn.ConnectError{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := New(Config{Primary: &pgxpool.Pool{}})
			m := &member{name: "r:5432", wake: make(chan struct{}, 1)}
			m.status.Usable = true
			r.members = []*member{m}
			r.publish()
			if got := r.failover(tt.ctx, m, tt.err); got != tt.retry {
				t.Errorf("failover(%v) = %v, want %v", tt.err, got, tt.retry)
			}
			if marked := !m.status.Usable; marked != tt.marked {
				t.Errorf("failover(%v) skipped the replica: %v, want %v", tt.err, marked, tt.marked)
			}
			if tt.marked && r.pick() != nil {
				t.Errorf("a replica marked down is still picked")
			}
		})
	}
}

func TestNotAStandbyIsSkipped(t *testing.T) {
	t.Parallel()
	primary := pgtest.New(t)
	alsoPrimary := pgtest.New(t)
	r := New(Config{Primary: primary, Replicas: []*pgxpool.Pool{alsoPrimary}})
	r.Check(context.Background())
	st := r.Statuses()[0]
	if st.Usable || st.Err == nil {
		t.Fatalf("a server not in recovery as replica: usable %v, err %v; want skipped", st.Usable, st.Err)
	}
	if r.pick() != nil {
		t.Errorf("lookups go to a skipped replica")
	}
	var one int
	if err := r.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("QueryRow with no usable replica = %d, %v; want 1 from the primary", one, err)
	}
}

func TestLagFromWALPositions(t *testing.T) {
	t.Parallel()
	primary := pgtest.NewPrimary(t)
	standby := primary.NewStandby(t, "standby")
	primary.Exec("postgres", `CREATE TABLE t (v int)`)
	primary.WaitReplayed(standby, 30*time.Second)
	const maxLag = 700 * time.Millisecond
	r := New(Config{Primary: primary.Pool("postgres"), Replicas: []*pgxpool.Pool{standby.Pool("postgres")}, MaxLag: maxLag})
	ctx := context.Background()

	// Idle and caught up: no lag, however long ago the last commit was.
	standby.Exec("postgres", `SELECT pg_wal_replay_pause()`)
	time.Sleep(2 * maxLag) // let the last commit age beyond the limit
	caughtUp := time.Now()
	r.Check(ctx)
	if st := r.Statuses()[0]; !st.Usable || st.Lag != 0 {
		t.Fatalf("idle caught-up replica: usable %v, lag %s, err %v; want usable with lag 0", st.Usable, st.Lag, st.Err)
	}

	// Replay paused, a commit on the primary: skipped once the last check
	// that saw it caught up is older than maxLag, not before.
	primary.Exec("postgres", `INSERT INTO t VALUES (1)`)
	testwait.Until(t, "the lagging replica skipped", 5*time.Second, func() bool {
		r.Check(ctx)
		return !r.Statuses()[0].Usable
	})
	if took := time.Since(caughtUp); took < maxLag {
		t.Errorf("replica skipped %s after it was last seen caught up, before it could be %s behind", took, maxLag)
	}
	var n int
	if err := r.QueryRow(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 1 {
		t.Errorf("count with the replica skipped = %d, %v; want 1 from the primary", n, err)
	}
	standby.Exec("postgres", `SELECT pg_wal_replay_resume()`)
	testwait.Until(t, "the caught-up replica used again", 5*time.Second, func() bool {
		r.Check(ctx)
		return r.Statuses()[0].Usable
	})
}
