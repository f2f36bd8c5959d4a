package lookup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SuggestOptions are the choices Suggest leaves to the caller.
type SuggestOptions struct {
	Name          string // the lookup's name (default "customer")
	DefaultRegion string // default_region of the phone param (default "KR")
	SampleSize    int    // rows read to guess the columns (default 200)
	Timeout       time.Duration
}

// Suggestion is a lookup proposed for a source: the columns guessed and the
// SQL that defines it, for the admin to review and run with psql.
type Suggestion struct {
	Phone, Name, ID string // the chosen columns; Name or ID may be ""
	SQL             string
}

var (
	phoneColumn = regexp.MustCompile(`(?i)phone|mobile|tel|cell|^hp$|_hp$|contact|callnum|msisdn|휴대|전화|연락처`)
	nameColumn  = regexp.MustCompile(`(?i)name|^nm$|이름|성명|고객명`)
	idColumn    = regexp.MustCompile(`(?i)(customer|cust|member|client|user|account)[ _]?(no|id|code|number)|^code$|_no$|^no$|번호`)
	notAName    = regexp.MustCompile(`(?i)mail|addr|user_?name|login|file|host`)
)

// Suggest reads the catalog and a sample of source, guesses which columns
// hold the phone number, the customer's name and their id, and returns the
// SQL of a lookup answering userName and id for callNum, with the index its
// phone match needs. It reads at most SampleSize rows, under Timeout.
func Suggest(ctx context.Context, pool *pgxpool.Pool, source string, opt SuggestOptions) (*Suggestion, error) {
	if opt.Name == "" {
		opt.Name = "customer"
	}
	if opt.DefaultRegion == "" {
		opt.DefaultRegion = "KR"
	}
	if opt.SampleSize <= 0 {
		opt.SampleSize = 200
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Second
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("suggest: %w", err)
	}
	defer conn.Release()
	rel, err := resolveRelation(ctx, conn.Conn(), source)
	var me *mappingError
	if errors.As(err, &me) {
		return nil, errors.New(me.msg)
	}
	if err != nil {
		return nil, err
	}
	if ReservedSchema(rel.schema) {
		return nil, fmt.Errorf("source %q is in schema %q, which lookups may not read", source, rel.schema)
	}
	sample, err := sampleColumns(ctx, pool, rel, opt)
	if err != nil {
		return nil, err
	}
	unique, err := uniqueColumns(ctx, conn.Conn(), rel)
	if err != nil {
		return nil, err
	}

	s := &Suggestion{}
	best := 0.0
	for i, c := range rel.columns {
		if c.category != "S" {
			continue
		}
		score := 3 * phoneShare(sample[i])
		if phoneColumn.MatchString(c.name) {
			score += 2
		}
		if score > best && (phoneShare(sample[i]) >= 0.5 || len(sample[i]) == 0 && phoneColumn.MatchString(c.name)) {
			best, s.Phone = score, c.name
		}
	}
	if s.Phone == "" {
		var cols []string
		for _, c := range rel.columns {
			cols = append(cols, c.name+" "+c.typeName)
		}
		return nil, fmt.Errorf("no text column of %s looks like a phone number (columns: %s); write the lookup by hand (docs/mapping.md)",
			rel.display(), strings.Join(cols, ", "))
	}
	best = 0
	for i, c := range rel.columns {
		if c.category != "S" || c.name == s.Phone || notAName.MatchString(c.name) {
			continue
		}
		score := nameShare(sample[i])
		if nameColumn.MatchString(c.name) {
			score += 2
		}
		if score > best && (nameColumn.MatchString(c.name) || score >= 0.8) {
			best, s.Name = score, c.name
		}
	}
	best = 0
	for _, c := range rel.columns {
		if c.name == s.Phone || c.name == s.Name {
			continue
		}
		score := 0.0
		if idColumn.MatchString(c.name) {
			score += 3
		}
		if unique[c.name] {
			score += 2
		}
		for _, pk := range rel.pkey {
			if pk == c.name {
				score++
			}
		}
		if strings.EqualFold(c.name, "id") {
			score++
		}
		if score > best {
			best, s.ID = score, c.name
		}
	}

	def := Def{Name: opt.Name, Source: quoteIdent(rel.schema) + "." + quoteIdent(rel.name), Enabled: true,
		Params: []ParamDef{
			{Field: "callNum", SourceColumn: s.Phone, Match: MatchPhone, Required: true, RegionField: "nation", DefaultRegion: opt.DefaultRegion},
			{Field: "nation", Match: MatchHint},
		}}
	if s.Name != "" {
		def.Results = append(def.Results, ResultDef{Field: "userName", SourceColumn: s.Name, Position: 1})
	}
	if s.ID != "" {
		def.Results = append(def.Results, ResultDef{Field: "id", SourceColumn: s.ID, Position: 2})
	}
	l, err := compileOne(ctx, conn.Conn(), def)
	if err != nil {
		return nil, err
	}
	if l.Broken() {
		return nil, fmt.Errorf("the suggested lookup does not compile: %s", strings.Join(l.Problems, "; "))
	}
	indexes, err := l.suggestIndexes(ctx, pool)
	if err != nil {
		return nil, err
	}
	sampled := 0
	for _, v := range sample {
		sampled = max(sampled, len(v))
	}
	s.SQL = suggestionSQL(def, s, rel, sampled, indexes)
	return s, nil
}

