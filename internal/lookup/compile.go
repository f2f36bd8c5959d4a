package lookup

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/custinfo/custinfo/internal/signature"
)

// ReservedSchemas are the schemas no lookup may read from: custinfo's own
// tables (the keys among them) and PostgreSQL's catalogs. The serve role can
// read some of them, so one mapping could otherwise answer a secret. Any
// check of sources elsewhere (SQL included) uses this list.
var ReservedSchemas = []string{"custinfo", "pg_catalog", "information_schema", "pg_toast"}

// ReservedSchema reports whether schema, as the catalog names it, is one of
// ReservedSchemas.
func ReservedSchema(schema string) bool {
	for _, r := range ReservedSchemas {
		if schema == r {
			return true
		}
	}
	return false
}

// MaxMatchedParams bounds the matched params of one lookup (one bit each in the
// statement cache key).
const MaxMatchedParams = 16

// Snapshot is a compiled, immutable view of the whole configuration. A server
// holds one at a time and swaps in a new one on reload.
type Snapshot struct {
	lookups    map[string]*Lookup
	names      []string
	globalKeys []keyEntry
	keyDefs    []KeyDef
	LoadedAt   time.Time
}

// KeyDefs returns every key of the configuration, active or not, in id order.
func (s *Snapshot) KeyDefs() []KeyDef { return s.keyDefs }

type keyEntry struct {
	def KeyDef
	key signature.Key
}

// Lookup is one compiled lookup: its definition, its problems (a lookup with
// problems is broken and answers with them), and the SQL it runs.
type Lookup struct {
	Def
	// Problems lists what is wrong with the mapping; empty when it serves.
	Problems []string
	// Warnings lists what makes the lookup slow though it serves: a phone
	// param on a large table with no index on custinfo.phone_key(column).
	Warnings []string

	source   string // quoted, schema-qualified relation
	params   []compiledParam
	matched  []int  // indexes into params of the params that add a condition
	inner    string // select list of the matching rows: results as text, order keys
	selects  string // select list of the answer: results, then the match count
	orderBy  string // over the inner list's aliases
	keys     []keyEntry
	stmtMu   sync.Mutex
	stmts    map[uint32]string
	queues   map[uint32]*batchQueue // coalescing, by statement (see Coalescer)
	stmtsAll string                 // statement with every matched param, checked at compile
}

type compiledParam struct {
	ParamDef
	column   string // quoted column
	typeName string // column's type without modifier, for the cast of the value
	citext   bool
}

// Broken reports whether the lookup's mapping has problems.
func (l *Lookup) Broken() bool { return len(l.Problems) > 0 }

// Get returns the compiled lookup called name.
func (s *Snapshot) Get(name string) (*Lookup, bool) {
	l, ok := s.lookups[name]
	return l, ok
}

// Names returns the lookup names in order.
func (s *Snapshot) Names() []string { return s.names }

// Keys returns the keys that may verify a request to lookup l at now: its own
// active keys and the active keys valid for every lookup.
func (s *Snapshot) Keys(l *Lookup, now time.Time) []signature.Key {
	out := make([]signature.Key, 0, len(l.keys)+len(s.globalKeys))
	for _, k := range l.keys {
		if k.def.Active(now) {
			out = append(out, k.key)
		}
	}
	for _, k := range s.globalKeys {
		if k.def.Active(now) {
			out = append(out, k.key)
		}
	}
	return out
}

