package lookup

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/phone"
)

// Defaults of SampleOptions.
const (
	DefaultSampleSize    = 2000
	DefaultSampleTimeout = 3 * time.Second
)

// maxExamples bounds the masked examples a DataReport keeps per kind.
const maxExamples = 5

// foreignCandidates are the regions a stored value that is not a number of
// the default region is tried in, to tell a foreign number stored without
// its country code: the countries most calls come from.
var foreignCandidates = []string{
	"KR", "US", "CA", "GB", "JP", "CN", "TW", "HK", "SG", "VN", "PH", "TH", "ID", "MY",
	"IN", "AU", "DE", "FR", "RU", "EG", "MX", "BR",
}

// SampleOptions bound the data checks of SampleData.
type SampleOptions struct {
	// Size is about how many stored values are read per phone param
	// (DefaultSampleSize when 0): exactly at most Size from a view or a
	// small table, about Size (at most 4 × Size) from a table sampled by page.
	Size int
	// Timeout bounds each sample query (statement_timeout; DefaultSampleTimeout when 0).
	Timeout time.Duration
}

// Share is one country's part of the sampled values that read as numbers.
type Share struct {
	Region string
	Count  int
}

// DataReport is what a sample of the stored values of one phone param says:
// which countries they are numbers of, which can never be matched, and which
// look like foreign numbers stored without their country code.
type DataReport struct {
	Field, Column, Region string
	// Method says how the rows were picked: "TABLESAMPLE SYSTEM (p)" (p
	// percent of the pages, at random) or "LIMIT n" (the first n rows).
	Method string
	// Sampled is the number of rows read; Blank of them held NULL or only
	// white space (they match nothing, and need not).
	Sampled, Blank int
	// TimedOut reports that the sample query hit its timeout: the figures
	// cover the rows read until then.
	TimedOut bool
	// Countries counts the values that read as a number, by the number's
	// region, most first.
	Countries []Share
	// Never counts the values no asked number can match, by phone.Problem*;
	// NeverExamples are some of them, masked.
	Never         map[string]int
	NeverExamples []string
	// Foreign counts values that are not valid numbers of Region but are
	// valid national numbers of another country, by that country (a value
	// may count for several); ForeignValues is how many values that is.
	Foreign         map[string]int
	ForeignValues   int
	ForeignExamples []string
}

