package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custinfo/custinfo/internal/store"
	"github.com/custinfo/custinfo/internal/testwait"
)

// TestTwoInstances runs two servers on one database, as behind a load
// balancer: both write the access log (every answered request once, the
// keys' last use from whichever server saw it last), both create the
// access log's partitions, and a key revoked over SQL is refused by both
// within 2 s.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := opsSeed(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	const otherKey = "ops-other-key-77f1e2"
	var opsID, otherID int64
	if err := conn.QueryRow(ctx, `SELECT id FROM custinfo.api_keys WHERE secret = $1`, opsKey).Scan(&opsID); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO custinfo.api_keys (secret, label) VALUES ($1, 'other') RETURNING id`, otherKey).Scan(&otherID); err != nil {
		t.Fatal(err)
	}

	f := serveFlags{databaseURL: dbURL, accessLogPartitionDays: 20, metricsAddr: "127.0.0.1:0"}
	servers := []*opsServer{opsStart(t, f), opsStart(t, f)}
	lookup := func(s *opsServer, key string) int {
		status, _ := opsDo(t, opsClient, opsLookup(t, s.base, "customer", key, `{"callNum":"`+opsPhone+`"}`, ""))
		return status
	}

	// Requests spread over both, from several clients at once.
	const perServer = 50
	var wg sync.WaitGroup
	for i, s := range servers {
		for c := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perServer / 5 {
					if got := lookup(s, opsKey); got != 200 {
						t.Errorf("server %d client %d: lookup = %d, want 200", i, c, got)
					}
				}
			}()
		}
	}
	wg.Wait()
	// The last lookup with the ops key is at server 1 (unless one answered
	// while the key was being revoked).
	lastFrom := time.Now()
	if got := lookup(servers[1], opsKey); got != 200 {
		t.Fatalf("last lookup at server 1 = %d, want 200", got)
	}
	lastTo := time.Now()

	// A key revoked over SQL is refused by both within 2 s.
	if _, err := conn.Exec(ctx, `UPDATE custinfo.api_keys SET revoked_at = now() WHERE id = $1`, opsID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	okOpsWant := 2*perServer + 1
	for i, s := range servers {
		testwait.Until(t, fmt.Sprintf("server %d to refuse the revoked key", i), 2*time.Second-time.Since(revoked), func() bool {
			from := time.Now()
			switch lookup(s, opsKey) {
			case 200: // not reloaded yet: this is the key's last use so far
				okOpsWant++
				lastFrom, lastTo = from, time.Now()
			case 403:
				return true
			}
			return false
		})
	}
	t.Logf("both servers refused the revoked key %s after the UPDATE", time.Since(revoked).Round(time.Millisecond))
	// The other key still works at both; its last use is at server 0.
	var otherFrom time.Time
	for _, i := range []int{1, 0} {
		otherFrom = time.Now()
		if got := lookup(servers[i], otherKey); got != 200 {
			t.Errorf("server %d: lookup with the key still active = %d, want 200", i, got)
		}
	}
	otherTo := time.Now()

	// The servers make the access log's partitions up to 20 days ahead in
	// the background, each one once.
	far := "access_log_" + time.Now().UTC().AddDate(0, 0, 20).Format("20060102")
	testwait.Until(t, "partition "+far, 30*time.Second, func() bool {
		parts, err := store.New(conn).AccessLogPartitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if p.Name == far {
				return true
			}
		}
		return false
	})

	for i, s := range servers {
		testwait.Until(t, fmt.Sprintf("server %d to report its partitions made", i), 10*time.Second, func() bool {
			_, scrape := opsGet(t, opsClient, s.metricsBase+"/metrics")
			return strings.Contains(scrape, "\ncustinfo_access_log_partitions_ensured 1\n")
		})
	}

	for i, s := range servers {
		if err := s.stop(); err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		if strings.Contains(s.logs.String(), "access-log partitions not created") {
			t.Errorf("server %d could not create the access log's partitions:\n%s", i, s.logs)
		}
	}

	// Every answered request once: okOpsWant with the ops key, 2 with the
	// other, and the refusals without a key.
	var okOps, okOther, rows, requests int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE key_id = $1 AND code = 'ok'), count(*) FILTER (WHERE key_id = $2 AND code = 'ok'),
		count(*), count(DISTINCT request_id) FROM custinfo.access_log`, opsID, otherID).Scan(&okOps, &okOther, &rows, &requests)
	if err != nil {
		t.Fatal(err)
	}
	if okOps != okOpsWant || okOther != 2 || requests != rows {
		t.Errorf("access log: %d ok with the ops key, %d with the other, %d rows, %d request ids; want %d, 2 and one row per request",
			okOps, okOther, rows, requests, okOpsWant)
	}

	last, err := store.New(conn).KeysLastUsed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := last[opsID]; got.Before(lastFrom.Truncate(time.Microsecond)) || got.After(lastTo) {
		t.Errorf("ops key last used %s, want its last accepted lookup, between %s and %s", got, lastFrom, lastTo)
	}
	if got := last[otherID]; got.Before(otherFrom.Truncate(time.Microsecond)) || got.After(otherTo) {
		t.Errorf("other key last used %s, want its last lookup, at server 0, between %s and %s", got, otherFrom, otherTo)
	}
	out := cliMust(t, "", "keys", "list", "--database-url", dbURL)
	for id, at := range map[int64]time.Time{opsID: last[opsID], otherID: last[otherID]} {
		if !strings.Contains(out, at.UTC().Format(time.RFC3339)) {
			t.Errorf("keys list does not show key %d last used at %s:\n%s", id, at.UTC().Format(time.RFC3339), out)
		}
	}
}
