package store

import (
	"context"
	"fmt"
	"time"

	"github.com/custinfo/custinfo/internal/store/dbsqlc"
)

// Status is one serve instance's row of custinfo.status.
type Status struct {
	Instance  string
	Host      string
	PID       int
	StartedAt time.Time
	CheckedAt time.Time // this load attempt
	// LoadedAt, Lookups and Keys describe the configuration loaded now; all
	// nil after a failed load, which keeps the previous ones.
	LoadedAt  *time.Time
	Lookups   []byte // JSON object by lookup name
	Keys      []byte // JSON object by key id
	LoadError string // "" after a good load
}

// RecordStatus writes the instance's row of custinfo.status.
func (s *Store) RecordStatus(ctx context.Context, st Status) error {
	err := s.q.RecordStatus(ctx, dbsqlc.RecordStatusParams{
		Instance:  st.Instance,
		Host:      st.Host,
		Pid:       int32(st.PID),
		StartedAt: st.StartedAt,
		LoadedAt:  st.LoadedAt,
		CheckedAt: st.CheckedAt,
		LoadError: ptr(st.LoadError),
		Lookups:   st.Lookups,
		Keys:      st.Keys,
	})
	if err != nil {
		return fmt.Errorf("record status of %q: %w", st.Instance, err)
	}
	return nil
}

// RecordStopped marks the instance's row of custinfo.status as stopped at.
func (s *Store) RecordStopped(ctx context.Context, instance string, at time.Time) error {
	if _, err := s.q.RecordStopped(ctx, dbsqlc.RecordStoppedParams{Instance: instance, StoppedAt: &at}); err != nil {
		return fmt.Errorf("record %q stopped: %w", instance, err)
	}
	return nil
}
