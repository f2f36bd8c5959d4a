package reload_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/testwait"
)

const fixture = `
CREATE TABLE customers (id int PRIMARY KEY, phone text, name text, tier text);
INSERT INTO customers VALUES (1, '010-1234-5678', '홍길동', 'gold');
INSERT INTO custinfo.lookups (name, source) VALUES ('customer', 'customers');
INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, default_region)
VALUES ('customer', 'callNum', 'phone', 'phone', true, 'KR');
INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('customer', 'userName', 'name', 1);
INSERT INTO custinfo.api_keys (lookup, secret) VALUES ('customer', 'key-one-0123456789');
`

// start loads the fixture, then runs a Holder whose periodic re-read is too
// slow to matter, so only NOTIFY can deliver changes within the test.
func start(t *testing.T) (*pgxpool.Pool, *reload.Holder) {
	t.Helper()
	pool := pgtest.New(t)
	if _, err := pool.Exec(context.Background(), fixture); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	h := reload.New(reload.Config{Pool: pool, Interval: time.Hour, Backoff: 50 * time.Millisecond})
	loadAndRun(t, h)
	return pool, h
}

// loadAndRun loads h and runs it until the test ends; the context it
// returns is cancelled then.
func loadAndRun(t *testing.T, h *reload.Holder) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.Load(ctx); err != nil {
		cancel()
		t.Fatalf("Load: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ctx
}

func fieldNames(t *testing.T, pool *pgxpool.Pool, h *reload.Holder) []string {
	t.Helper()
	l, ok := h.Snapshot().Get("customer")
	if !ok {
		return nil
	}
	res, err := l.Run(context.Background(), pool, map[string]string{"callNum": "01012345678"})
	if err != nil {
		return nil
	}
	var names []string
	for _, f := range res.Fields {
		names = append(names, f.Name)
	}
	return names
}

func TestMappingChangeTakesEffectLive(t *testing.T) {
	t.Parallel()
	pool, h := start(t)
	ctx := context.Background()
	if got := fieldNames(t, pool, h); len(got) != 1 {
		t.Fatalf("fields before = %v, want [userName]", got)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('customer', 'tier', 'tier', 2)`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "new result field served", time.Second, func() bool { return len(fieldNames(t, pool, h)) == 2 })
	if _, err := pool.Exec(ctx, `UPDATE custinfo.lookup_results SET field = 'grade' WHERE field = 'tier'`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "renamed field served", time.Second, func() bool {
		got := fieldNames(t, pool, h)
		return len(got) == 2 && got[1] == "grade"
	})
}

func TestRejectedChangeKeepsServing(t *testing.T) {
	t.Parallel()
	pool, h := start(t)
	ctx := context.Background()
	before := h.Snapshot()
	_, err := pool.Exec(ctx, `UPDATE custinfo.lookup_params SET match = 'fuzzy' WHERE lookup = 'customer'`)
	if err == nil {
		t.Fatal("UPDATE with an invalid match was accepted")
	}
	if got := fieldNames(t, pool, h); len(got) != 1 {
		t.Errorf("after a rejected UPDATE fields = %v, want [userName]", got)
	}
	// A mapping that names a missing column is refused at the statement.
	if _, err := pool.Exec(ctx, `UPDATE custinfo.lookup_results SET source_column = 'nope'`); err == nil {
		t.Fatal("UPDATE naming a missing column was accepted")
	}
	// A column dropped afterwards breaks the mapping: it is served as a broken
	// lookup, while the snapshot itself loads; a load that fails keeps the
	// previous snapshot.
	if _, err := pool.Exec(ctx, `ALTER TABLE customers DROP COLUMN name;
UPDATE custinfo.lookups SET description = 'name dropped'`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "broken lookup reported", time.Second, func() bool {
		l, ok := h.Snapshot().Get("customer")
		return ok && l.Broken()
	})
	l, _ := h.Snapshot().Get("customer")
	_, err = l.Run(ctx, pool, map[string]string{"callNum": "01012345678"})
	var be *lookup.BrokenError
	if !errors.As(err, &be) {
		t.Errorf("Run on broken mapping = %v, want *BrokenError", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	good := h.Snapshot()
	if err := h.Load(cctx); err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
	if h.Snapshot() != good {
		t.Error("a failed Load replaced the snapshot")
	}
	if before == good {
		t.Error("the snapshot never changed")
	}
}

func TestKeyRevocationTakesEffect(t *testing.T) {
	t.Parallel()
	pool, h := start(t)
	ctx := context.Background()
	activeKeys := func() int {
		l, ok := h.Snapshot().Get("customer")
		if !ok {
			return -1
		}
		return len(h.Snapshot().Keys(l, time.Now()))
	}
	if n := activeKeys(); n != 1 {
		t.Fatalf("active keys = %d, want 1", n)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.api_keys (lookup, secret, label) VALUES (NULL, 'global-key-0123456789', 'all')`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "added key active", 3*time.Second, func() bool { return activeKeys() == 2 })
	if _, err := pool.Exec(ctx, `UPDATE custinfo.api_keys SET revoked_at = now()`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "revoked keys inactive", 3*time.Second, func() bool { return activeKeys() == 0 })
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.api_keys (lookup, secret, expires_at) VALUES ('customer', 'short-lived-0123456789', now() + interval '4 seconds')`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "short-lived key active", 3*time.Second, func() bool { return activeKeys() == 1 })
	testwait.Until(t, "expired key inactive without a reload", 8*time.Second, func() bool { return activeKeys() == 0 })
}

func TestListenerReconnects(t *testing.T) {
	t.Parallel()
	pool, h := start(t)
	ctx := context.Background()
	// Kill the listener's backend: its last statement is its LISTEN (or,
	// for a moment, the UNLISTEN of its start-up probe).
	var killed int
	testwait.Until(t, "listener connected", 15*time.Second, func() bool {
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ~ '^(UN)?LISTEN '`).Scan(&killed)
		return err == nil && killed > 0
	})
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ~ '^(UN)?LISTEN '`); err != nil {
		t.Fatal(err)
	}
	// A change made while the listener is away is picked up on reconnect, and
	// later changes arrive by NOTIFY again.
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('customer', 'tier', 'tier', 2)`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "change seen after reconnect", 15*time.Second, func() bool { return len(fieldNames(t, pool, h)) == 2 })
	if _, err := pool.Exec(ctx, `DELETE FROM custinfo.lookup_results WHERE field = 'tier'`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "NOTIFY delivered after reconnect", 10*time.Second, func() bool { return len(fieldNames(t, pool, h)) == 1 })
}

