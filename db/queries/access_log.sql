-- name: InsertAccessLog :copyfrom
-- Batched by audit.Writer through COPY; id is generated.
INSERT INTO custinfo.access_log (
    at, request_id, lookup, key_id, client_ip, code, status, latency_us,
    query_masked, query_hash, matches
) VALUES (
    @at, @request_id, @lookup, @key_id, @client_ip, @code, @status, @latency_us,
    @query_masked, @query_hash, @matches
);

-- name: CurrentTransactionID :one
-- The id of the transaction an access-log batch is written in, asked for
-- before the COPY: if the answer to COMMIT is lost, TransactionStatus tells
-- whether the batch was stored.
SELECT pg_current_xact_id()::text AS xid;

-- name: TransactionStatus :one
-- committed, aborted or in progress; empty for an id too old to know.
SELECT coalesce(pg_xact_status(sqlc.arg(xid)::text::xid8), '')::text AS status;

-- name: EnsureAccessLogPartitions :one
-- Creates the daily partitions of custinfo.access_log from first_day to
-- last_day that do not exist yet, draining the default partition; returns
-- how many it created.
SELECT custinfo.access_log_ensure_partitions(@first_day::date, @last_day::date)::integer AS created;
