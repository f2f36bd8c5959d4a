package reload_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/pgtest"
	"github.com/custinfo/custinfo/internal/reload"
	"github.com/custinfo/custinfo/internal/testwait"
)

// Behind PgBouncer in transaction mode LISTEN runs but no notification
// arrives: the Holder says so and polls, and a change still takes effect.
func TestListenThroughTransactionPoolerPolls(t *testing.T) {
	t.Parallel()
	primary := pgtest.NewPrimary(t)
	db := primary.NewDatabase(t)
	primary.Exec(db, fixture)
	port := pgtest.PgBouncer(t, primary.HostPort(), "transaction")
	pool := primary.Pool(db)
	listen, err := pgx.ParseConfig(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&default_query_exec_mode=exec", port, db))
	if err != nil {
		t.Fatal(err)
	}
	logs := &pgtest.LogBuffer{}
	h := reload.New(reload.Config{
		Logger:       slog.New(slog.NewTextHandler(logs, nil)),
		Pool:         pool,
		ListenConfig: listen,
		Interval:     time.Hour,
		PollInterval: 200 * time.Millisecond,
		ProbeTimeout: 500 * time.Millisecond,
	})
	loadAndRun(t, h)
	testwait.Until(t, "the warning that config changes are polled", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "config changes are polled")
	})
	loadsBefore := strings.Count(logs.String(), "config loaded")
	primary.Exec(db, `UPDATE custinfo.lookup_results SET field = 'fullName' WHERE field = 'userName'`)
	testwait.Until(t, "the renamed field by polling", 5*time.Second, func() bool {
		names := fieldNames(t, pool, h)
		return len(names) == 1 && names[0] == "fullName"
	})
	// Polls that find nothing new neither swap nor log.
	time.Sleep(1 * time.Second)
	if n := strings.Count(logs.String(), "config loaded") - loadsBefore; n != 1 {
		t.Errorf("%d loads logged after one change while polling, want 1:\n%s", n, logs)
	}
}

// A direct LISTEN connection passes the probe and does not poll.
func TestListenDirectDoesNotPoll(t *testing.T) {
	t.Parallel()
	pool, h := start(t)
	if _, err := pool.Exec(context.Background(), `UPDATE custinfo.lookup_results SET field = 'fullName' WHERE field = 'userName'`); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the renamed field by NOTIFY", 5*time.Second, func() bool {
		names := fieldNames(t, pool, h)
		return len(names) == 1 && names[0] == "fullName"
	})
}