// TestStatusRecorded: every load writes the instance's row of
// custinfo.status: what it loaded, the lookups' problems, the keys with
// their last use; a reload updates it; a failed load records its error
// and keeps what was loaded; Stopped marks it.
func TestStatusRecorded(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := pool.Exec(ctx, fixture); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	var keyID int64
	if err := pool.QueryRow(ctx, `SELECT id FROM custinfo.api_keys`).Scan(&keyID); err != nil {
		t.Fatal(err)
	}
	usedAt := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	h := reload.New(reload.Config{Pool: pool, Interval: time.Hour, Instance: &reload.Instance{
		Name: "test-1", Host: "host-a", PID: 42,
		KeysUsedFunc: func() map[int64]time.Time { return map[int64]time.Time{keyID: usedAt} },
	}})
	if err := h.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	type row struct {
		host      string
		pid       int
		loadedAt  *time.Time
		checkedAt time.Time
		loadError *string
		lookups   map[string]struct {
			State    string
			Problems []string
		}
		keys map[string]struct {
			Lookup   *string
			State    string
			LastUsed *time.Time `json:"last_used"`
		}
		stoppedAt *time.Time
	}
	read := func() row {
		t.Helper()
		var r row
		err := pool.QueryRow(ctx, `SELECT host, pid, loaded_at, checked_at, load_error, lookups, keys, stopped_at
			FROM custinfo.status WHERE instance = 'test-1'`).Scan(&r.host, &r.pid, &r.loadedAt, &r.checkedAt, &r.loadError, &r.lookups, &r.keys, &r.stoppedAt)
		if err != nil {
			t.Fatalf("read custinfo.status: %v", err)
		}
		return r
	}
	first := read()
	if first.host != "host-a" || first.pid != 42 || first.loadedAt == nil || first.loadError != nil || first.stoppedAt != nil {
		t.Errorf("status after the first load = %+v", first)
	}
	if l := first.lookups["customer"]; l.State != "ok" || len(l.Problems) != 0 {
		t.Errorf("lookups = %+v, want customer ok", first.lookups)
	}
	k := first.keys[strconv.FormatInt(keyID, 10)]
	if k.State != "active" || k.Lookup == nil || *k.Lookup != "customer" || k.LastUsed == nil || !k.LastUsed.Equal(usedAt) {
		t.Errorf("keys = %+v, want key %d active for customer, last used %v", first.keys, keyID, usedAt)
	}

	// A reload after a column is dropped records the lookup as broken.
	if _, err := pool.Exec(ctx, `ALTER TABLE customers DROP COLUMN name`); err != nil {
		t.Fatal(err)
	}
	if err := h.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	second := read()
	if l := second.lookups["customer"]; l.State != "broken" || !strings.Contains(strings.Join(l.Problems, ";"), `column "name" does not exist`) {
		t.Errorf("lookups after the column was dropped = %+v, want customer broken naming the column", second.lookups)
	}
	if !second.loadedAt.After(*first.loadedAt) || !second.checkedAt.After(first.checkedAt) {
		t.Errorf("loaded_at %v → %v, checked_at %v → %v: want both later", first.loadedAt, second.loadedAt, first.checkedAt, second.checkedAt)
	}

	// A failed load records its error and keeps what was loaded.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := h.Load(cctx); err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
	third := read()
	if third.loadError == nil || !strings.Contains(*third.loadError, "context canceled") || !third.loadedAt.Equal(*second.loadedAt) || third.lookups["customer"].State != "broken" {
		t.Errorf("status after a failed load = %+v, want the error and the previous load kept", third)
	}
	if err := h.Stopped(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := read()
	if stopped.stoppedAt == nil {
		t.Fatal("stopped_at not set by Stopped")
	}
	// Loads still running as the server stops (Run's, their context
	// cancelled by the same signal) leave the stopped row as it is.
	if err := h.Load(cctx); err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
	if err := h.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if r := read(); r.stoppedAt == nil || !r.stoppedAt.Equal(*stopped.stoppedAt) || !r.checkedAt.Equal(stopped.checkedAt) {
		t.Errorf("status after loads that ended after Stopped = %+v, want it as Stopped left it (%+v)", r, stopped)
	}
}

// TestConfigLoadedOncePerLoad: starting logs "config loaded" once (the
// listener's catch-up load finds nothing new), and a change logs it once more.
func TestConfigLoadedOncePerLoad(t *testing.T) {
	t.Parallel()
	pool := pgtest.New(t)
	if _, err := pool.Exec(context.Background(), fixture); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	var logs pgtest.LogBuffer
	h := reload.New(reload.Config{Pool: pool, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := loadAndRun(t, h)
	testwait.Until(t, "listener connected", 15*time.Second, func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN `+reload.Channel+`'`).Scan(&n)
		return err == nil && n > 0
	})
	before := h.Snapshot()
	if _, err := pool.Exec(ctx, `INSERT INTO custinfo.api_keys (lookup, secret) VALUES ('customer', 'key-two-0123456789')`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the new key loaded", 3*time.Second, func() bool { return h.Snapshot() != before })
	time.Sleep(200 * time.Millisecond) // room for a duplicate line to show up
	if n := strings.Count(logs.String(), "config loaded"); n != 2 {
		t.Errorf(`"config loaded" logged %d times for the start and one change, want 2:\n%s`, n, logs.String())
	}
}
