package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pgbenchSpellings is a SQL expression over the pgbench variable :i that
// yields the same spellings phone.Spellings gives for customer i's number
// (010 + eightDigits(i)) in region KR, in the same order.
const pgbenchSpellings = `(SELECT ARRAY['+8210' || n, '8210' || n, '010' || n,
  '010-' || substr(n, 1, 4) || '-' || substr(n, 5, 4), '+82 10-' || substr(n, 1, 4) || '-' || substr(n, 5, 4),
  '10' || n, '010 ' || substr(n, 1, 4) || ' ' || substr(n, 5, 4), '+82 10 ' || substr(n, 1, 4) || ' ' || substr(n, 5, 4),
  '+82-10-' || substr(n, 1, 4) || '-' || substr(n, 5, 4), '010.' || substr(n, 1, 4) || '.' || substr(n, 5, 4)]
 FROM (SELECT lpad(((:i::bigint * 7919 + 12345678) % 100000000)::text, 8, '0') AS n) d)`

// pgbenchScript returns a pgbench script that runs the lookup's statement
// (whose only parameter, $1, is the array of spellings) for a random
// customer id in 1..maxID: ids past rows are misses.
func pgbenchScript(lookupSQL string, maxID int64) (string, error) {
	if strings.Count(lookupSQL, "$1") != 1 || strings.Contains(lookupSQL, "$2") {
		return "", fmt.Errorf("pgbench baseline: want a statement with one parameter, got %q", lookupSQL)
	}
	sql := strings.Replace(lookupSQL, "$1", pgbenchSpellings, 1)
	sql = strings.Join(strings.Fields(sql), " ")
	return fmt.Sprintf("\\set i random(1, %d)\n%s;\n", maxID, sql), nil
}

// pgbenchSampleInterval is how often the CPU of the database's backends is
// read while pgbench runs; its window is known only from its log afterwards.
const pgbenchSampleInterval = 100 * time.Millisecond

// runPgbench runs pgbench with conns clients for warmup+dur and measures,
// from its per-transaction log, the transactions that ended in the last dur.
// With meter set, the database backends' CPU time over that window is read
// every pgbenchSampleInterval and interpolated at the window's ends.
func runPgbench(ctx context.Context, bin, databaseURL, script, dir string, conns, threads int, warmup, dur time.Duration, meter *backendMeter) (result, error) {
	scriptPath := filepath.Join(dir, "lookup.sql")
	if err := os.WriteFile(scriptPath, []byte(script), 0o644); err != nil {
		return result{}, fmt.Errorf("write pgbench script: %w", err)
	}
	logDir, err := os.MkdirTemp(dir, "pgbench-log")
	if err != nil {
		return result{}, fmt.Errorf("pgbench log dir: %w", err)
	}
	defer os.RemoveAll(logDir)
	// pgbench's time includes connecting its clients, each a new backend:
	// allow for that, then measure from the first transaction's end.
	secs := int(math.Ceil((warmup + dur).Seconds())) + 2 + conns/16
	cmd := exec.CommandContext(ctx, bin, "--no-vacuum", "--protocol=prepared",
		"--client="+strconv.Itoa(conns), "--jobs="+strconv.Itoa(min(threads, conns)),
		"--time="+strconv.Itoa(secs), "--file="+scriptPath,
		"--log", "--log-prefix="+filepath.Join(logDir, "tx"), databaseURL)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	var smp *sampler
	if meter.usable() {
		smp = startSampler(ctx, meter, pgbenchSampleInterval)
	}
	runErr := cmd.Run()
	var samples []cpuSample
	var sampleErr error
	if smp != nil {
		samples, sampleErr = smp.stop()
	}
	res, from, err := readPgbenchLogs(logDir, warmup, dur)
	if err != nil {
		return result{}, err
	}
	if smp != nil && sampleErr == nil {
		res.PGCPU, res.PGMeasured = cpuBetween(samples, from, from.Add(res.Elapsed))
	}
	if runErr != nil {
		res.Errors++
		res.ErrorMsg = fmt.Sprintf("pgbench: %v: %s", runErr, lastLine(out.String()))
	} else if n := failedTransactions(out.String()); n > 0 {
		res.Errors += n
		if res.ErrorMsg == "" {
			res.ErrorMsg = fmt.Sprintf("pgbench reports %d failed transactions", n)
		}
	}
	if sampleErr != nil {
		meter.fail(sampleErr)
	}
	return res, nil
}

// readPgbenchLogs reads pgbench's per-transaction logs ("client tx latency_us
// script epoch_s epoch_us") and keeps the transactions that ended between
// warmup and warmup+dur after the first one ended (or the last one, if
// earlier). It returns the start of that window too; its length is the
// result's Elapsed.
func readPgbenchLogs(dir string, warmup, dur time.Duration) (result, time.Time, error) {
	files, err := filepath.Glob(filepath.Join(dir, "tx*"))
	if err != nil || len(files) == 0 {
		return result{}, time.Time{}, fmt.Errorf("pgbench wrote no transaction log in %s", dir)
	}
	type tx struct {
		end time.Time
		lat time.Duration
		ok  bool
	}
	var txs []tx
	var first, last time.Time
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return result{}, time.Time{}, fmt.Errorf("read pgbench log: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 6 {
				continue
			}
			sec, err1 := strconv.ParseInt(fl[4], 10, 64)
			usec, err2 := strconv.ParseInt(fl[5], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			t := tx{end: time.Unix(sec, usec*1000)}
			if us, err := strconv.ParseInt(fl[2], 10, 64); err == nil {
				t.lat, t.ok = time.Duration(us)*time.Microsecond, true
			}
			if first.IsZero() || t.end.Before(first) {
				first = t.end
			}
			if t.end.After(last) {
				last = t.end
			}
			txs = append(txs, t)
		}
	}
	from, to := first.Add(warmup), first.Add(warmup+dur)
	var res result
	lat := make([]time.Duration, 0, len(txs))
	for _, t := range txs {
		if t.end.Before(from) || !t.end.Before(to) {
			continue
		}
		res.Requests++
		if !t.ok {
			res.Errors++
			res.ErrorMsg = "pgbench logged a failed transaction"
			continue
		}
		lat = append(lat, t.lat)
	}
	// A run cut short by slow connecting is measured over what it covered.
	if last.Before(to) {
		to = last
	}
	res.Elapsed = to.Sub(from)
	if res.Elapsed < dur/2 {
		return result{}, time.Time{}, fmt.Errorf("pgbench ran %s past its warmup, want %s", max(res.Elapsed, 0), dur)
	}
	res.P50, res.P95, res.P99 = percentiles(lat)
	return res, from, nil
}

// failedTransactions returns the count pgbench prints as "number of failed
// transactions: N", or 0.
func failedTransactions(out string) int {
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "number of failed transactions: "); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
