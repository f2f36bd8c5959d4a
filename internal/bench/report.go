package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// column is one column of the table: its heading and its cell for a row.
type column struct {
	head string
	cell func(r Row) string
}

func columns() []column {
	medianOf := func(r Row, f func(result) float64) float64 {
		v := make([]float64, 0, len(r.Runs))
		for _, res := range r.Runs {
			v = append(v, f(res))
		}
		return median(v)
	}
	dur := func(f func(result) time.Duration) func(r Row) string {
		return func(r Row) string {
			return fmt.Sprintf("%.2f", medianOf(r, func(res result) float64 { return ms(f(res)) }))
		}
	}
	server := func(f func(r Row) string) func(r Row) string {
		return func(r Row) string {
			if !r.server {
				return "–"
			}
			return f(r)
		}
	}
	ratio := func(v float64) string {
		if v == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f", v)
	}
	return []column{
		{"conns", func(r Row) string { return fmt.Sprint(r.Conns) }},
		{"target", func(r Row) string { return r.Target }},
		{"req/s", func(r Row) string { return fmt.Sprintf("%.0f", medianOf(r, result.rate)) }},
		{"p50 ms", dur(func(res result) time.Duration { return res.P50 })},
		{"p95 ms", dur(func(res result) time.Duration { return res.P95 })},
		{"p99 ms", dur(func(res result) time.Duration { return res.P99 })},
		{"errors", func(r Row) string {
			n := 0
			for _, res := range r.Runs {
				n += res.Errors
			}
			return fmt.Sprint(n)
		}},
		{"server CPU %", server(func(r Row) string { return fmt.Sprintf("%.0f", medianOf(r, result.cpuPercent)) })},
		{"server µs/req", server(func(r Row) string { return fmt.Sprintf("%.0f", medianOf(r, result.cpuPerRequest)) })},
		{"PostgreSQL µs/req", func(r Row) string {
			var v []float64
			for _, res := range r.Runs {
				if res.PGMeasured {
					v = append(v, res.pgCPUPerRequest())
				}
			}
			if len(v) == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f", median(v))
		}},
		{"RSS MiB", server(func(r Row) string {
			return fmt.Sprintf("%.1f", medianOf(r, func(res result) float64 { return float64(res.ServerRSS) / (1 << 20) }))
		})},
		{"peak RSS MiB", server(func(r Row) string {
			return fmt.Sprintf("%.1f", medianOf(r, func(res result) float64 { return float64(res.ServerHWM) / (1 << 20) }))
		})},
		{"× pgx-direct", server(func(r Row) string { return ratio(r.Ratio) })},
		{"× coalesced pgx", server(func(r Row) string { return ratio(r.RatioCoalesced) })},
		{"× pgbench", server(func(r Row) string { return ratio(r.RatioPgbench) })},
	}
}

