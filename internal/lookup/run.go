package lookup

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custinfo/custinfo/internal/phone"
)

// ErrNoMatch is returned by Run when no row matches.
var ErrNoMatch = errors.New("no matching row")

// InputError is a request value that cannot be used: a required field that is
// missing, a phone number that does not parse. Field may be empty when the
// cause is not tied to one field.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Reason)
}

// BrokenError is returned by Run for a lookup whose mapping has problems.
type BrokenError struct {
	Lookup   string
	Problems []string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("lookup %q is misconfigured: %s", e.Lookup, strings.Join(e.Problems, "; "))
}

// QueryError is a failure of the database while running a lookup.
type QueryError struct {
	Lookup string
	Err    error
}

func (e *QueryError) Error() string { return fmt.Sprintf("lookup %q: query: %v", e.Lookup, e.Err) }
func (e *QueryError) Unwrap() error { return e.Err }

// Querier runs one query; *pgxpool.Pool satisfies it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Field is one result field of a lookup.
type Field struct {
	Name  string
	Value string
}

// Result is what a lookup found: its fields in position order, and how many
// rows matched (one of them was chosen).
type Result struct {
	Fields  []Field
	Matches int64
}

// Prepared is a lookup bound to the values of one request, ready to run.
type Prepared struct {
	SQL  string
	Args []any
	// Normalized is the E.164 form of the query field's value (see
	// QueryField) when the lookup matches it as a phone number, else "".
	Normalized string
	mask       uint32 // the present matched params (see statement)
}

// Bind checks the request values against the lookup's params and returns the
// statement and arguments to run. values maps request field names to their
// values (JSON strings, or the text of JSON numbers).
func (l *Lookup) Bind(values map[string]string) (Prepared, error) {
	if l.Broken() {
		return Prepared{}, &BrokenError{Lookup: l.Name, Problems: l.Problems}
	}
	for _, p := range l.params {
		if p.Required && strings.TrimSpace(values[p.Field]) == "" {
			return Prepared{}, &InputError{Field: p.Field, Reason: "is required"}
		}
	}
	var (
		mask       uint32
		normalized string
	)
	query := l.QueryField()
	args := make([]any, 0, len(l.matched))
	for i, pi := range l.matched {
		p := &l.params[pi]
		v := values[p.Field]
		if strings.TrimSpace(v) == "" {
			continue // optional and absent: its condition is left out
		}
		mask |= 1 << i
		if p.Match != MatchPhone {
			args = append(args, v)
			continue
		}
		keys, err := l.phoneKeys(p, v, values)
		if err != nil {
			return Prepared{}, err
		}
		if p.Field == query {
			normalized = keys[0] // E.164 comes first
		}
		args = append(args, keys)
	}
	if mask == 0 {
		return Prepared{}, &InputError{Reason: "no field to match was given (" + l.matchedFields() + ")"}
	}
	return Prepared{SQL: l.cachedStatement(mask), Args: args, Normalized: normalized, mask: mask}, nil
}

func (l *Lookup) matchedFields() string {
	names := make([]string, 0, len(l.matched))
	for _, pi := range l.matched {
		names = append(names, l.params[pi].Field)
	}
	return strings.Join(names, ", ")
}

// phoneKeys returns the keys (see phone.Keys) of the number v of param p:
// v read in the region of p's region field, else in p's default region;
// stored values without a country code read in p's default region.
func (l *Lookup) phoneKeys(p *compiledParam, v string, values map[string]string) ([]string, error) {
	region := p.DefaultRegion
	if p.RegionField != "" {
		if r := strings.TrimSpace(values[p.RegionField]); r != "" {
			region = r
		}
	}
	iso, err := phoneRegion(region)
	if err != nil {
		field := p.RegionField
		if field == "" || strings.TrimSpace(values[field]) == "" {
			field = p.Field
		}
		return nil, &InputError{Field: field, Reason: err.Error()}
	}
	keys, err := phone.Keys(v, iso, p.DefaultRegion)
	if err != nil {
		return nil, &InputError{Field: p.Field, Reason: err.Error()}
	}
	return keys, nil
}

func phoneRegion(s string) (string, error) {
	r, err := phone.ParseRegion(s)
	if err != nil {
		// err quotes at most the start of s: a caller may have put a
		// phone number in the region field, and this reason is logged.
		return "", err
	}
	return r, nil
}

// Run binds the request values and runs the lookup with db.
func (l *Lookup) Run(ctx context.Context, db Querier, values map[string]string) (Result, error) {
	p, err := l.Bind(values)
	if err != nil {
		return Result{}, err
	}
	return l.Exec(ctx, db, p)
}

// Exec runs a bound lookup.
func (l *Lookup) Exec(ctx context.Context, db Querier, p Prepared) (Result, error) {
	b := getRowBuf(len(l.Results), false)
	defer putRowBuf(b)
	err := db.QueryRow(ctx, p.SQL, p.Args...).Scan(b.dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Result{}, ErrNoMatch
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22") {
			// Data exception: a value that does not fit its column's type.
			msg, _, _ := strings.Cut(pgErr.Message, ":")
			return Result{}, &InputError{Reason: "a value does not fit its column: " + msg}
		}
		return Result{}, &QueryError{Lookup: l.Name, Err: err}
	}
	return Result{Fields: b.fields(l), Matches: b.matches}, nil
}
