package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/custinfo/custinfo/internal/audit"
	"github.com/custinfo/custinfo/internal/store/dbsqlc"
)

// WriteAccessLog stores entries in custinfo.access_log with one COPY: all of
// them or none. An error for the rows' content (a data or constraint error,
// which no retry fixes) wraps audit.ErrRejected. When the Store's database
// can begin transactions (a pool or a connection), the COPY runs in one whose
// id is read first, and a COMMIT whose answer is lost returns an
// *audit.UncertainError with that id, for AccessLogWriteStatus. It suits
// audit.Config.WriteFunc.
func (s *Store) WriteAccessLog(ctx context.Context, entries []audit.Entry) error {
	rows := make([]dbsqlc.InsertAccessLogParams, len(entries))
	for i, e := range entries {
		rows[i] = accessLogRow(e)
	}
	b, ok := s.db.(txBeginner)
	if _, inTx := s.db.(pgx.Tx); !ok || inTx {
		// Already in the caller's transaction (or none can begin): its
		// commit is the caller's.
		_, err := s.q.InsertAccessLog(ctx, rows)
		return copyError(err)
	}
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin the access-log write: %w", err)
	}
	defer func() {
		// A no-op after COMMIT; after a failure it returns the connection
		// clean, or closes it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	q := s.q.WithTx(tx)
	xid, err := q.CurrentTransactionID(ctx)
	if err != nil {
		return fmt.Errorf("begin the access-log write: read the transaction id: %w", err)
	}
	if _, err := q.InsertAccessLog(ctx, rows); err != nil {
		return copyError(err)
	}
	if err := tx.Commit(ctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			// The server answered: the transaction did not commit.
			return fmt.Errorf("commit the access-log write: %w", err)
		}
		return &audit.UncertainError{Receipt: xid, Err: fmt.Errorf("commit the access-log write (transaction %s): %w", xid, err)}
	}
	return nil
}

// txBeginner is a database that can begin a transaction (pgxpool.Pool,
// pgx.Conn; a pgx.Tx too, with a savepoint, which WriteAccessLog does not use).
type txBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// copyError wraps the error of the access log's COPY, marking those for the
// rows' content with audit.ErrRejected.
func copyError(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")) {
		return fmt.Errorf("copy into custinfo.access_log: %w: %w", audit.ErrRejected, err)
	}
	return fmt.Errorf("copy into custinfo.access_log: %w", err)
}

