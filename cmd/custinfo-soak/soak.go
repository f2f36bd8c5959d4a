package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	custphone "github.com/custinfo/custinfo/internal/phone"
	"github.com/custinfo/custinfo/internal/signature"
)

// soak sets up the database, starts the server, drives the load with the
// editor and the rotator beside it, stops the server and reports.
func soak(ctx context.Context, c config, out io.Writer) error {
	dbURL, err := createDatabase(ctx, c.serverURL, c.database)
	if err != nil {
		return err
	}
	if !c.keep {
		defer func() {
			if err := dropDatabase(context.WithoutCancel(ctx), c.serverURL, c.database); err != nil {
				fmt.Fprintln(out, "warning:", err)
			}
		}()
	}
	firstKey := newSecret()
	start := time.Now()
	if err := runCommand(ctx, c.binary, dbURL, "migrate", "up"); err != nil {
		return err
	}
	if err := runCommand(ctx, c.binary, dbURL, "demo", "--rows", fmt.Sprint(c.rows), "--key", firstKey); err != nil {
		return err
	}
	fmt.Fprintf(out, "soak database %s: migrated, %d demo customers in %v\n", c.database, c.rows, time.Since(start).Round(100*time.Millisecond))

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("connect soak database: %w", err)
	}
	defer pool.Close()
	customers, misses, unassigned, err := sampleCustomers(ctx, pool, 2000)
	if err != nil {
		return err
	}
	if unassigned > 0 {
		fmt.Fprintf(out, "%d demo customers left out of the valid lookups: their numbers are outside the assigned ranges, so only international spellings match them\n", unassigned)
	}
	key0 := &apiKey{secret: []byte(firstKey)}
	if err := pool.QueryRow(ctx, `SELECT id FROM custinfo.api_keys WHERE secret = $1`, firstKey).Scan(&key0.id); err != nil {
		return fmt.Errorf("find the demo key: %w", err)
	}

	srv, err := startServer(ctx, c.binary, dbURL)
	if err != nil {
		return err
	}
	defer srv.kill()
	fmt.Fprintf(out, "server pid %d on %s; log %s\n", srv.cmd.Process.Pid, srv.base, srv.logPath)

	transport := &http.Transport{MaxIdleConns: c.workers * 2, MaxIdleConnsPerHost: c.workers * 2}
	l := &loader{
		base:      srv.base,
		client:    &http.Client{Timeout: 10 * time.Second, Transport: transport},
		customers: customers,
		misses:    misses,
		maxBody:   64 << 10,
	}
	l.cur.Store(key0)

	// Warm up, then take the baseline with no client connection open.
	warm := newTally()
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 200 {
		req := l.next(r)
		warm.add(req.kind, l.send(ctx, req))
	}
	transport.CloseIdleConnections()
	before := settle(ctx, srv, -1)

	// The load, the mapping editor and the key rotator run side by side.
	loadCtx, stopLoad := context.WithTimeout(ctx, c.duration)
	defer stopLoad()
	tallies := make([]*tally, c.workers)
	var wg sync.WaitGroup
	for w := range c.workers {
		tallies[w] = newTally()
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for loadCtx.Err() == nil {
				req := l.next(r)
				o := l.send(context.WithoutCancel(loadCtx), req)
				tallies[w].add(req.kind, o)
			}
		})
	}
	probes := newTally()
	var edits, editErrs int
	var editProblems, rotateProblems []string
	var rotations []rotation
	wg.Go(func() { edits, editErrs, editProblems = editMappings(loadCtx, pool, c.editEvery) })
	wg.Go(func() { rotations, rotateProblems = rotateKeys(loadCtx, pool, l, probes, c.rotateEvery) })
	loadStart := time.Now()
	wg.Wait()
	elapsed := time.Since(loadStart)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	transport.CloseIdleConnections()
	after := settle(ctx, srv, before.goroutines)
	code, shutdown, stopErr := srv.stop(60 * time.Second)

	total := newTally()
	for _, t := range tallies {
		total.merge(t)
	}
	total.merge(probes)
	answered := total.answered() + warm.answered()
	var rows int64
	rowsErr := pool.QueryRow(ctx, `SELECT count(*) FROM custinfo.access_log`).Scan(&rows)

	rep := report{
		cfg: c, elapsed: elapsed, total: total, warm: warm,
		before: before, after: after,
		edits: edits, editErrs: editErrs, problems: append(editProblems, rotateProblems...),
		rotations: rotations, exitCode: code, shutdown: shutdown, stopErr: stopErr,
		answered: answered, rows: rows, rowsErr: rowsErr, levels: logLevels(srv.logPath),
	}
	if !rep.write(out) {
		return errFailed
	}
	return nil
}

