-- name: ListLookups :many
SELECT name, source, order_by, enabled, allowed_networks, description
FROM custinfo.lookups
ORDER BY name;

-- name: ListLookupParams :many
SELECT lookup, field, source_column, match, required, region_field, default_region
FROM custinfo.lookup_params
ORDER BY lookup, field;

-- name: ListLookupResults :many
SELECT lookup, field, source_column, position
FROM custinfo.lookup_results
ORDER BY lookup, position, field;

-- name: ListAPIKeys :many
SELECT id, lookup, secret, label, schemes, created_at, expires_at, revoked_at
FROM custinfo.api_keys
ORDER BY id;