// AccessLogWriteStatus reports what became of the access-log write that
// failed with an *audit.UncertainError carrying receipt (a transaction id).
// It suits audit.Config.StatusFunc.
func (s *Store) AccessLogWriteStatus(ctx context.Context, receipt string) (audit.TxStatus, error) {
	status, err := s.q.TransactionStatus(ctx, receipt)
	if err != nil {
		return 0, fmt.Errorf("ask the status of transaction %s: %w", receipt, err)
	}
	switch status {
	case "committed":
		return audit.TxCommitted, nil
	case "aborted":
		return audit.TxAborted, nil
	case "in progress":
		return audit.TxInProgress, nil
	default:
		return 0, fmt.Errorf("status of transaction %s: %q", receipt, status)
	}
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

// AccessLogPartition is one partition of custinfo.access_log.
type AccessLogPartition struct {
	Name string
	// From is the first instant it holds; nil for a partition from MINVALUE
	// (custinfo.access_log_legacy) or the default.
	From *time.Time
	// To is the instant after the last it holds; nil for the default.
	To *time.Time
	// Default is the partition of rows that no other partition takes.
	Default bool
}

// AccessLogPartitions lists the partitions of custinfo.access_log in the
// order of their bounds, the default last.
func (s *Store) AccessLogPartitions(ctx context.Context) ([]AccessLogPartition, error) {
	// Not through sqlc, which does not see the columns of a set-returning
	// function defined in a migration.
	rows, err := s.db.Query(ctx, `SELECT name, lower_bound, upper_bound, is_default FROM custinfo.access_log_partitions()`)
	if err != nil {
		return nil, fmt.Errorf("list access-log partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccessLogPartition, error) {
		var p AccessLogPartition
		err := r.Scan(&p.Name, &p.From, &p.To, &p.Default)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list access-log partitions: %w", err)
	}
	return parts, nil
}

// MaxPartitionDays is the most days EnsureAccessLogPartitions covers in one call.
const MaxPartitionDays = 400

// EnsureAccessLogPartitions makes sure custinfo.access_log has a partition
// for every UTC day from first to last (dates; the time of day is ignored),
// and for every day of the year before first whose rows wait in the default
// partition; those rows move into their day's partition. It returns how many
// partitions it created. Concurrent calls, from several servers, queue in
// the database and create each partition once.
func (s *Store) EnsureAccessLogPartitions(ctx context.Context, first, last time.Time) (int, error) {
	f, l := utcDate(first), utcDate(last)
	if l.Before(f) || l.Sub(f) >= MaxPartitionDays*24*time.Hour {
		return 0, fmt.Errorf("ensure access-log partitions: %s to %s: want at most %d days, in order", f.Format(time.DateOnly), l.Format(time.DateOnly), MaxPartitionDays)
	}
	n, err := s.q.EnsureAccessLogPartitions(ctx, dbsqlc.EnsureAccessLogPartitionsParams{
		FirstDay: pgtype.Date{Time: f, Valid: true},
		LastDay:  pgtype.Date{Time: l, Valid: true},
	})
	if err != nil {
		return 0, fmt.Errorf("ensure access-log partitions %s to %s: %w", f.Format(time.DateOnly), l.Format(time.DateOnly), err)
	}
	return int(n), nil
}

// utcDate is midnight UTC of t's UTC day.
func utcDate(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// AccessLogPrune is what PruneAccessLog removes, or would remove.
type AccessLogPrune struct {
	// Dropped are the partitions wholly older than the cutoff, detached and
	// dropped; with their rows (counted only by a dry run).
	Dropped     []string
	DroppedRows int64
	// Deleted is the number of rows older than the cutoff deleted from the
	// partitions that are not a range of days (custinfo.access_log_legacy,
	// custinfo.access_log_default).
	Deleted int64
}

// PruneAccessLog removes access-log rows older than before. A partition
// wholly older is detached and dropped, each in a transaction of its own
// that waits at most lockTimeout for its lock (writers queue behind it
// meanwhile) and is tried again a few times. Rows of a daily partition
// that straddles before stay until all of that day is older: retention is
// kept to the day. From the partitions that are not a day
// (custinfo.access_log_legacy, the rows from before partitioning, and
// custinfo.access_log_default), the rows older than before are deleted,
// at most batch per statement; progress, when set, is told the running
// total of deleted rows. dryRun only counts. It stops early when ctx ends.
func (s *Store) PruneAccessLog(ctx context.Context, before time.Time, batch int, dryRun bool, progress func(deleted int64)) (AccessLogPrune, error) {
	var res AccessLogPrune
	if batch <= 0 || batch > math.MaxInt32 {
		return res, fmt.Errorf("prune access log: batch size %d out of range", batch)
	}
	parts, err := s.AccessLogPartitions(ctx)
	if err != nil {
		return res, fmt.Errorf("prune access log: %w", err)
	}
	for _, p := range parts {
		ident := pgx.Identifier{"custinfo", p.Name}.Sanitize()
		switch {
		case !p.Default && p.To != nil && !p.To.After(before):
			if dryRun {
				var n int64
				if err := s.db.QueryRow(ctx, "SELECT count(*) FROM "+ident).Scan(&n); err != nil {
					return res, fmt.Errorf("prune access log: count %s: %w", p.Name, err)
				}
				res.DroppedRows += n
			} else if err := s.dropAccessLogPartition(ctx, ident); err != nil {
				return res, fmt.Errorf("prune access log: drop %s: %w", p.Name, err)
			}
			res.Dropped = append(res.Dropped, p.Name)
		case p.Default || p.From == nil:
			n, err := s.deleteAccessLogBefore(ctx, ident, before, batch, dryRun, func(n int64) {
				if progress != nil {
					progress(res.Deleted + n)
				}
			})
			res.Deleted += n
			if err != nil {
				return res, fmt.Errorf("prune access log: %s: %w", p.Name, err)
			}
		}
	}
	return res, nil
}

// partitionLockTimeout bounds how long dropping one partition waits for its
// locks, during which new writes queue behind it.
const partitionLockTimeout = 2 * time.Second

// dropAccessLogPartition detaches and drops one partition in a transaction
// of its own, trying again a few times when its locks are not granted
// within partitionLockTimeout (a long query on the access log holds them).
func (s *Store) dropAccessLogPartition(ctx context.Context, ident string) error {
	b, ok := s.db.(txBeginner)
	if !ok {
		return errors.New("the store's database cannot begin a transaction")
	}
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		err = pgx.BeginFunc(ctx, b, func(tx pgx.Tx) error {
			stmt := fmt.Sprintf("SET LOCAL lock_timeout = %d; ALTER TABLE custinfo.access_log DETACH PARTITION %s; DROP TABLE %s",
				partitionLockTimeout.Milliseconds(), ident, ident)
			_, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
			return err
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "55P03" { // lock_not_available
			return err
		}
	}
	return err
}

// deleteAccessLogBefore deletes the rows of one partition older than
// before, at most batch per statement (each its own transaction, so locks
// stay short), or counts them when dryRun.
func (s *Store) deleteAccessLogBefore(ctx context.Context, ident string, before time.Time, batch int, dryRun bool, progress func(int64)) (int64, error) {
	if dryRun {
		var n int64
		err := s.db.QueryRow(ctx, "SELECT count(*) FROM "+ident+" WHERE at < $1", before).Scan(&n)
		return n, err
	}
	stmt := "DELETE FROM " + ident + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM " + ident + " WHERE at < $1 ORDER BY at LIMIT $2))"
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := s.db.Exec(ctx, stmt, before, batch)
		if err != nil {
			return total, err
		}
		n := tag.RowsAffected()
		total += n
		if n > 0 {
			progress(total)
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}
