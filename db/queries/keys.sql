-- name: InsertAPIKey :one
INSERT INTO custinfo.api_keys (lookup, secret, label, schemes, expires_at)
VALUES (sqlc.narg('lookup'), @secret, @label, @schemes, sqlc.narg('expires_at'))
RETURNING id;

-- name: RevokeAPIKey :execrows
UPDATE custinfo.api_keys
SET revoked_at = now()
WHERE id = @id AND revoked_at IS NULL;

-- name: LookupExists :one
SELECT EXISTS (SELECT 1 FROM custinfo.lookups WHERE name = @name);

-- name: KeysLastUsed :many
-- One index probe per key on access_log (key_id, at).
SELECT k.id AS key_id, l.at AS last_used
FROM custinfo.api_keys k
CROSS JOIN LATERAL (
    SELECT a.at FROM custinfo.access_log a
    WHERE a.key_id = k.id
    ORDER BY a.at DESC
    LIMIT 1
) l;
