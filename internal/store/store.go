// Package store reads and writes custinfo's own tables (the custinfo schema)
// and converts them to domain types. Generated sqlc code stays inside it.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custinfo/custinfo/internal/lookup"
	"github.com/custinfo/custinfo/internal/store/dbsqlc"
)

// ErrNotFound is returned when a named row does not exist.
var ErrNotFound = errors.New("not found")

// Store reads and writes the custinfo schema.
type Store struct {
	db dbsqlc.DBTX
	q  *dbsqlc.Queries
}

// New returns a Store over db (a pool, a connection or a transaction).
func New(db dbsqlc.DBTX) *Store {
	return &Store{db: db, q: dbsqlc.New(db)}
}

// LoadConfig reads every lookup with its params and results, and every key.
func (s *Store) LoadConfig(ctx context.Context) (lookup.Config, error) {
	var cfg lookup.Config
	lookups, err := s.q.ListLookups(ctx)
	if err != nil {
		return cfg, fmt.Errorf("read custinfo.lookups: %w", err)
	}
	params, err := s.q.ListLookupParams(ctx)
	if err != nil {
		return cfg, fmt.Errorf("read custinfo.lookup_params: %w", err)
	}
	results, err := s.q.ListLookupResults(ctx)
	if err != nil {
		return cfg, fmt.Errorf("read custinfo.lookup_results: %w", err)
	}
	keys, err := s.q.ListAPIKeys(ctx)
	if err != nil {
		return cfg, fmt.Errorf("read custinfo.api_keys: %w", err)
	}
	index := make(map[string]int, len(lookups))
	for _, l := range lookups {
		index[l.Name] = len(cfg.Lookups)
		cfg.Lookups = append(cfg.Lookups, lookup.Def{
			Name:            l.Name,
			Source:          l.Source,
			OrderBy:         deref(l.OrderBy),
			Enabled:         l.Enabled,
			AllowedNetworks: l.AllowedNetworks,
			Description:     l.Description,
		})
	}
	for _, p := range params {
		i, ok := index[p.Lookup]
		if !ok {
			continue // inserted between the reads; the next reload sees it whole
		}
		cfg.Lookups[i].Params = append(cfg.Lookups[i].Params, lookup.ParamDef{
			Field:         p.Field,
			SourceColumn:  deref(p.SourceColumn),
			Match:         lookup.Match(p.Match),
			Required:      p.Required,
			RegionField:   deref(p.RegionField),
			DefaultRegion: deref(p.DefaultRegion),
		})
	}
	for _, r := range results {
		i, ok := index[r.Lookup]
		if !ok {
			continue
		}
		cfg.Lookups[i].Results = append(cfg.Lookups[i].Results, lookup.ResultDef{
			Field:        r.Field,
			SourceColumn: r.SourceColumn,
			Position:     int(r.Position),
		})
	}
	for _, k := range keys {
		cfg.Keys = append(cfg.Keys, keyDef(k))
	}
	return cfg, nil
}

func keyDef(k dbsqlc.CustinfoApiKey) lookup.KeyDef {
	return lookup.KeyDef{
		ID:        k.ID,
		Lookup:    deref(k.Lookup),
		Secret:    k.Secret,
		Label:     k.Label,
		Schemes:   k.Schemes,
		CreatedAt: k.CreatedAt,
		ExpiresAt: k.ExpiresAt,
		RevokedAt: k.RevokedAt,
	}
}

// NewKey is a key to add.
type NewKey struct {
	Lookup    string // "" for every lookup
	Secret    string
	Label     string
	Schemes   []string
	ExpiresAt *time.Time
}

// AddKey inserts a key and returns its id.
func (s *Store) AddKey(ctx context.Context, k NewKey) (int64, error) {
	if k.Lookup != "" {
		ok, err := s.q.LookupExists(ctx, k.Lookup)
		if err != nil {
			return 0, fmt.Errorf("check lookup %q: %w", k.Lookup, err)
		}
		if !ok {
			return 0, fmt.Errorf("lookup %q: %w", k.Lookup, ErrNotFound)
		}
	}
	if len(k.Schemes) == 0 {
		k.Schemes = []string{"body"}
	}
	id, err := s.q.InsertAPIKey(ctx, dbsqlc.InsertAPIKeyParams{
		Lookup:    ptr(k.Lookup),
		Secret:    k.Secret,
		Label:     k.Label,
		Schemes:   k.Schemes,
		ExpiresAt: k.ExpiresAt,
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23514" {
			return 0, fmt.Errorf("insert key: rejected by %s: %w", pgErr.ConstraintName, err)
		}
		return 0, fmt.Errorf("insert key: %w", err)
	}
	return id, nil
}

// RevokeKey marks a key revoked now. Revoking a revoked or unknown key is ErrNotFound.
func (s *Store) RevokeKey(ctx context.Context, id int64) error {
	n, err := s.q.RevokeAPIKey(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke key %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("active key %d: %w", id, ErrNotFound)
	}
	return nil
}

// Keys lists every key.
func (s *Store) Keys(ctx context.Context) ([]lookup.KeyDef, error) {
	keys, err := s.q.ListAPIKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("read custinfo.api_keys: %w", err)
	}
	out := make([]lookup.KeyDef, 0, len(keys))
	for _, k := range keys {
		out = append(out, keyDef(k))
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// KeysLastUsed returns, per key id, when the key last verified a request
// according to the access log. Keys never used are absent.
func (s *Store) KeysLastUsed(ctx context.Context) (map[int64]time.Time, error) {
	rows, err := s.q.KeysLastUsed(ctx)
	if err != nil {
		return nil, fmt.Errorf("read key use from custinfo.access_log: %w", err)
	}
	out := make(map[int64]time.Time, len(rows))
	for _, r := range rows {
		out[r.KeyID] = r.LastUsed
	}
	return out, nil
}
