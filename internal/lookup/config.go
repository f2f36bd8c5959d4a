// Package lookup turns the admin's mapping rows into compiled lookups: it checks
// each mapping against the database catalog, builds the SQL once, and runs it.
package lookup

import (
	"net/netip"
	"time"
)

// Match says how a request field is compared with its source column.
type Match string

// The match modes of custinfo.lookup_params.match.
const (
	MatchExact Match = "exact" // column = value
	MatchCI    Match = "ci"    // lower(column) = lower(value); citext columns compare directly
	MatchPhone Match = "phone" // custinfo.phone_key(column) = ANY(the keys of the number)
	MatchHint  Match = "hint"  // accepted in the request, not matched
)

// Config is the raw configuration as stored in the custinfo tables.
type Config struct {
	Lookups []Def
	Keys    []KeyDef
}

// Def is one row of custinfo.lookups with its params and results.
type Def struct {
	Name            string
	Source          string
	OrderBy         string // "" for the default order
	Enabled         bool
	AllowedNetworks []netip.Prefix // nil: any caller
	Description     string
	Params          []ParamDef
	Results         []ResultDef
}

// ParamDef is one row of custinfo.lookup_params.
type ParamDef struct {
	Field         string
	SourceColumn  string
	Match         Match
	Required      bool
	RegionField   string
	DefaultRegion string
}

// ResultDef is one row of custinfo.lookup_results.
type ResultDef struct {
	Field        string
	SourceColumn string
	Position     int
}

// KeyDef is one row of custinfo.api_keys.
type KeyDef struct {
	ID        int64
	Lookup    string // "" for every lookup
	Secret    string
	Label     string
	Schemes   []string
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// Active reports whether the key may verify requests at now.
func (k KeyDef) Active(now time.Time) bool {
	if k.RevokedAt != nil && !k.RevokedAt.After(now) {
		return false
	}
	return k.ExpiresAt == nil || now.Before(*k.ExpiresAt)
}

// State describes the key at now: "active", "revoked" or "expired".
func (k KeyDef) State(now time.Time) string {
	switch {
	case k.RevokedAt != nil && !k.RevokedAt.After(now):
		return "revoked"
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return "expired"
	default:
		return "active"
	}
}