// Allows reports whether a caller at ip may use the lookup.
func (l *Lookup) Allows(ip netip.Addr) bool {
	if l.AllowedNetworks == nil {
		return true
	}
	ip = ip.Unmap()
	for _, n := range l.AllowedNetworks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Warnings returns every warning of every lookup, each naming its lookup.
func (s *Snapshot) Warnings() []string {
	var out []string
	for _, name := range s.names {
		for _, w := range s.lookups[name].Warnings {
			out = append(out, fmt.Sprintf("lookup %q: %s", name, w))
		}
	}
	return out
}

// Problems returns every problem of every lookup, each naming its lookup.
func (s *Snapshot) Problems() []string {
	var out []string
	for _, name := range s.names {
		for _, p := range s.lookups[name].Problems {
			out = append(out, fmt.Sprintf("lookup %q: %s", name, p))
		}
	}
	return out
}

// Compile checks every lookup of cfg against the database catalog and builds
// its SQL. A lookup whose mapping is wrong is kept with its Problems; the others
// are unaffected. An error is returned only when the catalog cannot be read.
func Compile(ctx context.Context, pool *pgxpool.Pool, cfg Config, now time.Time) (*Snapshot, error) {
	s := &Snapshot{lookups: make(map[string]*Lookup, len(cfg.Lookups)), LoadedAt: now}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile lookups: %w", err)
	}
	defer conn.Release()
	for _, def := range cfg.Lookups {
		l, err := compileOne(ctx, conn.Conn(), def)
		if err != nil {
			return nil, fmt.Errorf("compile lookup %q: %w", def.Name, err)
		}
		s.lookups[def.Name] = l
		s.names = append(s.names, def.Name)
	}
	sort.Strings(s.names)
	s.keyDefs = cfg.Keys
	for _, k := range cfg.Keys {
		e := keyEntry{def: k, key: signature.Key{ID: k.ID, Secret: []byte(k.Secret)}}
		for _, sc := range k.Schemes {
			if parsed, err := signature.ParseScheme(sc); err == nil {
				e.key.Schemes = append(e.key.Schemes, parsed)
			}
		}
		if k.Lookup == "" {
			s.globalKeys = append(s.globalKeys, e)
		} else if l, ok := s.lookups[k.Lookup]; ok {
			l.keys = append(l.keys, e)
		}
	}
	return s, nil
}

type column struct {
	name     string
	typeName string // format_type without modifier
	category string // pg_type.typcategory
	baseName string // pg_type.typname of the base type
}

type relation struct {
	oid     uint32
	schema  string
	name    string
	kind    string
	canRead bool
	columns []column
	pkey    []string
}

// compileOne returns the lookup with its problems, or an error when the
// catalog could not be read at all.
func compileOne(ctx context.Context, conn *pgx.Conn, def Def) (*Lookup, error) {
	def.Results = append([]ResultDef(nil), def.Results...)
	sort.SliceStable(def.Results, func(i, j int) bool {
		a, b := def.Results[i], def.Results[j]
		return a.Position < b.Position || a.Position == b.Position && a.Field < b.Field
	})
	l := &Lookup{Def: def, stmts: make(map[uint32]string)}
	problem := func(format string, args ...any) { l.Problems = append(l.Problems, fmt.Sprintf(format, args...)) }

	rel, err := resolveRelation(ctx, conn, def.Source)
	var me *mappingError
	if errors.As(err, &me) {
		problem("%s", me.msg)
		return l, nil
	}
	if err != nil {
		return nil, err
	}
	if ReservedSchema(rel.schema) {
		problem("source %q is in schema %q, which holds custinfo's keys and configuration or PostgreSQL's catalogs: a lookup may not read from schemas %s; point it at a table or view of your own",
			def.Source, rel.schema, strings.Join(ReservedSchemas, ", "))
		return l, nil
	}
	if !rel.canRead {
		problem("source %q: permission denied: the server's role cannot SELECT from it", def.Source)
	}
	l.source = pgx.Identifier{rel.schema, rel.name}.Sanitize()

	matchedCount, required := 0, 0
	fields := map[string]bool{}
	for _, p := range def.Params {
		cp := compiledParam{ParamDef: p}
		if p.Required {
			required++
		}
		switch p.Match {
		case MatchHint:
			l.params = append(l.params, cp)
			continue
		case MatchExact, MatchCI, MatchPhone:
		default:
			problem("param %q: unknown match %q (want exact, ci, phone or hint)", p.Field, p.Match)
			continue
		}
		col, ok := rel.column(p.SourceColumn)
		if !ok {
			problem("param %q: column %q does not exist in %s", p.Field, p.SourceColumn, rel.display())
			continue
		}
		cp.column = pgx.Identifier{col.name}.Sanitize()
		cp.typeName = col.typeName
		cp.citext = col.baseName == "citext"
		switch p.Match {
		case MatchCI, MatchPhone:
			if col.category != "S" {
				problem("param %q: %s matching needs a text column; %q is %s", p.Field, p.Match, col.name, col.typeName)
				continue
			}
		}
		if p.Match == MatchPhone {
			if p.DefaultRegion != "" {
				if _, err := phoneRegion(p.DefaultRegion); err != nil {
					problem("param %q: default_region %q: %v", p.Field, p.DefaultRegion, err)
					continue
				}
			}
		}
		fields[p.Field] = true
		matchedCount++
		l.matched = append(l.matched, len(l.params))
		l.params = append(l.params, cp)
	}
	for _, p := range def.Params {
		if p.RegionField != "" && p.Match != MatchPhone {
			problem("param %q: region_field is only used with match 'phone'", p.Field)
		}
	}
	if matchedCount == 0 {
		problem("no param is matched against a column (add a lookup_params row with match exact, ci or phone)")
	}
	if matchedCount > MaxMatchedParams {
		problem("%d matched params; at most %d", matchedCount, MaxMatchedParams)
	}
	if required == 0 && len(def.Params) > 0 {
		problem("no param is required (set required = true on the field the helpdesk always sends, e.g. callNum)")
	}

	if len(def.Results) == 0 {
		problem("no result fields (add lookup_results rows)")
	}
	var selects []string
	seen := map[string]string{}
	for _, r := range def.Results {
		if prev, dup := seen[strings.ToLower(r.Field)]; dup {
			problem("result field %q is defined twice (also as %q)", r.Field, prev)
			continue
		}
		seen[strings.ToLower(r.Field)] = r.Field
		col, ok := rel.column(r.SourceColumn)
		if !ok {
			problem("result %q: column %q does not exist in %s", r.Field, r.SourceColumn, rel.display())
			continue
		}
		selects = append(selects, pgx.Identifier{col.name}.Sanitize()+"::text")
	}
	orderKeys, order, err := orderClause(rel, def.OrderBy, len(selects))
	if err != nil {
		problem("%v", err)
	}
	if l.Broken() {
		return l, nil
	}
	var inner, outer []string
	for i, sel := range selects {
		alias := "custinfo_r" + strconv.Itoa(i+1)
		inner = append(inner, sel+" AS "+alias)
		outer = append(outer, alias)
	}
	l.inner = strings.Join(append(inner, orderKeys...), ", ")
	l.selects = strings.Join(outer, ", ") + ", count(*) OVER ()"
	l.orderBy = order

	for _, pi := range l.matched {
		if p := &l.params[pi]; p.Match == MatchPhone {
			w, err := phoneIndexWarning(ctx, conn, rel, p)
			if err != nil {
				return nil, err
			}
			if w != "" {
				l.Warnings = append(l.Warnings, w)
			}
		}
	}

	// Let PostgreSQL parse and plan the full statement once, so a comparison it
	// cannot do (json = json, say) is reported now and not on the first call.
	l.stmtsAll = l.statement(1<<len(l.matched) - 1)
	if _, err := conn.PgConn().Prepare(ctx, "", l.stmtsAll, nil); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		problem("the lookup query does not compile: %s", pgErr.Message)
	}
	return l, nil
}

