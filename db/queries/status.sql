-- name: RecordStatus :exec
-- A good load replaces what the instance loaded; a failed one (lookups NULL)
-- keeps it and records the error.
INSERT INTO custinfo.status (instance, host, pid, started_at, loaded_at, checked_at, load_error, lookups, keys)
VALUES (@instance, @host, @pid, @started_at, sqlc.narg('loaded_at'), @checked_at, sqlc.narg('load_error'),
        coalesce(sqlc.narg('lookups')::jsonb, '{}'), coalesce(sqlc.narg('keys')::jsonb, '{}'))
ON CONFLICT (instance) DO UPDATE SET
    host       = EXCLUDED.host,
    pid        = EXCLUDED.pid,
    started_at = EXCLUDED.started_at,
    loaded_at  = coalesce(EXCLUDED.loaded_at, custinfo.status.loaded_at),
    checked_at = EXCLUDED.checked_at,
    load_error = EXCLUDED.load_error,
    lookups    = CASE WHEN sqlc.narg('lookups')::jsonb IS NULL THEN custinfo.status.lookups ELSE EXCLUDED.lookups END,
    keys       = CASE WHEN sqlc.narg('keys')::jsonb IS NULL THEN custinfo.status.keys ELSE EXCLUDED.keys END,
    stopped_at = NULL;

-- name: RecordStopped :execrows
UPDATE custinfo.status SET stopped_at = @stopped_at WHERE instance = @instance;
