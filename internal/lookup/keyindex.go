package lookup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// maxIdentLen is PostgreSQL's longest identifier, in bytes.
const maxIdentLen = 63

// PhoneKeyIndexLines says, for each phone param, whether an index on
// custinfo.phone_key(column) serves its match, and when none does, that the
// lookup reads the whole source and the exact CREATE INDEX CONCURRENTLY to
// run. A database without custinfo.phone_key (migrations not applied) gives
// no lines.
func (l *Lookup) PhoneKeyIndexLines(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	if l.Broken() {
		return nil, nil
	}
	var have bool
	if err := pool.QueryRow(ctx, `SELECT to_regprocedure('custinfo.phone_key(text)') IS NOT NULL`).Scan(&have); err != nil {
		return nil, fmt.Errorf("look for custinfo.phone_key: %w", err)
	}
	if !have {
		return nil, nil
	}
	var out []string
	for _, pi := range l.matched {
		p := &l.params[pi]
		if p.Match != MatchPhone {
			continue
		}
		expr := "custinfo.phone_key(" + p.column + ")"
		probe := Prepared{
			SQL:  "SELECT 1 FROM " + l.source + " WHERE " + expr + " = ANY($1::text[])",
			Args: []any{[]string{"+821012345678"}},
		}
		scans, err := seqScans(ctx, pool, probe)
		if err != nil {
			return nil, fmt.Errorf("plan param %q on %s: %w", p.Field, expr, err)
		}
		if len(scans) == 0 {
			out = append(out, fmt.Sprintf("index: param %q: an index on %s serves the match", p.Field, expr))
			continue
		}
		stmt, err := l.phoneKeyIndexStatement(ctx, pool, p)
		if err != nil {
			return nil, fmt.Errorf("param %q: %w", p.Field, err)
		}
		out = append(out, fmt.Sprintf("warning: param %q: no index on %s: every lookup reads %s in full. Run: %s",
			p.Field, expr, l.source, stmt))
	}
	return out, nil
}

// phoneKeyIndexStatement returns the CREATE INDEX CONCURRENTLY that serves
// param p: on the source itself, or, for a view, on the table column the
// view's column names, when the catalog tells which.
func (l *Lookup) phoneKeyIndexStatement(ctx context.Context, pool *pgxpool.Pool, p *compiledParam) (string, error) {
	var kind, table, column string
	schema := ""
	err := pool.QueryRow(ctx, `SELECT c.relkind::text, n.nspname, c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, l.source).Scan(&kind, &schema, &table)
	if err != nil {
		return "", fmt.Errorf("read catalog of %s: %w", l.source, err)
	}
	column = p.SourceColumn
	if n := len(column); n >= 2 && column[0] == '"' && column[n-1] == '"' {
		column = column[1 : n-1]
	}
	// The catalog spelling of the column (compile resolved it).
	if err := pool.QueryRow(ctx, `SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass($1)
		AND a.attnum > 0 AND NOT a.attisdropped AND a.attname IN ($2::text, lower($2::text)) ORDER BY a.attname = $2::text DESC LIMIT 1`,
		l.source, column).Scan(&column); err != nil {
		return "", fmt.Errorf("read column %q of %s: %w", p.SourceColumn, l.source, err)
	}
	note := ""
	if kind == "v" {
		// A view has no index of its own: name the table column behind the
		// view's column, as the planner resolves it.
		ts, tt, tc, ok, err := l.columnBehindView(ctx, pool, p.column)
		if err != nil {
			return "", err
		}
		if !ok {
			return fmt.Sprintf("CREATE INDEX CONCURRENTLY ON <the table behind %s> (custinfo.phone_key(<its column behind %s>));",
				l.source, pgx.Identifier{column}.Sanitize()), nil
		}
		schema, table, column = ts, tt, tc
		note = fmt.Sprintf(" (%s is a view; the index belongs on its table)", l.source)
	}
	name := table + "_" + column + "_phone_key_idx"
	for len(name) > maxIdentLen || !utf8.ValidString(name) {
		name = name[:min(len(name), maxIdentLen)-1]
	}
	return fmt.Sprintf("CREATE INDEX CONCURRENTLY %s ON %s (custinfo.phone_key(%s));%s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{schema, table}.Sanitize(), pgx.Identifier{column}.Sanitize(), note), nil
}

// columnBehindView returns the table column that the view column col
// (quoted) reads, from the verbose plan of selecting it; ok is false when
// it is not a plain column of one table.
func (l *Lookup) columnBehindView(ctx context.Context, pool *pgxpool.Pool, col string) (schema, table, column string, ok bool, err error) {
	var planJSON []byte
	if err := pool.QueryRow(ctx, "EXPLAIN (VERBOSE, FORMAT JSON) SELECT "+col+" FROM "+l.source).Scan(&planJSON); err != nil {
		return "", "", "", false, fmt.Errorf("plan the view %s: %w", l.source, err)
	}
	var plans []struct {
		Plan verboseNode `json:"Plan"`
	}
	if err := json.Unmarshal(planJSON, &plans); err != nil || len(plans) != 1 || len(plans[0].Plan.Output) != 1 {
		return "", "", "", false, nil
	}
	alias, column, ok := splitQualified(plans[0].Plan.Output[0])
	if !ok {
		return "", "", "", false, nil
	}
	var find func(n verboseNode) (verboseNode, bool)
	find = func(n verboseNode) (verboseNode, bool) {
		if n.RelationName != "" && n.Alias == alias {
			return n, true
		}
		for _, c := range n.Plans {
			if f, ok := find(c); ok {
				return f, true
			}
		}
		return verboseNode{}, false
	}
	scan, ok := find(plans[0].Plan)
	if !ok {
		return "", "", "", false, nil
	}
	return scan.Schema, scan.RelationName, column, true, nil
}

type verboseNode struct {
	RelationName string        `json:"Relation Name"`
	Schema       string        `json:"Schema"`
	Alias        string        `json:"Alias"`
	Output       []string      `json:"Output"`
	Plans        []verboseNode `json:"Plans"`
}

// splitQualified splits a plan's output expression alias.column (either
// part possibly double-quoted) into its unquoted parts; ok is false for
// anything else (an expression, a constant).
func splitQualified(s string) (alias, column string, ok bool) {
	parts := make([]string, 0, 2)
	for len(s) > 0 {
		var part string
		if s[0] == '"' {
			i := 1
			var b strings.Builder
			for ; i < len(s); i++ {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return "", "", false
			}
			part, s = b.String(), s[i+1:]
		} else {
			j := strings.IndexByte(s, '.')
			if j < 0 {
				j = len(s)
			}
			part, s = s[:j], s[j:]
			for _, r := range part {
				if !(r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
					return "", "", false
				}
			}
		}
		if part == "" {
			return "", "", false
		}
		parts = append(parts, part)
		if len(s) > 0 {
			if s[0] != '.' {
				return "", "", false
			}
			s = s[1:]
		}
	}
	if len(parts) != 2 {
		return "", "", false
	}
	return parts[0], parts[1], true
}