// largeTable is the estimated row count above which a phone param without
// an index on custinfo.phone_key(column) is warned about at load.
const largeTable = 100_000

// phoneKeyIndexQuery reports the relation's estimated rows and whether a
// valid, non-partial btree index leads with custinfo.phone_key(column).
const phoneKeyIndexQuery = `
SELECT c.reltuples::float8, EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'
      AND regexp_replace(pg_get_indexdef(i.indexrelid, 1, false), '\s|::text|[()]|^custinfo[.]', '', 'g')
          = regexp_replace('phone_key' || quote_ident($2), '\s|[()]', '', 'g'))
FROM pg_class c WHERE c.oid = $1::oid`

// phoneIndexWarning returns the load-time warning for phone param p: a view
// (whose index, if any, is on its table: lookups check plans it), or a table
// of more than largeTable rows without an index on custinfo.phone_key(column),
// which every lookup then reads in full. It returns "" when there is nothing to say.
func phoneIndexWarning(ctx context.Context, conn *pgx.Conn, rel *relation, p *compiledParam) (string, error) {
	col := strings.ReplaceAll(p.column[1:len(p.column)-1], `""`, `"`) // p.column is quoted
	if rel.kind == "v" {
		return "", nil // lookups check plans a view's query and names the table to index
	}
	var rows float64
	var indexed bool
	if err := conn.QueryRow(ctx, phoneKeyIndexQuery, rel.oid, col).Scan(&rows, &indexed); err != nil {
		return "", fmt.Errorf("read indexes of %s: %w", rel.display(), err)
	}
	if indexed || rows <= largeTable {
		return "", nil
	}
	return fmt.Sprintf("param %q: no index on custinfo.phone_key(%s) and %s has about %.0f rows: every lookup reads it in full; run: CREATE INDEX CONCURRENTLY ON %s (custinfo.phone_key(%s))",
		p.Field, p.column, rel.display(), rows, rel.display(), p.column), nil
}

func (r *relation) display() string {
	return pgx.Identifier{r.schema, r.name}.Sanitize()
}

