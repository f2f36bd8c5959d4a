package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sampleArgs binds a value of the right shape for param pi alone, to plan the
// query without a real request.
func (l *Lookup) sampleArgs(pi int) (Prepared, error) {
	p := l.params[pi]
	values := map[string]string{}
	switch {
	case p.Match == MatchPhone:
		values[p.Field] = "+82 10-1234-5678"
	case strings.Contains(p.typeName, "int") || p.typeName == "numeric" || p.typeName == "double precision" || p.typeName == "real":
		values[p.Field] = "1"
	case p.typeName == "uuid":
		values[p.Field] = "00000000-0000-0000-0000-000000000000"
	case strings.HasPrefix(p.typeName, "timestamp") || p.typeName == "date":
		values[p.Field] = "2000-01-01"
	case p.typeName == "boolean":
		values[p.Field] = "true"
	default:
		values[p.Field] = "x"
	}
	var mask uint32
	for i, m := range l.matched {
		if m == pi {
			mask = 1 << i
		}
	}
	// Only the match itself: no ORDER BY that could make reading a whole
	// index in order look attractive.
	probe := "SELECT 1 FROM " + l.source + l.where(mask)
	args := []any{values[p.Field]}
	if p.Match == MatchPhone {
		keys, err := l.phoneKeys(&p, values[p.Field], map[string]string{p.RegionField: "KR"})
		if err != nil {
			return Prepared{}, err
		}
		args = []any{keys}
	}
	return Prepared{SQL: probe, Args: args}, nil
}

// IndexWarnings plans the query once per matched param, with sequential scans
// discouraged, and warns for each param whose plan still scans a whole
// relation: no index serves that match.
func (l *Lookup) IndexWarnings(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	if l.Broken() {
		return nil, nil
	}
	var out []string
	for _, pi := range l.matched {
		p := l.params[pi]
		if p.Match == MatchPhone {
			continue // PhoneKeyIndexLines: the index is on custinfo.phone_key(column)
		}
		prep, err := l.sampleArgs(pi)
		if err != nil {
			return nil, fmt.Errorf("plan param %q: %w", p.Field, err)
		}
		scans, err := seqScans(ctx, pool, prep)
		if err != nil {
			return nil, fmt.Errorf("plan param %q: %w", p.Field, err)
		}
		if len(scans) == 0 {
			continue
		}
		hint := fmt.Sprintf("CREATE INDEX ON %s (%s)", l.source, p.column)
		if p.Match == MatchCI && !p.citext {
			hint = fmt.Sprintf("CREATE INDEX ON %s (lower(%s))", l.source, p.column)
		}
		out = append(out, fmt.Sprintf("param %q (%s on %s): no index serves this match; the query scans %s in full. For a table: %s",
			p.Field, p.Match, p.column, strings.Join(scans, ", "), hint))
	}
	return out, nil
}

// seqScans returns the relations a plan of prep reads in full even when the
// planner is told to avoid sequential scans.
func seqScans(ctx context.Context, pool *pgxpool.Pool, prep Prepared) ([]string, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		return nil, err
	}
	var planJSON []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+prep.SQL, prep.Args...).Scan(&planJSON); err != nil {
		return nil, err
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(planJSON, &plans); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	var scans []string
	var walk func(n planNode)
	walk = func(n planNode) {
		// A sequential scan, or an index scan with no condition (the whole
		// index read for its order, or as a bitmap when sequential scans
		// are discouraged), reads every row.
		full := n.NodeType == "Seq Scan" ||
			(n.NodeType == "Index Scan" || n.NodeType == "Index Only Scan" || n.NodeType == "Bitmap Index Scan") && n.IndexCond == ""
		if full {
			name := n.RelationName
			if name == "" {
				name = n.IndexName // a Bitmap Index Scan names only its index
			}
			scans = append(scans, name)
		}
		for _, c := range n.Plans {
			walk(c)
		}
	}
	for _, p := range plans {
		walk(p.Plan)
	}
	return scans, nil
}

type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	IndexCond    string     `json:"Index Cond"`
	Plans        []planNode `json:"Plans"`
}

// Explain returns the text plan of a bound lookup; with analyze it runs the
// query (EXPLAIN ANALYZE) inside a transaction that is rolled back.
func Explain(ctx context.Context, pool *pgxpool.Pool, prep Prepared, analyze bool) (string, error) {
	stmt := "EXPLAIN "
	if analyze {
		stmt = "EXPLAIN (ANALYZE, BUFFERS) "
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, stmt+prep.SQL, prep.Args...)
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}