// SampleData reads a bounded sample of the stored values of each phone
// param of the lookup and reports how they read in the param's
// default_region (see DataReport). A sample query that times out is not an
// error: its report says so and covers the rows read.
func (l *Lookup) SampleData(ctx context.Context, pool *pgxpool.Pool, opt SampleOptions) ([]DataReport, error) {
	if l.Broken() {
		return nil, nil
	}
	if opt.Size <= 0 {
		opt.Size = DefaultSampleSize
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultSampleTimeout
	}
	var out []DataReport
	for _, pi := range l.matched {
		p := &l.params[pi]
		if p.Match != MatchPhone {
			continue
		}
		r, err := l.sampleParam(ctx, pool, p, opt)
		if err != nil {
			return nil, fmt.Errorf("sample param %q: %w", p.Field, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (l *Lookup) sampleParam(ctx context.Context, pool *pgxpool.Pool, p *compiledParam, opt SampleOptions) (DataReport, error) {
	// Without a default_region only values with their own country code
	// read as numbers.
	iso, err := phone.ParseRegion(p.DefaultRegion)
	if err != nil {
		return DataReport{}, err
	}
	rep := DataReport{Field: p.Field, Column: p.SourceColumn, Region: iso, Never: map[string]int{}, Foreign: map[string]int{}}
	if rep.Region == "" {
		rep.Region = "none"
	}

	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ms := strconv.FormatInt(max(opt.Timeout.Milliseconds(), 1), 10)
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = "+ms); err != nil {
		return rep, err
	}
	var (
		kind   string
		tuples float64
		pages  int64
	)
	if err := tx.QueryRow(ctx, `SELECT c.relkind::text, c.reltuples, c.relpages FROM pg_class c WHERE c.oid = to_regclass($1)`, l.source).Scan(&kind, &tuples, &pages); err != nil {
		return rep, fmt.Errorf("read statistics of %s: %w", l.source, err)
	}
	limit := " LIMIT " + strconv.Itoa(opt.Size)
	plain := "SELECT " + p.column + "::text FROM " + l.source
	sql, method := plain+limit, "LIMIT "+strconv.Itoa(opt.Size)
	if (kind == "r" || kind == "m") && tuples > float64(10*opt.Size) && pages > 0 {
		// Whole pages at random, about Size rows' worth and at least 30
		// pages, all of them read: a LIMIT near Size would keep only the
		// first pages drawn, which are the table's first pages. The LIMIT
		// only bounds a table whose statistics are far off.
		pct := min(100, max(100*float64(opt.Size)/tuples, 3000/float64(pages)))
		spec := strconv.FormatFloat(pct, 'g', 3, 64)
		bound := " LIMIT " + strconv.Itoa(4*opt.Size)
		sql = plain + " TABLESAMPLE SYSTEM (" + spec + ")" + bound
		method = "TABLESAMPLE SYSTEM (" + spec + ")"
	}
	rep.Method = method
	if err := sampleRows(ctx, tx, sql, &rep, iso); err != nil {
		return rep, err
	}
	if rep.Sampled == 0 && method != "LIMIT "+strconv.Itoa(opt.Size) && !rep.TimedOut {
		// The pages drawn were empty (a table much smaller than its
		// statistics say): read its first rows instead.
		rep.Method = "LIMIT " + strconv.Itoa(opt.Size) + " (TABLESAMPLE found no rows)"
		if err := sampleRows(ctx, tx, plain+limit, &rep, iso); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// sampleRows runs sql, which selects one text column, and adds what its
// values say to rep. A statement timeout ends the sample without an error.
func sampleRows(ctx context.Context, tx pgx.Tx, sql string, rep *DataReport, iso string) error {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return err
	}
	countries := map[string]int{}
	for rows.Next() {
		var v *string
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		rep.Sampled++
		if v == nil || strings.TrimSpace(*v) == "" {
			rep.Blank++
			continue
		}
		in := phone.Inspect(*v, iso)
		if in.Problem != "" {
			rep.Never[in.Problem]++
			rep.NeverExamples = addExample(rep.NeverExamples, *v)
			continue
		}
		if !in.Valid && !in.International {
			if regions := phone.NationalElsewhere(*v, iso, foreignCandidates); len(regions) > 0 {
				rep.ForeignValues++
				for _, r := range regions {
					rep.Foreign[r]++
				}
				rep.ForeignExamples = addExample(rep.ForeignExamples, *v)
			}
		}
		countries[in.Region]++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57014" { // query_canceled: statement_timeout
			return err
		}
		rep.TimedOut = true
	}
	for _, c := range rep.Countries {
		countries[c.Region] += c.Count
	}
	rep.Countries = rep.Countries[:0]
	for r, n := range countries {
		rep.Countries = append(rep.Countries, Share{Region: r, Count: n})
	}
	sort.Slice(rep.Countries, func(i, j int) bool {
		a, b := rep.Countries[i], rep.Countries[j]
		return a.Count > b.Count || a.Count == b.Count && a.Region < b.Region
	})
	return nil
}

// addExample appends the masked form of v, unless there are enough.
func addExample(examples []string, v string) []string {
	if len(examples) >= maxExamples {
		return examples
	}
	m := phone.Mask(v)
	if m == "" {
		m = "(no digits, " + strconv.Itoa(len([]rune(v))) + " characters)"
	}
	return append(examples, m)
}

// NeverTotal is the number of sampled values no asked number can match.
func (r DataReport) NeverTotal() int {
	n := 0
	for _, c := range r.Never {
		n += c
	}
	return n
}

// Lines renders the report for `lookups check`: a summary line, then
// indented details and warnings.
func (r DataReport) Lines() []string {
	var out []string
	head := fmt.Sprintf("data: param %q (phone on %q, default_region %s): %d values sampled (%s)",
		r.Field, r.Column, r.Region, r.Sampled, r.Method)
	if r.TimedOut {
		head += ", cut short by the time limit"
	}
	out = append(out, head)
	if r.Sampled == 0 {
		return append(out, "  the source holds no rows to check")
	}
	numbers := 0
	for _, c := range r.Countries {
		numbers += c.Count
	}
	if numbers > 0 {
		var parts []string
		other := 0
		for i, c := range r.Countries {
			if i >= 6 {
				other += c.Count
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s", regionName(c.Region), percent(c.Count, numbers)))
		}
		if other > 0 {
			parts = append(parts, "other "+percent(other, numbers))
		}
		out = append(out, "  countries: "+strings.Join(parts, ", "))
	}
	if r.Blank > 0 {
		out = append(out, fmt.Sprintf("  empty: %d (%s) NULL or blank", r.Blank, percent(r.Blank, r.Sampled)))
	}
	if n := r.NeverTotal(); n > 0 {
		var kinds []string
		for _, k := range []string{phone.ProblemNoDigits, phone.ProblemTooShort, phone.ProblemTooLong, phone.ProblemNotNumber} {
			if c := r.Never[k]; c > 0 {
				label := k
				if k == phone.ProblemNotNumber {
					label = "not a number in " + r.Region
				}
				kinds = append(kinds, fmt.Sprintf("%s %d", label, c))
			}
		}
		out = append(out, fmt.Sprintf("  warning: %d of %d values (%s) can never be matched: %s; e.g. %s",
			n, r.Sampled, percent(n, r.Sampled), strings.Join(kinds, ", "), strings.Join(r.NeverExamples, ", ")))
	}
	if r.ForeignValues > 0 {
		type kv struct {
			r string
			n int
		}
		var regions []kv
		for k, v := range r.Foreign {
			regions = append(regions, kv{k, v})
		}
		sort.Slice(regions, func(i, j int) bool {
			return regions[i].n > regions[j].n || regions[i].n == regions[j].n && regions[i].r < regions[j].r
		})
		var parts []string
		for _, x := range regions {
			parts = append(parts, fmt.Sprintf("%s %d", x.r, x.n))
		}
		out = append(out, fmt.Sprintf("  warning: %d of %d values (%s) are not numbers of %s but are national numbers of %s: foreign numbers stored without their country code, read as %s numbers and never matched to their callers; store them with + and the calling code; e.g. %s",
			r.ForeignValues, r.Sampled, percent(r.ForeignValues, r.Sampled), r.Region, strings.Join(parts, ", "), r.Region, strings.Join(r.ForeignExamples, ", ")))
	}
	return out
}

// regionName is the region as the report shows it.
func regionName(r string) string {
	if r == "001" {
		return "international (+800 …)"
	}
	return r
}

// percent formats n/total as a percentage with one decimal.
func percent(n, total int) string {
	if total == 0 {
		return "0%"
	}
	return strconv.FormatFloat(100*float64(n)/float64(total), 'f', 1, 64) + "%"
}