// column finds a column by its exact name, by a double-quoted name, or by the
// name PostgreSQL would fold an unquoted identifier to (lower case).
func (r *relation) column(name string) (column, bool) {
	for _, c := range r.columns {
		if c.name == name {
			return c, true
		}
	}
	if n := len(name); n >= 2 && name[0] == '"' && name[n-1] == '"' {
		unq := strings.ReplaceAll(name[1:n-1], `""`, `"`)
		for _, c := range r.columns {
			if c.name == unq {
				return c, true
			}
		}
		return column{}, false
	}
	lower := strings.ToLower(name)
	for _, c := range r.columns {
		if c.name == lower {
			return c, true
		}
	}
	return column{}, false
}

// orderClause builds ORDER BY: the admin's column (ascending, or with a
// trailing DESC), then the primary key when the source has one, then every
// result column in position order, so equal rows are always broken the same
// way. It returns the order keys to select beside the results (aliased) and
// the ORDER BY list over the aliases.
func orderClause(rel *relation, orderBy string, nresults int) (keys []string, order string, err error) {
	var parts []string
	if ob := strings.TrimSpace(orderBy); ob != "" {
		dir := "ASC"
		upper := strings.ToUpper(ob)
		switch {
		case strings.HasSuffix(upper, " DESC"):
			dir, ob = "DESC", strings.TrimSpace(ob[:len(ob)-5])
		case strings.HasSuffix(upper, " ASC"):
			ob = strings.TrimSpace(ob[:len(ob)-4])
		}
		col, ok := rel.column(ob)
		if !ok {
			return nil, "", fmt.Errorf("order_by: column %q does not exist in %s", ob, rel.display())
		}
		keys = append(keys, pgx.Identifier{col.name}.Sanitize()+" AS custinfo_o")
		parts = append(parts, "custinfo_o "+dir+" NULLS LAST")
	}
	for i, pk := range rel.pkey {
		alias := "custinfo_k" + strconv.Itoa(i+1)
		keys = append(keys, pgx.Identifier{pk}.Sanitize()+" AS "+alias)
		parts = append(parts, alias)
	}
	for i := 1; i <= nresults; i++ {
		parts = append(parts, "custinfo_r"+strconv.Itoa(i))
	}
	return keys, strings.Join(parts, ", "), nil
}

// statement returns the SQL for the set of present matched params in mask
// (bit i: l.matched[i] is present). $n numbers the present params in order.
func (l *Lookup) statement(mask uint32) string {
	return l.query("", l.where(mask))
}

// query wraps a WHERE clause into the lookup's statement. The matching rows
// are gathered in a subquery that OFFSET 0 keeps from being merged into the
// outer query, so it is planned for all its rows and the match column's index
// drives it; a plan that reads the whole table in ORDER BY order, hoping that
// LIMIT 1 stops it early, would be wrong here, as count(*) OVER () needs every
// match. alias, when set, names the source inside the subquery.
func (l *Lookup) query(alias, where string) string {
	src := l.source
	if alias != "" {
		src += " AS " + alias
	}
	return "SELECT " + l.selects + " FROM (SELECT " + l.inner + " FROM " + src + where +
		" OFFSET 0) AS custinfo_m ORDER BY " + l.orderBy + " LIMIT 1"
}

// where returns the WHERE clause for the present matched params in mask.
// The column stands bare on the left, or inside the expression its index
// is made on (lower(column), custinfo.phone_key(column)), so an index serves.
func (l *Lookup) where(mask uint32) string {
	return l.whereArgs(mask, func(n int) string { return "$" + strconv.Itoa(n) })
}

// whereArgs is where with the n-th present param's value written as arg(n).
func (l *Lookup) whereArgs(mask uint32, arg func(n int) string) string {
	var b strings.Builder
	n := 0
	for i, pi := range l.matched {
		if mask&(1<<i) == 0 {
			continue
		}
		n++
		if n == 1 {
			b.WriteString(" WHERE ")
		} else {
			b.WriteString(" AND ")
		}
		p := l.params[pi]
		arg := arg(n)
		switch {
		case p.Match == MatchPhone:
			// The key of the stored value against the asked number's keys:
			// an index on custinfo.phone_key(column) serves it.
			fmt.Fprintf(&b, "custinfo.phone_key(%s) = ANY(%s::text[])", p.column, arg)
		case p.Match == MatchCI && !p.citext:
			fmt.Fprintf(&b, "lower(%s) = lower(%s::text)", p.column, arg)
		default:
			fmt.Fprintf(&b, "%s = CAST(%s::text AS %s)", p.column, arg, p.typeName)
		}
	}
	return b.String()
}