// WriteText writes the table for a terminal.
func (rep *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	cols := columns()
	heads := make([]string, len(cols))
	for i, c := range cols {
		heads[i] = c.head
	}
	fmt.Fprintln(tw, strings.Join(heads, "\t")+"\t")
	for i, r := range rep.Rows {
		if i > 0 && r.Conns != rep.Rows[i-1].Conns {
			fmt.Fprintln(tw, strings.Repeat("\t", len(cols)))
		}
		cells := make([]string, len(cols))
		for j, c := range cols {
			cells[j] = c.cell(r)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	return tw.Flush()
}

// Markdown returns the run as a Markdown section: what was run, where, and
// the table.
func (rep *Report) Markdown(command string) string {
	var b bytes.Buffer
	cfg := rep.Config
	fmt.Fprintf(&b, "## Run of %s\n\n", rep.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Command: `%s`\n\n", command)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s memory, Linux %s; load average %s at the start, %s at the end\n",
		rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.MemTotal, rep.Machine.Kernel, rep.LoadStart, rep.LoadEnd)
	fmt.Fprintf(&b, "- Go %s, PostgreSQL %s, on the same machine as the server and the load generator\n",
		strings.TrimPrefix(rep.GoVersion, "go"), rep.PGVersion)
	fmt.Fprintf(&b, "- %d customers, lookup `%s`, %d%% hits; %d distinct requests in 6 spellings; warmup %s and %s measured per phase, %d run(s), medians shown; %s in all\n",
		cfg.Rows, cfg.Lookup, cfg.HitPercent, cfg.WorkloadSize, cfg.Warmup, cfg.Duration, cfg.Runs, rep.Finished.Sub(rep.Started).Round(time.Second))
	fmt.Fprintf(&b, "- custinfo serves with `%s`", strings.Join(append([]string{"--log-level", "warn"}, cfg.ServeArgs...), " "))
	if serverAudited() {
		b.WriteString(" and an audit key (`CUSTINFO_AUDIT_KEY`)")
	}
	for _, v := range cfg.Variants {
		switch {
		case v.Tracing:
			fmt.Fprintf(&b, "; %s has tracing on, every span exported to an OTLP sink on this machine", v.Name)
			if len(v.Args) > 0 {
				fmt.Fprintf(&b, ", and adds `%s`", strings.Join(v.Args, " "))
			}
			if v.Binary != "" {
				fmt.Fprintf(&b, ", and runs `%s`", v.Binary)
			}
		case len(v.Args) == 0 && v.Binary == "":
			fmt.Fprintf(&b, "; %s is the same server again", v.Name)
		case len(v.Args) == 0:
			fmt.Fprintf(&b, "; %s runs `%s`", v.Name, v.Binary)
		case v.Binary == "":
			fmt.Fprintf(&b, "; %s adds `%s`", v.Name, strings.Join(v.Args, " "))
		default:
			fmt.Fprintf(&b, "; %s adds `%s` and runs `%s`", v.Name, strings.Join(v.Args, " "), v.Binary)
		}
	}
	pool := directPool(cfg.DirectPoolConns, rep.PoolSize)
	fmt.Fprintf(&b, "\n- %s: one goroutine per connection sends the lookup's statement, one request at a time, with the arguments the lookup binds, through a pgxpool of %s\n", TargetDirect, pool)
	fmt.Fprintf(&b, "- %s: the server's coalesced statement (below) through the same pool, in queries of as many requests as custinfo's own in the same run at that connection count (a request alone with the lookup's statement as often as custinfo ran one alone, else a batch of custinfo's mean size), sent by as many goroutines as keep that many requests in flight; each answer checked\n", TargetCoalesced)
	fmt.Fprintf(&b, "- pgbench (N clients): the lookup's statement, prepared, one connection per client, the same spellings built in SQL from a random id; one row with a client per connection, one with %s, the size of custinfo serve's database pool\n", clients(rep.PoolSize))
	fmt.Fprintf(&b, "- Like for like: `× coalesced pgx` compares custinfo with the same statements in the same batches through the same pool, so what is left is custinfo's own work (HTTP, signatures, phone numbers, the access log, the coalescer's waiting); `× pgx-direct`, the headline, compares it with what a user would otherwise write, one statement per request, which custinfo's batches can beat; `× pgbench` is against %s, the database's limit with as many backends as custinfo's pool (the row with a client per connection is its limit with that many backends)\n", pgbenchTarget(rep.PoolSize))
	b.WriteString("- `server µs/req`: custinfo's CPU time (`/proc/PID/stat`) over the measured window ÷ the requests answered without error; `PostgreSQL µs/req`: the same for the CPU time of the bench database's client backends (listed in `pg_stat_activity`, read in `/proc` at the window's start and end; for pgbench, whose window comes from its log, read every 100 ms and interpolated)\n")
	fmt.Fprintf(&b, "- The lookup's statement:\n\n```sql\n%s\n```\n\n", rep.SQL)
	if rep.BatchSQL != "" {
		fmt.Fprintf(&b, "- Its coalesced form (`$1` the requests' values, `$2` the request each belongs to):\n\n```sql\n%s\n```\n\n", rep.BatchSQL)
	}

	cols := columns()
	for _, c := range cols {
		fmt.Fprintf(&b, "| %s ", c.head)
	}
	b.WriteString("|\n")
	for i := range cols {
		if i < 2 {
			b.WriteString("|---")
		} else {
			b.WriteString("|--:")
		}
	}
	b.WriteString("|\n")
	for _, r := range rep.Rows {
		for _, c := range cols {
			fmt.Fprintf(&b, "| %s ", c.cell(r))
		}
		b.WriteString("|\n")
	}
	if len(rep.Mixes) > 0 {
		b.WriteString("\ncustinfo's batches, as the coalesced pgx baseline repeated them:\n\n")
		for _, m := range rep.Mixes {
			fmt.Fprintf(&b, "- %d conns, run %d: %s; %d goroutine(s)\n", m.Conns, m.Run+1, m.Mix, m.Workers)
		}
	}
	var notes []string
	for _, r := range rep.Rows {
		for _, res := range r.Runs {
			if res.ErrorMsg != "" {
				notes = append(notes, fmt.Sprintf("- %d conns, %s: %s", r.Conns, r.Target, res.ErrorMsg))
				break
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nFirst error of each target that had one:\n\n" + strings.Join(slices.Compact(notes), "\n") + "\n")
	}
	return b.String()
}

func directPool(n, serve int) string {
	switch {
	case n > 0:
		return fmt.Sprintf("%d connections", n)
	case n < 0:
		return "one connection per goroutine"
	}
	return fmt.Sprintf("%d connections, custinfo serve's pool (pgx's default unless `--pool-max-conns` is given)", serve)
}

// Markers delimit the generated section of the benchmarks document; what is
// outside them is kept.
const (
	markBegin = "<!-- custinfo-bench:begin (generated by custinfo-bench; edits inside are overwritten) -->"
	markEnd   = "<!-- custinfo-bench:end -->"
)

// WriteMarkdown puts section between the markers of the document at path,
// creating the document or the markers when missing.
func WriteMarkdown(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	block := markBegin + "\n" + section + markEnd + "\n"
	doc := string(old)
	i, j := strings.Index(doc, markBegin), strings.Index(doc, markEnd)
	switch {
	case i >= 0 && j > i:
		doc = doc[:i] + block + strings.TrimPrefix(doc[j+len(markEnd):], "\n")
	case doc == "":
		doc = "# Benchmarks\n\n" + block
	default:
		doc = strings.TrimRight(doc, "\n") + "\n\n" + block
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
