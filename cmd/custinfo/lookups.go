package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/httpapi"
	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/reload"
)

func runLookups(ctx context.Context, args []string, e *env) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, "usage: custinfo lookups list|check [NAME]|try NAME field=value ...|suggest SOURCE")
		return exitError(2)
	}
	switch args[0] {
	case "list":
		return runLookupsList(ctx, args[1:], e)
	case "check":
		return runLookupsCheck(ctx, args[1:], e)
	case "try":
		return runLookupsTry(ctx, args[1:], e)
	case "suggest":
		return runLookupsSuggest(ctx, args[1:], e)
	default:
		return fmt.Errorf("lookups: unknown action %q (want list, check, try or suggest)", args[0])
	}
}

// loadSnapshot connects and compiles the configuration as the server would.
// The caller closes the returned pool, which also serves its later queries.
func loadSnapshot(ctx context.Context, dbURL string) (*lookup.Snapshot, *pgxpool.Pool, error) {
	pool, err := connect(ctx, dbURL, 4)
	if err != nil {
		return nil, nil, err
	}
	h := reload.New(reload.Config{Pool: pool})
	if err := h.Load(ctx); err != nil {
		pool.Close()
		return nil, nil, err
	}
	return h.Snapshot(), pool, nil
}

func lookupState(l *lookup.Lookup) string {
	switch {
	case l.Broken():
		return "broken"
	case !l.Enabled:
		return "disabled"
	default:
		return "ok"
	}
}

func runLookupsList(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "lookups list", "[flags]")
	dbURL := databaseFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	snap, pool, err := loadSnapshot(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tSOURCE\tPARAMS\tRESULTS\tACTIVE KEYS\tDESCRIPTION")
	for _, name := range snap.Names() {
		l, _ := snap.Get(name)
		var params, results []string
		for _, p := range l.Params {
			s := p.Field + ":" + string(p.Match)
			if p.Required {
				s += "*"
			}
			params = append(params, s)
		}
		for _, r := range l.Results {
			results = append(results, r.Field)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, lookupState(l), l.Source,
			strings.Join(params, ","), strings.Join(results, ","), len(snap.Keys(l, now)), l.Description)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "(* required)")
	return nil
}

func runLookupsCheck(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "lookups check", "[NAME] [flags]\n\nChecks every lookup (or NAME) against the database: exits 1 when one is broken.\nFor phone matches it also reads a sample of the stored values and says which can\nnever be matched, and whether the custinfo.phone_key index serves the match.")
	dbURL := databaseFlag(fs, e)
	sample := fs.Int("sample", lookup.DefaultSampleSize, "stored values read per phone match to check the data (0: no data check)")
	sampleTimeout := fs.Duration("sample-timeout", lookup.DefaultSampleTimeout, "time limit of each sample query")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	snap, pool, err := loadSnapshot(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	names := snap.Names()
	if fs.NArg() > 0 {
		names = fs.Args()
	}
	now := time.Now()
	broken := 0
	for _, name := range names {
		l, ok := snap.Get(name)
		if !ok {
			fmt.Fprintf(e.stdout, "lookup %s: does not exist\n", name)
			broken++
			continue
		}
		fmt.Fprintf(e.stdout, "lookup %s: %s\n", name, lookupState(l))
		fmt.Fprintf(e.stdout, "  source: %s\n", l.Source)
		if l.Broken() {
			broken++
			for _, p := range l.Problems {
				fmt.Fprintf(e.stdout, "  problem: %s\n", p)
			}
			continue
		}
		fmt.Fprintf(e.stdout, "  sql: %s\n", l.SQL())
		if n := len(snap.Keys(l, now)); n == 0 {
			fmt.Fprintf(e.stdout, "  warning: no active key: every request is denied (custinfo keys add --lookup %s)\n", name)
		}
		warnings, err := l.IndexWarnings(ctx, pool)
		if err != nil {
			return fmt.Errorf("lookup %s: %w", name, err)
		}
		for _, w := range warnings {
			fmt.Fprintf(e.stdout, "  warning: %s\n", w)
		}
		idx, err := l.PhoneKeyIndexLines(ctx, pool)
		if err != nil {
			return fmt.Errorf("lookup %s: %w", name, err)
		}
		for _, line := range idx {
			fmt.Fprintf(e.stdout, "  %s\n", line)
		}
		if *sample > 0 {
			reports, err := l.SampleData(ctx, pool, lookup.SampleOptions{Size: *sample, Timeout: *sampleTimeout})
			if err != nil {
				return fmt.Errorf("lookup %s: %w", name, err)
			}
			for _, r := range reports {
				for _, line := range r.Lines() {
					fmt.Fprintf(e.stdout, "  %s\n", line)
				}
			}
		}
	}
	if broken > 0 {
		fmt.Fprintf(e.stdout, "%d of %d lookups broken\n", broken, len(names))
		return exitError(1)
	}
	fmt.Fprintf(e.stdout, "%d lookups ok\n", len(names))
	return nil
}

