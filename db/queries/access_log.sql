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

-- name: AccessLogEntryStored :one
-- Reports whether the row of one entry exists: after a COPY whose commit was
-- not acknowledged, audit.Writer asks about the batch's first entry before
-- writing the batch again (COPY stores all rows or none). The index on at
-- finds it; request_id, lookup, status and latency tell it from its
-- neighbours.
SELECT EXISTS (
    SELECT 1 FROM custinfo.access_log
    WHERE at = @at AND request_id = @request_id AND lookup = @lookup
      AND status = @status AND latency_us = @latency_us
) AS stored;
