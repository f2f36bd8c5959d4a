package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/store/dbsqlc"
)

// WriteAccessLog stores entries in custinfo.access_log with one COPY: all of
// them or none. An error for the rows' content (a data or constraint error,
// which no retry fixes) wraps audit.ErrRejected. It suits
// audit.Config.WriteFunc.
func (s *Store) WriteAccessLog(ctx context.Context, entries []audit.Entry) error {
	rows := make([]dbsqlc.InsertAccessLogParams, len(entries))
	for i, e := range entries {
		rows[i] = accessLogRow(e)
	}
	if _, err := s.q.InsertAccessLog(ctx, rows); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")) {
			return fmt.Errorf("copy into custinfo.access_log: %w: %w", audit.ErrRejected, err)
		}
		return fmt.Errorf("copy into custinfo.access_log: %w", err)
	}
	return nil
}

// AccessLogStored reports whether e's row is in custinfo.access_log, found by
// its time, request id, lookup, status and latency. It suits
// audit.Config.StoredFunc.
func (s *Store) AccessLogStored(ctx context.Context, e audit.Entry) (bool, error) {
	r := accessLogRow(e)
	stored, err := s.q.AccessLogEntryStored(ctx, dbsqlc.AccessLogEntryStoredParams{
		At: r.At, RequestID: r.RequestID, Lookup: r.Lookup, Status: r.Status, LatencyUs: r.LatencyUs,
	})
	if err != nil {
		return false, fmt.Errorf("look for an access-log entry: %w", err)
	}
	return stored, nil
}

func accessLogRow(e audit.Entry) dbsqlc.InsertAccessLogParams {
	r := dbsqlc.InsertAccessLogParams{
		At:          e.At,
		RequestID:   e.RequestID,
		Lookup:      e.Lookup,
		Code:        e.Code,
		Status:      int32(min(max(e.Status, 0), math.MaxInt32)),
		LatencyUs:   e.Latency.Microseconds(),
		QueryMasked: e.QueryMasked,
		QueryHash:   e.QueryHash,
	}
	if e.KeyID != 0 {
		r.KeyID = &e.KeyID
	}
	if e.ClientIP.IsValid() {
		ip := e.ClientIP
		r.ClientIp = &ip
	}
	if e.Queried {
		m := int32(min(max(e.Matches, 0), math.MaxInt32))
		r.Matches = &m
	}
	return r
}

// PruneAccessLog deletes access-log rows older than before, at most batch
// rows per statement (each its own transaction, so locks stay short), and
// returns how many went. progress, when set, is told the running total after
// each statement. It stops early when ctx ends.
func (s *Store) PruneAccessLog(ctx context.Context, before time.Time, batch int, progress func(deleted int64)) (int64, error) {
	if batch <= 0 || batch > math.MaxInt32 {
		return 0, fmt.Errorf("prune access log: batch size %d out of range", batch)
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune access log: %w", err)
		}
		n, err := s.q.PruneAccessLog(ctx, dbsqlc.PruneAccessLogParams{Before: before, BatchSize: int32(batch)})
		if err != nil {
			return total, fmt.Errorf("prune access log: %w", err)
		}
		total += n
		if progress != nil && n > 0 {
			progress(total)
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}

// CountAccessLogBefore returns the number of access-log rows older than before.
func (s *Store) CountAccessLogBefore(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.q.CountAccessLogBefore(ctx, before)
	if err != nil {
		return 0, fmt.Errorf("count access log: %w", err)
	}
	return n, nil
}