// sampleColumns reads up to opt.SampleSize rows of every column as text,
// in a read-only transaction under a statement timeout.
func sampleColumns(ctx context.Context, pool *pgxpool.Pool, rel *relation, opt SuggestOptions) ([][]string, error) {
	out := make([][]string, len(rel.columns))
	if len(rel.columns) == 0 {
		return out, nil
	}
	var sel []string
	for _, c := range rel.columns {
		sel = append(sel, "left("+pgx.Identifier{c.name}.Sanitize()+"::text, 200)")
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("sample %s: %w", rel.display(), err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL statement_timeout = %d", opt.Timeout.Milliseconds())); err != nil {
		return nil, fmt.Errorf("sample %s: %w", rel.display(), err)
	}
	rows, err := tx.Query(ctx, fmt.Sprintf("SELECT %s FROM %s LIMIT %d", strings.Join(sel, ", "), rel.display(), opt.SampleSize))
	if err != nil {
		return nil, fmt.Errorf("sample %s: %w", rel.display(), err)
	}
	defer rows.Close()
	vals := make([]*string, len(rel.columns))
	ptrs := make([]any, len(vals))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("sample %s: %w", rel.display(), err)
		}
		for i, v := range vals {
			if v != nil && strings.TrimSpace(*v) != "" {
				out[i] = append(out[i], *v)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sample %s: %w", rel.display(), err)
	}
	return out, nil
}

// uniqueColumns returns the columns of rel that a unique index covers alone.
func uniqueColumns(ctx context.Context, conn *pgx.Conn, rel *relation) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE i.indrelid = $1::oid AND i.indisunique AND i.indnkeyatts = 1`, rel.oid)
	if err != nil {
		return nil, fmt.Errorf("read unique indexes of %s: %w", rel.display(), err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read unique indexes of %s: %w", rel.display(), err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// phoneShare is the share of values that read as phone numbers: 7 to 15
// digits, which make up most of the value.
func phoneShare(values []string) float64 {
	if len(values) == 0 {
		return 0
	}
	n := 0
	for _, v := range values {
		digits, other := 0, 0
		for _, r := range v {
			switch {
			case r >= '0' && r <= '9' || r >= '０' && r <= '９':
				digits++
			case strings.ContainsRune(" +-().", r):
			default:
				other++
			}
		}
		if digits >= 7 && digits <= 15 && other <= digits/3 {
			n++
		}
	}
	return float64(n) / float64(len(values))
}

// nameShare is the share of values that read as a person's name: short,
// with letters and hardly any digits.
func nameShare(values []string) float64 {
	if len(values) == 0 {
		return 0
	}
	n := 0
	for _, v := range values {
		letters, digits := 0, 0
		for _, r := range v {
			switch {
			case r >= '0' && r <= '9':
				digits++
			case r > 127 || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
				letters++
			}
		}
		if letters >= 2 && digits == 0 && len([]rune(v)) <= 40 && !strings.Contains(v, "@") {
			n++
		}
	}
	return float64(n) / float64(len(values))
}

// suggestIndexes returns the CREATE INDEX statements the phone match needs:
// on the column (what its query uses) and, when the database has
// custinfo.phone_key, on custinfo.phone_key(column) (what lookups check
// asks for); each only when no index serves it yet.
func (l *Lookup) suggestIndexes(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	var out []string
	warnings, err := l.IndexWarnings(ctx, pool)
	if err != nil {
		return nil, err
	}
	for _, pi := range l.matched {
		p := &l.params[pi]
		if p.Match != MatchPhone || len(warnings) == 0 {
			continue
		}
		stmt, err := l.phoneKeyIndexStatement(ctx, pool, p)
		if err != nil {
			return nil, err
		}
		// The same target as the phone_key index, on the plain column.
		plain := strings.Replace(stmt, "(custinfo.phone_key(", "((", 1)
		plain = strings.Replace(plain, "_phone_key_idx", "_idx", 1)
		out = append(out, plain)
	}
	lines, err := l.PhoneKeyIndexLines(ctx, pool)
	if err != nil {
		return nil, err
	}
	for _, line := range lines {
		if _, stmt, ok := strings.Cut(line, "Run: "); ok {
			out = append(out, stmt)
		}
	}
	return out, nil
}

// suggestionSQL writes the lookup as psql input: comments on the guesses,
// the rows in one transaction, then the indexes (CONCURRENTLY, outside it).
func suggestionSQL(def Def, s *Suggestion, rel *relation, sampled int, indexes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- Lookup %s on %s, from its catalog and %d sampled rows: review, then run with psql.\n", def.Name, rel.display(), sampled)
	fmt.Fprintf(&b, "-- callNum (the caller's number) is matched against %s as a phone number, in region %s unless the request's nation says otherwise.\n",
		pgx.Identifier{s.Phone}.Sanitize(), def.Params[0].DefaultRegion)
	if s.Name == "" {
		b.WriteString("-- No column looked like a name: add a userName result by hand if the helpdesk shows one.\n")
	}
	b.WriteString("BEGIN;\n")
	fmt.Fprintf(&b, "INSERT INTO custinfo.lookups (name, source, description)\nVALUES (%s, %s, %s);\n",
		literal(def.Name), literal(def.Source), literal("caller number to customer ("+def.Source+")"))
	b.WriteString("INSERT INTO custinfo.lookup_params (lookup, field, source_column, match, required, region_field, default_region)\n")
	fmt.Fprintf(&b, "VALUES (%s, 'callNum', %s, 'phone', true, 'nation', %s),\n       (%s, 'nation', NULL, 'hint', false, NULL, NULL);\n",
		literal(def.Name), literal(s.Phone), literal(def.Params[0].DefaultRegion), literal(def.Name))
	if len(def.Results) > 0 {
		b.WriteString("INSERT INTO custinfo.lookup_results (lookup, field, source_column, position)\nVALUES ")
		for i, r := range def.Results {
			if i > 0 {
				b.WriteString(",\n       ")
			}
			fmt.Fprintf(&b, "(%s, %s, %s, %d)", literal(def.Name), literal(r.Field), literal(r.SourceColumn), i+1)
		}
		b.WriteString(";\n")
	}
	b.WriteString("COMMIT;\n")
	if len(indexes) > 0 {
		b.WriteString("-- The index the phone match needs (CONCURRENTLY: the table stays writable while it builds).\n")
		for _, ix := range indexes {
			stmt, note, _ := strings.Cut(ix, ";")
			stmt = strings.Replace(stmt, "CREATE INDEX CONCURRENTLY ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
			if note = strings.TrimSpace(note); note != "" {
				fmt.Fprintf(&b, "-- %s\n", note)
			}
			if strings.Contains(stmt, "<") { // the table behind a view could not be told
				fmt.Fprintf(&b, "-- %s;\n", stmt)
				continue
			}
			b.WriteString(stmt + ";\n")
		}
	}
	return b.String()
}

// literal is s as an SQL string literal.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// quoteIdent quotes name only when PostgreSQL would otherwise fold or
// reject it, as quote_ident does (keywords aside).
func quoteIdent(name string) string {
	plain := name != ""
	for i, r := range name {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			plain = false
			break
		}
	}
	if plain {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
}
