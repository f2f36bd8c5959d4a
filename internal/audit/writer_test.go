package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/store"
	"github.com/custinfo/custinfo/internal/testwait"
)

const testKey = "audit-test-key-0123456789"

// cmpAddr compares netip.Addr values, whose fields are unexported.
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startWriter runs a Writer over pool until the test ends.
func startWriter(t *testing.T, pool *pgxpool.Pool, cfg audit.Config) *audit.Writer {
	t.Helper()
	cfg.WriteFunc = store.New(pool).WriteAccessLog
	cfg.Hasher = testHasher
	w := audit.NewWriter(cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(context.Background()); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.Close(ctx)
		<-done
	})
	return w
}

func countRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM custinfo.access_log`).Scan(&n); err != nil {
		t.Fatalf("count access_log: %v", err)
	}
	return n
}

// readRows returns every access_log row as an Entry, ordered by request id.
func readRows(t *testing.T, pool *pgxpool.Pool) []audit.Entry {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT at, request_id, lookup, key_id, client_ip, code, status, latency_us,
		       query_masked, query_hash, matches
		FROM custinfo.access_log ORDER BY request_id`)
	if err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	defer rows.Close()
	var out []audit.Entry
	for rows.Next() {
		var (
			e       audit.Entry
			keyID   *int64
			ip      *netip.Addr
			latency int64
			matches *int32
		)
		if err := rows.Scan(&e.At, &e.RequestID, &e.Lookup, &keyID, &ip, &e.Code, &e.Status, &latency,
			&e.QueryMasked, &e.QueryHash, &matches); err != nil {
			t.Fatalf("scan access_log: %v", err)
		}
		if keyID != nil {
			e.KeyID = *keyID
		}
		if ip != nil {
			e.ClientIP = *ip
		}
		e.Latency = time.Duration(latency) * time.Microsecond
		if matches != nil {
			e.Queried, e.Matches = true, int64(*matches)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read access_log: %v", err)
	}
	return out
}

// testHasher is the Hasher of the test Writers.
var testHasher = audit.NewHasher(testKey, "KR")

// mixedEntries returns n entries of varied outcomes as serve queues them,
// with the query value in clear; the rows they should become, masked and
// hashed; and the clear values' digits that must not appear in any row.
func mixedEntries(n int) (in, want []audit.Entry, clearDigits []string) {
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	outcomes := []struct {
		code    string
		status  int
		keyID   int64
		queried bool
		matches int64
	}{
		{"ok", 200, 7, true, 1},
		{"ok", 200, 8, true, 3},
		{"no_data", 404, 7, true, 0},
		{"access_denied", 403, 0, false, 0},
		{"invalid_timestamp", 400, 0, false, 0},
		{"missing_field", 400, 7, false, 0},
		{"database_timeout", 500, 8, false, 0},
	}
	ips := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8::42"), {}}
	for i := range n {
		o := outcomes[i%len(outcomes)]
		national := fmt.Sprintf("10%04d%04d", 1000+i, 5000+i) // a KR mobile without trunk prefix
		clear := ""
		switch i % 4 {
		case 0:
			clear = "0" + national[:2] + "-" + national[2:6] + "-" + national[6:]
		case 1:
			clear = "+82" + national
		case 2:
			clear = "0" + national
		}
		if clear != "" {
			clearDigits = append(clearDigits, national)
		}
		e := audit.Entry{
			At:        base.Add(time.Duration(i) * time.Millisecond),
			RequestID: fmt.Sprintf("req-%04d", i),
			Lookup:    "customer",
			KeyID:     o.keyID,
			ClientIP:  ips[i%len(ips)],
			Code:      o.code,
			Status:    o.status,
			Latency:   time.Duration(100+i) * time.Microsecond,
			Query:     clear,
			Queried:   o.queried,
			Matches:   o.matches,
		}
		in = append(in, e)
		e.QueryMasked, e.QueryHash = testHasher.Query(clear, "")
		e.Query = ""
		want = append(want, e)
	}
	return in, want, clearDigits
}