func runLookupsTry(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "lookups try", "NAME field=value ... [flags]\n\nRuns the lookup as the server would, without a signature, and shows the SQL, plan, time and answer.\nExits 0 when a row matched, 1 when none did, 2 when the lookup is broken or unknown, the input is bad or the query failed.")
	dbURL := databaseFlag(fs, e)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return exitError(2)
	}
	values := map[string]string{}
	for _, kv := range fs.Args()[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			fmt.Fprintf(e.stderr, "custinfo: lookups try: %q is not field=value\n", kv)
			return exitError(2)
		}
		values[k] = v
	}
	snap, pool, err := loadSnapshot(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	name := fs.Arg(0)
	l, ok := snap.Get(name)
	if !ok {
		fmt.Fprintf(e.stderr, "custinfo: lookups try: no lookup named %q (see custinfo lookups list)\n", name)
		return exitError(2)
	}

	prep, err := l.Bind(values)
	if err != nil {
		status, body := httpapi.Envelope(err)
		fmt.Fprintf(e.stdout, "%d %s", status, body)
		return exitError(2)
	}
	fmt.Fprintf(e.stdout, "sql: %s\n", prep.SQL)
	for i, a := range prep.Args {
		fmt.Fprintf(e.stdout, "  $%d = %#v\n", i+1, a)
	}
	start := time.Now()
	res, err := l.Exec(ctx, pool, prep)
	took := time.Since(start)
	plan, perr := lookup.Explain(ctx, pool, prep, true)
	if perr == nil {
		fmt.Fprintf(e.stdout, "plan:\n  %s\n", strings.ReplaceAll(plan, "\n", "\n  "))
	}
	fmt.Fprintf(e.stdout, "time: %s\n", took.Round(time.Microsecond))
	if err != nil {
		status, body := httpapi.Envelope(err)
		fmt.Fprintf(e.stdout, "%d %s", status, body)
		if errors.Is(err, lookup.ErrNoMatch) {
			return exitError(1)
		}
		return exitError(2)
	}
	fmt.Fprintf(e.stdout, "matches: %d\n200 %s", res.Matches, httpapi.DataBody(res.Fields))
	return nil
}

func runLookupsSuggest(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet(e, "lookups suggest", "SOURCE [flags]\n\nReads the catalog and a sample of SOURCE (a table or view), guesses its phone, name and id columns,\nand prints the SQL of a lookup and the index it needs. Review it, then: custinfo lookups suggest SOURCE | psql \"$DATABASE_URL\"")
	dbURL := databaseFlag(fs, e)
	name := fs.String("name", "customer", "the lookup's name: the helpdesk calls /v1/lookups/NAME")
	region := fs.String("region", "KR", "default_region: the country of numbers stored without a country code")
	sample := fs.Int("sample", 200, "rows to read for the guess")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitError(2)
	}
	pool, err := connect(ctx, *dbURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, err := lookup.Suggest(ctx, pool, fs.Arg(0), lookup.SuggestOptions{Name: *name, DefaultRegion: *region, SampleSize: *sample})
	if err != nil {
		return fmt.Errorf("lookups suggest: %w", err)
	}
	fmt.Fprint(e.stdout, s.SQL)
	return nil
}
