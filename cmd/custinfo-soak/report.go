package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Noise allowed between the server's idle state before and after the load.
const (
	goroutineNoise = 5
	rssNoiseBytes  = 64 << 20
)

// report is everything the soak measured.
type report struct {
	cfg         config
	elapsed     time.Duration
	total, warm *tally
	before      usage
	after       usage
	edits       int
	editErrs    int
	problems    []string
	rotations   []rotation
	exitCode    int
	shutdown    time.Duration
	stopErr     error
	answered    int64
	rows        int64
	rowsErr     error
	levels      map[string]int
}

// write prints the report and reports whether every check passed.
func (r report) write(w io.Writer) bool {
	t := r.total
	var n int64
	for k := range numKinds {
		for _, c := range t.statuses[k] {
			n += c
		}
	}
	fmt.Fprintf(w, "\nload: %v, %d workers, %d customers: %d requests (%.0f/s), after %d warm-up requests\n",
		r.elapsed.Round(100*time.Millisecond), r.cfg.workers, r.cfg.rows, n, float64(n)/r.elapsed.Seconds(), r.warm.answered())

	statusSet := map[int]bool{}
	for k := range numKinds {
		for s := range t.statuses[k] {
			statusSet[s] = true
		}
	}
	statuses := slices.Sorted(maps.Keys(statusSet))
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %9s", "kind", "requests")
	for _, s := range statuses {
		if s == 0 {
			fmt.Fprintf(&b, " %9s", "no-answer")
		} else {
			fmt.Fprintf(&b, " %7d", s)
		}
	}
	fmt.Fprintf(&b, " %9s %9s %9s\n", "p50", "p99", "max")
	for k := range numKinds {
		var kn int64
		for _, c := range t.statuses[k] {
			kn += c
		}
		if kn == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-14s %9d", kindNames[k], kn)
		for _, s := range statuses {
			if s == 0 {
				fmt.Fprintf(&b, " %9d", t.statuses[k][s])
			} else {
				fmt.Fprintf(&b, " %7d", t.statuses[k][s])
			}
		}
		p := percentiles(t.latencies[k], 0.50, 0.99, 1)
		fmt.Fprintf(&b, " %9s %9s %9s\n", fmtDur(p[0]), fmtDur(p[1]), fmtDur(p[2]))
	}
	fmt.Fprint(w, b.String())

	var all []time.Duration
	for k := range numKinds {
		all = append(all, t.latencies[k]...)
	}
	p := percentiles(all, 0.50, 0.90, 0.99, 0.999, 1)
	fmt.Fprintf(w, "latency, all answered: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		fmtDur(p[0]), fmtDur(p[1]), fmtDur(p[2]), fmtDur(p[3]), fmtDur(p[4]))
	if t.revoked403 > 0 {
		fmt.Fprintf(w, "403s for requests signed with a key being revoked (expected): %d\n", t.revoked403)
	}

	var acc, ref []time.Duration
	for _, rot := range r.rotations {
		acc = append(acc, rot.accepted)
		ref = append(ref, rot.refused)
	}
	fmt.Fprintf(w, "key rotations: %d; new key accepted after max %s, revoked key refused after max %s\n",
		len(r.rotations), fmtDur(percentiles(acc, 1)[0]), fmtDur(percentiles(ref, 1)[0]))
	fmt.Fprintf(w, "mapping edits: %d applied, %d failed; config reloads during the soak: %.0f ok, %.0f failed\n",
		r.edits, r.editErrs, r.after.reloadsOK-r.before.reloadsOK, r.after.reloadsErr-r.before.reloadsErr)
	fmt.Fprintf(w, "server: RSS %s -> %s; goroutines %.0f -> %.0f (idle, before and after the load)\n",
		fmtMiB(r.before.rssBytes), fmtMiB(r.after.rssBytes), r.before.goroutines, r.after.goroutines)
	fmt.Fprintf(w, "server log lines by level: %s\n", fmtLevels(r.levels))
	fmt.Fprintf(w, "shutdown: SIGTERM -> exit status %d in %s\n", r.exitCode, fmtDur(r.shutdown))
	fmt.Fprintf(w, "access log: %d rows, %d answered lookup requests\n", r.rows, r.answered)

	ok := true
	check := func(pass bool, format string, args ...any) {
		word := "ok  "
		if !pass {
			word = "FAIL"
			ok = false
		}
		fmt.Fprintf(w, "  %s %s\n", word, fmt.Sprintf(format, args...))
	}
	fmt.Fprintln(w, "\nchecks:")
	var fivexx int64
	for k := range numKinds {
		for s, c := range t.statuses[k] {
			if s >= 500 {
				fivexx += c
			}
		}
	}
	check(t.unexpected == 0, "unexpected answers: %d (5xx: %d)", t.unexpected, fivexx)
	for _, e := range t.examples {
		fmt.Fprintf(w, "       e.g. %s\n", e)
	}
	check(len(r.problems) == 0 && len(r.rotations) > 0, "key rotations and mapping edits: %d rotations, %d edits, %d problems", len(r.rotations), r.edits, len(r.problems))
	for _, p := range r.problems {
		fmt.Fprintf(w, "       %s\n", p)
	}
	check(r.after.reloadsErr-r.before.reloadsErr == 0, "no failed config reload")
	check(r.before.goroutines >= 0 && r.after.goroutines <= r.before.goroutines+goroutineNoise,
		"goroutines %.0f -> %.0f (noise allowed: %d)", r.before.goroutines, r.after.goroutines, goroutineNoise)
	check(r.before.rssBytes > 0 && r.after.rssBytes <= 2*r.before.rssBytes+rssNoiseBytes,
		"RSS %s -> %s (allowed: twice the start plus %s)", fmtMiB(r.before.rssBytes), fmtMiB(r.after.rssBytes), fmtMiB(rssNoiseBytes))
	check(r.levels["ERROR"] == 0, "no ERROR line in the server log")
	check(r.stopErr == nil && r.exitCode == 0, "graceful shutdown: exit status %d%s", r.exitCode, errSuffix(r.stopErr))
	check(r.rowsErr == nil && r.rows == r.answered, "access-log rows %d == answered lookup requests %d%s", r.rows, r.answered, errSuffix(r.rowsErr))
	if ok {
		fmt.Fprintln(w, "\nRESULT: PASS")
	} else {
		fmt.Fprintln(w, "\nRESULT: FAIL")
	}
	return ok
}

// percentiles returns the given quantiles (0..1) of d, which it sorts.
func percentiles(d []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(d) == 0 {
		return out
	}
	slices.Sort(d)
	for i, q := range qs {
		idx := int(q*float64(len(d))+0.5) - 1
		out[i] = d[min(max(idx, 0), len(d)-1)]
	}
	return out
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

func fmtMiB(b float64) string {
	if b < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", b/(1<<20))
}

func fmtLevels(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
