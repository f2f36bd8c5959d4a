-- name: InsertAccessLog :copyfrom
-- Batched by audit.Writer through COPY; id is generated.
INSERT INTO custinfo.access_log (
    at, request_id, lookup, key_id, client_ip, code, status, latency_us,
    query_masked, query_hash, matches
) VALUES (
    @at, @request_id, @lookup, @key_id, @client_ip, @code, @status, @latency_us,
    @query_masked, @query_hash, @matches
);

-- name: PruneAccessLog :execrows
-- Deletes at most batch_size rows older than before, oldest first, through
-- the index on at; callers repeat until it deletes fewer than batch_size.
DELETE FROM custinfo.access_log
WHERE id IN (
    SELECT a.id FROM custinfo.access_log a
    WHERE a.at < @before
    ORDER BY a.at
    LIMIT @batch_size
);

-- name: CountAccessLogBefore :one
SELECT count(*) FROM custinfo.access_log WHERE at < @before;

-- name: CurrentTransactionID :one
-- The id of the transaction an access-log batch is written in, asked for
-- before the COPY: if the answer to COMMIT is lost, TransactionStatus tells
-- whether the batch was stored.
SELECT pg_current_xact_id()::text AS xid;

-- name: TransactionStatus :one
-- committed, aborted or in progress; empty for an id too old to know.
SELECT coalesce(pg_xact_status(sqlc.arg(xid)::text::xid8), '')::text AS status;