// SQL returns the statement run when every matched param is present.
func (l *Lookup) SQL() string { return l.stmtsAll }

func (l *Lookup) cachedStatement(mask uint32) string {
	l.stmtMu.Lock()
	defer l.stmtMu.Unlock()
	if s, ok := l.stmts[mask]; ok {
		return s
	}
	s := l.statement(mask)
	l.stmts[mask] = s
	return s
}

const relationQuery = `
SELECT c.oid, n.nspname, c.relname, c.relkind::text, has_table_privilege(c.oid, 'SELECT'),
       coalesce((SELECT array_agg(a.attname ORDER BY array_position(i.indkey::int2[], a.attnum))
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1::oid`

const columnsQuery = `
SELECT a.attname, format_type(a.atttypid, NULL), t.typcategory::text,
       coalesce(bt.typname, t.typname)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

// resolveRelation finds source as PostgreSQL would read it in a query
// (crm.customers, "CRM"."Customer Table"), or else as the exact name of a
// relation on the search path, or as exact "schema.name".
func resolveRelation(ctx context.Context, conn *pgx.Conn, source string) (*relation, error) {
	var oid *uint32
	try := func(sql string, args ...any) error {
		if oid != nil {
			return nil
		}
		err := conn.QueryRow(ctx, sql, args...).Scan(&oid)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !isQueryCanceled(err) {
			return nil // a syntax the parser rejects: try the next reading
		}
		return err
	}
	if err := try(`SELECT to_regclass($1)::oid`, source); err != nil {
		return nil, fmt.Errorf("resolve source %q: %w", source, err)
	}
	if err := try(`SELECT to_regclass(quote_ident($1))::oid`, source); err != nil {
		return nil, fmt.Errorf("resolve source %q: %w", source, err)
	}
	if schema, name, ok := strings.Cut(source, "."); ok {
		if err := try(`SELECT to_regclass(quote_ident($1) || '.' || quote_ident($2))::oid`, schema, name); err != nil {
			return nil, fmt.Errorf("resolve source %q: %w", source, err)
		}
	}
	if oid == nil {
		if schema, _, ok := strings.Cut(source, "."); ok {
			schema = strings.Trim(schema, `"`)
			var denied bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace
				WHERE nspname IN ($1::text, lower($1::text)) AND NOT has_schema_privilege(oid, 'USAGE'))`, schema).Scan(&denied)
			if err != nil {
				return nil, fmt.Errorf("resolve source %q: %w", source, err)
			}
			if denied {
				return nil, &mappingError{fmt.Sprintf("source %q: permission denied: the server's role has no USAGE on schema %q", source, schema)}
			}
		}
		return nil, &mappingError{fmt.Sprintf("source %q does not exist (a table or view, optionally schema-qualified; quote mixed-case names)", source)}
	}
	rel := &relation{}
	if err := conn.QueryRow(ctx, relationQuery, *oid).Scan(&rel.oid, &rel.schema, &rel.name, &rel.kind, &rel.canRead, &rel.pkey); err != nil {
		return nil, fmt.Errorf("read catalog for %q: %w", source, err)
	}
	switch rel.kind {
	case "r", "v", "m", "p", "f":
	default:
		return nil, &mappingError{fmt.Sprintf("source %q is not a table or view (relkind %s)", source, rel.kind)}
	}
	rows, err := conn.Query(ctx, columnsQuery, rel.oid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", source, err)
	}
	rel.columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.name, &c.typeName, &c.category, &c.baseName)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read columns of %q: %w", source, err)
	}
	return rel, nil
}

// mappingError is a problem of the admin's mapping, as opposed to a failure
// to read the catalog.
type mappingError struct{ msg string }

func (e *mappingError) Error() string { return e.msg }

func isQueryCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

// Wants reports whether the request field is one the lookup reads (a param
// or the region field of a phone param); the others are ignored.
func (l *Lookup) Wants(field string) bool {
	for i := range l.params {
		if l.params[i].Field == field || l.params[i].RegionField == field {
			return true
		}
	}
	return false
}

// QueryField names the field that identifies whom a request looked up: the
// first required matched param, else the first matched param. The access log
// keeps its value masked.
func (l *Lookup) QueryField() string {
	for _, pi := range l.matched {
		if l.params[pi].Required {
			return l.params[pi].Field
		}
	}
	if len(l.matched) > 0 {
		return l.params[l.matched[0]].Field
	}
	return ""
}
