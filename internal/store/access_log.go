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