// settle waits until the server's goroutine count stops falling (idle
// connections closing), at most a few seconds, and returns its usage then.
// With a target, it stops as soon as the count is at most the target.
func settle(ctx context.Context, srv *server, target float64) usage {
	u := srv.usage(ctx)
	for range 25 {
		if target >= 0 && u.goroutines <= target {
			return u
		}
		time.Sleep(200 * time.Millisecond)
		next := srv.usage(ctx)
		if target < 0 && next.goroutines == u.goroutines {
			return next
		}
		u = next
	}
	return u
}

// createDatabase drops and creates name on the server of serverURL and
// returns its URL.
func createDatabase(ctx context.Context, serverURL, name string) (string, error) {
	if err := dropDatabase(ctx, serverURL, name); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("connect %s: %w", redact(serverURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("parse server url: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func dropDatabase(ctx context.Context, serverURL, name string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact(serverURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the server"
	}
	return u.Redacted()
}

// runCommand runs binary with args against dbURL and returns its output in
// the error when it fails.
func runCommand(ctx context.Context, binary, dbURL string, args ...string) error {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", binary, strings.Join(args, " "), err, out)
	}
	return nil
}

// sampleCustomers returns up to n random demo customers whose numbers the
// server can find in every spelling, as many numbers that belong to nobody,
// and how many customers were left out: their numbers are outside the
// ranges the phone library knows as assigned, so only their international
// spellings are matched, by design.
func sampleCustomers(ctx context.Context, pool *pgxpool.Pool, n int) ([]customer, []string, int, error) {
	rows, err := pool.Query(ctx, `SELECT phone, name, customer_no FROM demo.customers`)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read demo customers: %w", err)
	}
	var all []customer
	var unassigned int
	taken := map[string]bool{}
	for rows.Next() {
		var stored string
		var c customer
		if err := rows.Scan(&stored, &c.name, &c.no); err != nil {
			return nil, nil, 0, fmt.Errorf("read demo customers: %w", err)
		}
		digits := custphone.Digits(stored)
		if len(digits) < 8 {
			continue
		}
		c.digits = digits[len(digits)-8:]
		taken[c.digits] = true
		if sp, err := custphone.Spellings("010"+c.digits, "KR"); err != nil || !slices.Contains(sp, "010"+c.digits) || !slices.Contains(sp, stored) {
			unassigned++
			continue
		}
		all = append(all, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, fmt.Errorf("read demo customers: %w", err)
	}
	if len(all) == 0 {
		return nil, nil, 0, errors.New("no findable demo customers")
	}
	r := mrand.New(mrand.NewPCG(3, 4))
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	all = all[:min(n, len(all))]
	var misses []string
	for len(misses) < n {
		d := fmt.Sprintf("%08d", r.IntN(100_000_000))
		if !taken[d] && !slices.Contains(misses, d) {
			misses = append(misses, d)
		}
	}
	return all, misses, unassigned, nil
}

// mappingEdits are the edits the editor cycles through: each changes the
// configuration (and notifies the server) without changing the customer
// name and id a valid lookup must return.
var mappingEdits = []string{
	`UPDATE custinfo.lookups SET description = 'soak edit ' || now()::text WHERE name = 'customer'`,
	`INSERT INTO custinfo.lookup_results (lookup, field, source_column, position) VALUES ('customer', 'email', 'email', 3) ON CONFLICT DO NOTHING`,
	`UPDATE custinfo.lookup_results SET position = CASE field WHEN 'userName' THEN 2 WHEN 'id' THEN 1 ELSE position END WHERE lookup = 'customer_card'`,
	`UPDATE custinfo.lookup_results SET source_column = CASE source_column WHEN 'tier' THEN 'balance' ELSE 'tier' END WHERE lookup = 'customer_card' AND field = 'tier'`,
	`DELETE FROM custinfo.lookup_results WHERE lookup = 'customer' AND field = 'email'`,
	`UPDATE custinfo.lookup_results SET position = CASE field WHEN 'userName' THEN 1 WHEN 'id' THEN 2 ELSE position END WHERE lookup = 'customer_card'`,
}

// editMappings applies mappingEdits in turn, one every period, until ctx ends.
func editMappings(ctx context.Context, pool *pgxpool.Pool, period time.Duration) (edits, failures int, problems []string) {
	t := time.NewTicker(period)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return edits, failures, problems
		case <-t.C:
		}
		if _, err := pool.Exec(ctx, mappingEdits[i%len(mappingEdits)]); err != nil {
			if ctx.Err() != nil {
				return edits, failures, problems
			}
			failures++
			if len(problems) < 5 {
				problems = append(problems, fmt.Sprintf("mapping edit %d failed: %v", i%len(mappingEdits), err))
			}
			continue
		}
		edits++
	}
}