func TestWriterWritesEveryEntry(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	w := startWriter(t, pool, audit.Config{BatchSize: 16, FlushInterval: 20 * time.Millisecond})

	const n = 70
	entries, want, clearDigits := mixedEntries(n)
	for _, e := range entries {
		if !w.Add(e) {
			t.Fatalf("Add(%s) = false, want true", e.RequestID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	got := readRows(t, pool)
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("access_log rows differ from the entries (-want +got):\n%s", diff)
	}
	if w.Written() != n || w.Dropped() != 0 {
		t.Errorf("Written() = %d, Dropped() = %d, want %d, 0", w.Written(), w.Dropped(), n)
	}
	for _, d := range clearDigits {
		var hits int
		err := pool.QueryRow(context.Background(),
			`SELECT count(*) FROM custinfo.access_log a WHERE strpos(a::text, $1) > 0`, d[2:]).Scan(&hits)
		if err != nil {
			t.Fatalf("search rows: %v", err)
		}
		if hits != 0 {
			t.Errorf("%d rows contain the digits %s of a clear query value, want 0", hits, d[2:])
		}
	}
}

func TestSameNumberSameHashInRows(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	w := startWriter(t, pool, audit.Config{})
	for i, v := range []string{"010-1234-5678", "+82 10 1234 5678", "01099998888"} {
		w.Add(audit.Entry{At: time.Now(), RequestID: fmt.Sprint("r", i), Lookup: "customer", Code: "ok", Status: 200, Query: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var got []string
	rows, err := pool.Query(ctx, `SELECT request_id FROM custinfo.access_log WHERE query_hash = $1 ORDER BY request_id`,
		audit.HashQuery(testKey, "+821012345678", "KR"))
	if err != nil {
		t.Fatalf("search by hash: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("scan: %v", err)
		}
		got = append(got, id)
	}
	if diff := cmp.Diff([]string{"r0", "r1"}, got); diff != "" {
		t.Errorf("rows found by the hash of +821012345678 (-want +got):\n%s", diff)
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Stall the writer: its COPY waits for this lock.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE custinfo.access_log IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatalf("lock: %v", err)
	}

	const capacity = 4
	w := startWriter(t, pool, audit.Config{QueueSize: capacity, FlushInterval: 10 * time.Millisecond})
	entries, _, _ := mixedEntries(capacity + 100)
	for _, e := range entries[:capacity] {
		if !w.Add(e) {
			t.Fatalf("Add(%s) into a queue with room = false, want true", e.RequestID)
		}
	}
	testwait.Until(t, "the writer's COPY to wait for the lock", 10*time.Second, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE relation = 'custinfo.access_log'::regclass AND NOT granted)`).Scan(&waiting)
		return err == nil && waiting
	})

	var accepted atomic.Int64
	added := make(chan struct{})
	go func() {
		defer close(added)
		for _, e := range entries[capacity:] {
			if w.Add(e) {
				accepted.Add(1)
			}
		}
	}()
	select {
	case <-added:
	case <-time.After(10 * time.Second):
		t.Fatalf("Add blocked on a full queue with a stalled writer")
	}
	if got := accepted.Load(); got != 0 {
		t.Errorf("Add into a full queue accepted %d entries, want 0", got)
	}
	if got := w.Dropped(); got != 100 {
		t.Errorf("Dropped() = %d, want 100", got)
	}
	if got := w.QueueDepth(); got != capacity {
		t.Errorf("QueueDepth() = %d, want %d", got, capacity)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	testwait.Until(t, "the queued entries to be written", 10*time.Second, func() bool { return w.Written() == capacity })
	if got := countRows(t, pool); got != capacity {
		t.Errorf("access_log has %d rows, want %d", got, capacity)
	}
}

func TestRejectedBatchIsDropped(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx := context.Background()
	// A constraint of this test's database makes one row unstorable.
	if _, err := pool.Exec(ctx, `ALTER TABLE custinfo.access_log ADD CONSTRAINT no_teapot CHECK (status <> 418)`); err != nil {
		t.Fatalf("add constraint: %v", err)
	}
	w := startWriter(t, pool, audit.Config{FlushInterval: 10 * time.Millisecond})
	entry := func(id string, status int) audit.Entry {
		return audit.Entry{At: time.Now(), RequestID: id, Lookup: "customer", Code: "ok", Status: status}
	}
	w.Add(entry("before", 200))
	testwait.Until(t, "the first row", 10*time.Second, func() bool { return w.Written() == 1 })
	w.Add(entry("teapot", 418))
	testwait.Until(t, "the rejected row to be dropped", 10*time.Second, func() bool { return w.Dropped() == 1 })
	w.Add(entry("after", 200))
	testwait.Until(t, "the row after the rejected one", 10*time.Second, func() bool { return w.Written() == 2 })
	if got := w.FailedBatches(); got != 0 {
		t.Errorf("FailedBatches() = %d, want 0: a rejected batch is not retried", got)
	}
	if got := countRows(t, pool); got != 2 {
		t.Errorf("access_log has %d rows, want 2", got)
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  bool
	}{
		{name: "Run going", run: true},
		{name: "Run never started", run: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.New(t)
			cfg := audit.Config{QueueSize: 500, BatchSize: 100, FlushInterval: time.Hour}
			var w *audit.Writer
			if tt.run {
				w = startWriter(t, pool, cfg)
			} else {
				cfg.WriteFunc = store.New(pool).WriteAccessLog
				cfg.Hasher = testHasher
				w = audit.NewWriter(cfg)
			}
			const n = 250
			entries, _, _ := mixedEntries(n)
			for _, e := range entries {
				w.Add(e)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := w.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := countRows(t, pool); got != n {
				t.Errorf("access_log has %d rows after Close, want %d", got, n)
			}
			if w.Written() != n || w.QueueDepth() != 0 {
				t.Errorf("Written() = %d, QueueDepth() = %d, want %d, 0", w.Written(), w.QueueDepth(), n)
			}
			if w.Add(entries[0]) {
				t.Errorf("Add after Close = true, want false")
			}
			if got := w.Dropped(); got != 1 {
				t.Errorf("Dropped() = %d after one Add past Close, want 1", got)
			}
		})
	}
}

func TestRunFlushesWhenContextEnds(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	w := audit.NewWriter(audit.Config{WriteFunc: store.New(pool).WriteAccessLog, Hasher: testHasher, BatchSize: 100, FlushInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	const n = 250
	entries, _, _ := mixedEntries(n)
	for _, e := range entries {
		w.Add(e)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not return after its context ended")
	}
	if got := countRows(t, pool); got != n {
		t.Errorf("access_log has %d rows after Run returned, want %d", got, n)
	}
}

func TestWriterRetriesThroughOutage(t *testing.T) {
	t.Parallel()
	target := pgtest.URL(t)
	px := newOutageProxy(t, target)
	cfg, err := pxpoolConfig(target, px.addr())
	if err != nil {
		t.Fatal(err)
	}
	viaProxy, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect through proxy: %v", err)
	}
	t.Cleanup(viaProxy.Close)
	direct, err := pgxpool.New(context.Background(), target)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(direct.Close)

	w := startWriter(t, viaProxy, audit.Config{
		FlushInterval: 20 * time.Millisecond,
		WriteTimeout:  2 * time.Second,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
	})
	entries, want, _ := mixedEntries(30)
	for _, e := range entries[:10] {
		w.Add(e)
	}
	// Wait for the writer's acknowledgement, not only the rows: a cut between
	// the commit and its acknowledgement would have the batch written twice.
	testwait.Until(t, "10 rows before the outage", 10*time.Second, func() bool { return w.Written() == 10 })

	px.setDown(true)
	for _, e := range entries[10:] {
		if !w.Add(e) {
			t.Fatalf("Add(%s) during the outage = false, want true", e.RequestID)
		}
	}
	testwait.Until(t, "a failed write during the outage", 10*time.Second, func() bool { return w.FailedBatches() > 0 })
	if got := w.QueueDepth(); got != 20 {
		t.Errorf("QueueDepth() during the outage = %d, want 20", got)
	}
	if got := countRows(t, direct); got != 10 {
		t.Errorf("access_log has %d rows during the outage, want 10", got)
	}

	px.setDown(false)
	testwait.Until(t, "every row after the outage", 20*time.Second, func() bool { return countRows(t, direct) == 30 })
	if diff := cmp.Diff(want, readRows(t, direct), cmpAddr); diff != "" {
		t.Errorf("rows after the outage differ (-want +got):\n%s", diff)
	}
	if w.Written() != 30 || w.Dropped() != 0 {
		t.Errorf("Written() = %d, Dropped() = %d, want 30, 0", w.Written(), w.Dropped())
	}
}

func pxpoolConfig(target, proxyAddr string) (*pgxpool.Config, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", target, err)
	}
	u.Host = proxyAddr
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("parse proxy url: %w", err)
	}
	cfg.ConnConfig.ConnectTimeout = time.Second
	return cfg, nil
}

// outageProxy forwards TCP connections to the database until setDown(true),
// which cuts them and refuses new ones until setDown(false).
type outageProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newOutageProxy(t *testing.T, dbURL string) *outageProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse %q: %v", dbURL, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &outageProxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *outageProxy) addr() string { return p.ln.Addr().String() }

func (p *outageProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *outageProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *outageProxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		return
	}
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		delete(p.conns, server)
		p.mu.Unlock()
	}()
	copied := make(chan error, 2)
	go func() { _, err := io.Copy(server, client); copied <- err }()
	go func() { _, err := io.Copy(client, server); copied <- err }()
	<-copied // one direction ended: end the other
	_ = client.Close()
	_ = server.Close()
	<-copied
}

// TestWriteInDoubt has WriteFunc report every first write as unacknowledged
// (an *audit.UncertainError naming its transaction, as when the connection
// breaks after COMMIT is sent) while the transaction, in a real database,
// commits, aborts, or commits only later; more entries are queued meanwhile.
// With StatusFunc each entry is stored exactly once; without it a committed
// batch is stored twice (at least once).
func TestWriteInDoubt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		outcome    string // what the first write's transaction does: commit, abort, commit-later
		withStatus bool
		wantRows   int
	}{
		{name: "committed", outcome: "commit", withStatus: true, wantRows: 15},
		{name: "aborted", outcome: "abort", withStatus: true, wantRows: 15},
		{name: "committed while the writer asks", outcome: "commit-later", withStatus: true, wantRows: 15},
		{name: "committed, no StatusFunc", outcome: "commit", withStatus: false, wantRows: 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.New(t)
			st := store.New(pool)
			entries, _, _ := mixedEntries(15)
			var (
				writes   atomic.Int32
				inDoubt  = make(chan pgx.Tx, 1) // the first write's transaction, when it commits later
				released = make(chan struct{})
			)
			cfg := audit.Config{
				Hasher:        testHasher,
				BatchSize:     100,
				FlushInterval: 10 * time.Millisecond,
				MinBackoff:    10 * time.Millisecond,
				MaxBackoff:    20 * time.Millisecond,
				WriteFunc: func(ctx context.Context, batch []audit.Entry) error {
					if writes.Add(1) > 1 {
						return st.WriteAccessLog(ctx, batch)
					}
					<-released // entries queued meanwhile join the next batch
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					var xid string
					if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
						return err
					}
					if err := store.New(tx).WriteAccessLog(ctx, batch); err != nil {
						return err
					}
					switch tt.outcome {
					case "commit":
						err = tx.Commit(ctx)
					case "abort":
						err = tx.Rollback(ctx)
					case "commit-later":
						inDoubt <- tx
					}
					if err != nil {
						return err
					}
					return &audit.UncertainError{Receipt: xid, Err: errors.New("connection reset by peer")}
				},
			}
			var asked atomic.Int32
			if tt.withStatus {
				cfg.StatusFunc = func(ctx context.Context, receipt string) (audit.TxStatus, error) {
					asked.Add(1)
					return st.AccessLogWriteStatus(ctx, receipt)
				}
			}
			w := audit.NewWriter(cfg)
			done := make(chan error, 1)
			go func() { done <- w.Run(context.Background()) }()
			for _, e := range entries[:10] {
				w.Add(e)
			}
			testwait.Until(t, "the first write", 10*time.Second, func() bool { return writes.Load() == 1 })
			for _, e := range entries[10:] {
				w.Add(e)
			}
			close(released)
			if tt.outcome == "commit-later" {
				tx := <-inDoubt
				testwait.Until(t, "three questions about the open transaction", 10*time.Second, func() bool { return asked.Load() >= 3 })
				if got := writes.Load(); got != 1 {
					t.Errorf("%d writes while the first one's transaction was open, want 1", got)
				}
				if err := tx.Commit(context.Background()); err != nil {
					t.Fatalf("commit the first write: %v", err)
				}
			}
			closeWriter(t, w, done)

			var rows, distinct int
			if err := pool.QueryRow(context.Background(),
				`SELECT count(*), count(DISTINCT request_id) FROM custinfo.access_log`).Scan(&rows, &distinct); err != nil {
				t.Fatalf("count rows: %v", err)
			}
			if distinct != 15 || rows != tt.wantRows {
				t.Errorf("access_log has %d rows for %d entries, want %d for 15", rows, distinct, tt.wantRows)
			}
			if tt.withStatus && (w.Written() != 15 || w.Dropped() != 0) {
				t.Errorf("Written() = %d, Dropped() = %d, want 15, 0", w.Written(), w.Dropped())
			}
		})
	}
}

// TestWriteInDoubtGivesUp checks that a write whose fate stays unknown (the
// status check keeps failing) is written again after SettleTimeout: a
// duplicate is possible, a lost row is not.
func TestWriteInDoubtGivesUp(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	st := store.New(pool)
	entries, _, _ := mixedEntries(5)
	var writes, asked atomic.Int32
	w := audit.NewWriter(audit.Config{
		Hasher:        testHasher,
		FlushInterval: 10 * time.Millisecond,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
		SettleTimeout: 200 * time.Millisecond,
		WriteFunc: func(ctx context.Context, batch []audit.Entry) error {
			if writes.Add(1) == 1 {
				return &audit.UncertainError{Receipt: "12345", Err: errors.New("connection reset by peer")}
			}
			return st.WriteAccessLog(ctx, batch)
		},
		StatusFunc: func(context.Context, string) (audit.TxStatus, error) {
			asked.Add(1)
			return 0, errors.New("permission denied for function pg_xact_status")
		},
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	for _, e := range entries {
		w.Add(e)
	}
	testwait.Until(t, "every entry written", 10*time.Second, func() bool { return w.Written() == 5 })
	closeWriter(t, w, done)
	if got := countRows(t, pool); got != 5 {
		t.Errorf("access_log has %d rows, want 5", got)
	}
	if asked.Load() < 2 || writes.Load() != 2 {
		t.Errorf("StatusFunc asked %d times, %d writes; want at least 2 questions, then a second write", asked.Load(), writes.Load())
	}
}

// closeWriter closes w and waits for its Run, whose result done carries.
func closeWriter(t *testing.T, w *audit.Writer, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestCloseWithWriteInDoubt checks that Close, ending while a write is in
// doubt, says that those entries may be stored.
func TestCloseWithWriteInDoubt(t *testing.T) {
	t.Parallel()
	entries, _, _ := mixedEntries(4)
	var writes atomic.Int32
	w := audit.NewWriter(audit.Config{
		Hasher:        testHasher,
		FlushInterval: 10 * time.Millisecond,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    20 * time.Millisecond,
		WriteFunc: func(context.Context, []audit.Entry) error {
			writes.Add(1)
			return &audit.UncertainError{Receipt: "4242", Err: errors.New("connection reset by peer")}
		},
		StatusFunc: func(context.Context, string) (audit.TxStatus, error) { return audit.TxInProgress, nil },
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	for _, e := range entries {
		w.Add(e)
	}
	testwait.Until(t, "the write in doubt", 10*time.Second, func() bool { return writes.Load() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "4 entries not written (4 of them by transaction 4242, which may have committed)") {
		t.Errorf("Close = %v, want it to name the 4 entries of transaction 4242", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := writes.Load(); got != 1 {
		t.Errorf("%d writes, want 1: a write in doubt is not repeated while its transaction runs", got)
	}
	if w.Dropped() != 4 {
		t.Errorf("Dropped() = %d, want 4", w.Dropped())
	}
}