// rotation is one key rotation: how long the new key took to be accepted
// and the old one to be refused.
type rotation struct {
	accepted, refused time.Duration
}

// rotateKeys rotates the key every period until ctx ends: add a new key,
// wait until the server accepts it, switch the load to it, revoke the old
// one and wait until the server refuses it.
func rotateKeys(ctx context.Context, pool *pgxpool.Pool, l *loader, probes *tally, period time.Duration) ([]rotation, []string) {
	var out []rotation
	var problems []string
	r := mrand.New(mrand.NewPCG(5, 6))
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return out, problems
		case <-t.C:
		}
		old := l.cur.Load()
		next := &apiKey{secret: []byte(newSecret())}
		err := pool.QueryRow(ctx, `INSERT INTO custinfo.api_keys (secret, label, schemes) VALUES ($1, 'soak', '{body,uri_body}') RETURNING id`,
			string(next.secret)).Scan(&next.id)
		if err != nil {
			if ctx.Err() == nil {
				problems = append(problems, fmt.Sprintf("add key: %v", err))
			}
			return out, problems
		}
		var rot rotation
		if rot.accepted, err = probeKey(ctx, l, r, probes, next, http.StatusOK); err != nil {
			if ctx.Err() == nil {
				problems = append(problems, fmt.Sprintf("new key %d: %v", next.id, err))
			}
			return out, problems
		}
		l.cur.Store(next)
		old.revoking.Store(true)
		if _, err := pool.Exec(ctx, `UPDATE custinfo.api_keys SET revoked_at = now() WHERE id = $1`, old.id); err != nil {
			if ctx.Err() == nil {
				problems = append(problems, fmt.Sprintf("revoke key %d: %v", old.id, err))
			}
			return out, problems
		}
		if rot.refused, err = probeKey(ctx, l, r, probes, old, http.StatusForbidden); err != nil {
			if ctx.Err() == nil {
				problems = append(problems, fmt.Sprintf("revoked key %d: %v", old.id, err))
			}
			return out, problems
		}
		out = append(out, rot)
	}
}

// probeKey sends valid lookups signed with key until one answers want,
// within 10 s, and returns how long that took. Any answer other than 200
// and 403 is counted as unexpected.
func probeKey(ctx context.Context, l *loader, r *mrand.Rand, probes *tally, key *apiKey, want int) (time.Duration, error) {
	start := time.Now()
	for {
		req := l.build(r, kindValid)
		req.kind = kindProbe
		req.key = nil // a 403 here is what the probe looks for, not a revocation
		req.want = []int{http.StatusOK, http.StatusForbidden}
		sig := signature.Sign(key.secret, signature.SchemeBody, "", req.body, *req.ts)
		req.auth = &sig
		o := l.send(context.WithoutCancel(ctx), req)
		probes.add(kindProbe, o)
		if o.status == want {
			return time.Since(start), nil
		}
		if time.Since(start) > 10*time.Second {
			return 0, fmt.Errorf("still %d after 10s, want %d", o.status, want)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
