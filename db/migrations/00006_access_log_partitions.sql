-- custinfo.access_log becomes a table partitioned by day (UTC) on at.
--
-- At 100 lookups/s the log gains about 8.6 million rows a day, 3 billion a
-- year. A day is about 3.4 GB with its indexes, so a year is some 370
-- partitions: few enough for PostgreSQL to plan and route, small enough that
-- retention is kept to the day and that dropping one is instant. (A month
-- would be 260 million rows, 100 GB, kept up to a month beyond retention.)
--
-- The rows already stored stay where they are: the old table becomes the
-- partition custinfo.access_log_legacy for everything before the first day
-- after the migration, so no row is copied. `custinfo access-log prune`
-- deletes its old rows in batches, as before, and drops it once all of it is
-- older than the retention.
--
-- custinfo.access_log_default catches a row for which no partition exists
-- (partition maintenance lagging, a clock far off), so no row is refused.
-- access_log_ensure_partitions moves such rows into the partition it creates
-- for their day (serve calls it hourly); prune deletes in batches those it
-- leaves (more than a year before today) once they pass the retention.
--
-- A new installation has no old rows: no legacy partition, only days.

-- +goose Up
ALTER TABLE custinfo.access_log RENAME TO access_log_legacy;
ALTER TABLE custinfo.access_log_legacy RENAME CONSTRAINT access_log_pkey TO access_log_legacy_pkey;
ALTER INDEX custinfo.access_log_at_idx RENAME TO access_log_legacy_at_idx;
ALTER INDEX custinfo.access_log_query_hash_idx RENAME TO access_log_legacy_query_hash_idx;
ALTER INDEX custinfo.access_log_key_id_idx RENAME TO access_log_legacy_key_id_idx;
ALTER SEQUENCE custinfo.access_log_id_seq RENAME TO access_log_legacy_id_seq;

CREATE TABLE custinfo.access_log (
    id           bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
    at           timestamptz NOT NULL,
    request_id   text NOT NULL,
    lookup       text NOT NULL,
    key_id       bigint NULL,
    client_ip    inet NULL,
    code         text NOT NULL,
    status       integer NOT NULL,
    latency_us   bigint NOT NULL,
    query_masked text NOT NULL DEFAULT '',
    query_hash   text NOT NULL DEFAULT '',
    matches      integer NULL
) PARTITION BY RANGE (at);
COMMENT ON TABLE custinfo.access_log IS 'One row per lookup request: who asked for what, when, from where, and the outcome. Query values are masked; query_hash is a keyed hash for audits. Partitioned by day (UTC) on at: custinfo.access_log_ensure_partitions creates the days ahead, custinfo access-log prune drops the old ones.';
-- What an auditor asks: a time range, every lookup of one number, every
-- request of one key. Each partition gets these indexes.
CREATE INDEX access_log_at_idx ON custinfo.access_log (at);
CREATE INDEX access_log_query_hash_idx ON custinfo.access_log (query_hash, at) WHERE query_hash <> '';
CREATE INDEX access_log_key_id_idx ON custinfo.access_log (key_id, at) WHERE key_id IS NOT NULL;

-- The ids continue the old numbering, so they stay unique across partitions;
-- whoever could use or read the old table and its sequence can use the new.
SELECT setval(pg_get_serial_sequence('custinfo.access_log', 'id'), last_value, is_called)
FROM custinfo.access_log_legacy_id_seq;
-- +goose StatementBegin
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, a.grantee::regrole AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'custinfo.access_log_legacy'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON custinfo.access_log TO %s', g.privilege_type, g.grantee);
    END LOOP;
    FOR g IN
        SELECT a.privilege_type, a.grantee::regrole AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'custinfo.access_log_legacy_id_seq'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON SEQUENCE custinfo.access_log_id_seq TO %s', g.privilege_type, g.grantee);
    END LOOP;
END
$$;
-- +goose StatementEnd
ALTER TABLE custinfo.access_log_legacy ALTER COLUMN id DROP IDENTITY;

CREATE TABLE custinfo.access_log_default PARTITION OF custinfo.access_log DEFAULT;
COMMENT ON TABLE custinfo.access_log_default IS 'Rows of days that have no partition yet; custinfo.access_log_ensure_partitions moves them into the partition it creates for their day.';

-- The old rows: everything before the next UTC midnight. A row stamped later
-- than that (a clock that was ahead) moves to the default partition. A new
-- installation has no old rows and no legacy partition.
-- +goose StatementBegin
DO $$
DECLARE
    cutover timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day';
BEGIN
    WITH moved AS (
        DELETE FROM custinfo.access_log_legacy WHERE at >= cutover RETURNING *
    )
    INSERT INTO custinfo.access_log_default OVERRIDING SYSTEM VALUE SELECT * FROM moved;
    IF EXISTS (SELECT FROM custinfo.access_log_legacy) THEN
        EXECUTE format('ALTER TABLE custinfo.access_log ATTACH PARTITION custinfo.access_log_legacy FOR VALUES FROM (MINVALUE) TO (%L)', cutover);
        COMMENT ON TABLE custinfo.access_log_legacy IS 'Access-log rows written before the log was partitioned by day; custinfo access-log prune deletes them as they pass the retention, and drops the table when all have.';
    ELSE
        DROP TABLE custinfo.access_log_legacy;
    END IF;
END
$$;
-- +goose StatementEnd

-- access_log_ensure_partitions creates the daily partitions from first_day to
-- last_day (UTC dates, at most 400 days apart, none more than 400 days from
-- today, so that a caller cannot fill the catalog), skipping days that already have
-- one, and returns how many it created. It drains the default partition too:
-- a day of the year before first_day that has rows waiting there gets its
-- partition, and the rows of every day it creates move into it. It runs as
-- the owner of the access log, so serve may call it without owning any
-- table; concurrent callers queue on an advisory lock.
-- +goose StatementBegin
CREATE FUNCTION custinfo.access_log_ensure_partitions(first_day date, last_day date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO'
AS $$
DECLARE
    day     date;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    created integer := 0;
BEGIN
    -- Two tests: SQL does not promise the order in which OR evaluates, and
    -- subtracting an infinite date fails.
    IF first_day IS NULL OR last_day IS NULL OR NOT isfinite(first_day) OR NOT isfinite(last_day) THEN
        RAISE EXCEPTION 'access_log_ensure_partitions(%, %): want two finite dates', first_day, last_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF first_day < current_date - 400 OR last_day > current_date + 400
       OR last_day < first_day OR last_day - first_day >= 400 THEN
        RAISE EXCEPTION 'access_log_ensure_partitions(%, %): want first_day <= last_day, at most 400 days apart, within 400 days of today', first_day, last_day
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('custinfo.access_log partitions'));
    FOR day IN
        SELECT d::date FROM generate_series(first_day, last_day, interval '1 day') d
        UNION
        SELECT DISTINCT (a.at AT TIME ZONE 'UTC')::date FROM custinfo.access_log_default a
        WHERE a.at >= (first_day - 366)::timestamp AT TIME ZONE 'UTC' AND a.at < (last_day + 1)::timestamp AT TIME ZONE 'UTC'
        ORDER BY 1
    LOOP
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (
            SELECT FROM custinfo.access_log_partitions() p
            WHERE NOT p.is_default
              AND (p.lower_bound IS NULL OR p.lower_bound < hi)
              AND (p.upper_bound IS NULL OR p.upper_bound > lo));
        part := 'access_log_' || to_char(day, 'YYYYMMDD');
        EXECUTE format('CREATE TABLE custinfo.%I (LIKE custinfo.access_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM custinfo.access_log_default WHERE at >= $1 AND at < $2 RETURNING *)
                        INSERT INTO custinfo.%I SELECT * FROM moved', part) USING lo, hi;
        EXECUTE format('ALTER TABLE custinfo.access_log ATTACH PARTITION custinfo.%I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION custinfo.access_log_ensure_partitions(date, date) FROM PUBLIC;

-- access_log_partitions lists the partitions of custinfo.access_log with
-- their bounds: lower_bound NULL for MINVALUE, both NULL for the default.
-- +goose StatementBegin
CREATE FUNCTION custinfo.access_log_partitions()
RETURNS TABLE (name text, lower_bound timestamptz, upper_bound timestamptz, is_default boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.relname::text,
           substring(b.expr FROM 'FROM \(''([^'']*)''\)')::timestamptz,
           substring(b.expr FROM 'TO \(''([^'']*)''\)')::timestamptz,
           b.expr = 'DEFAULT'
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b
    WHERE i.inhparent = 'custinfo.access_log'::regclass
    ORDER BY 3 NULLS LAST, 1
$$;
-- +goose StatementEnd

-- The first week of days.
SELECT custinfo.access_log_ensure_partitions((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 7);

-- +goose Down
-- Every row goes back into one unpartitioned table, with the identity
-- continuing and the grants kept.
DROP FUNCTION custinfo.access_log_ensure_partitions(date, date);
DROP FUNCTION custinfo.access_log_partitions();
CREATE TABLE custinfo.access_log_unpartitioned (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    at           timestamptz NOT NULL,
    request_id   text NOT NULL,
    lookup       text NOT NULL,
    key_id       bigint NULL,
    client_ip    inet NULL,
    code         text NOT NULL,
    status       integer NOT NULL,
    latency_us   bigint NOT NULL,
    query_masked text NOT NULL DEFAULT '',
    query_hash   text NOT NULL DEFAULT '',
    matches      integer NULL
);
INSERT INTO custinfo.access_log_unpartitioned OVERRIDING SYSTEM VALUE SELECT * FROM custinfo.access_log ORDER BY id;
SELECT setval(pg_get_serial_sequence('custinfo.access_log_unpartitioned', 'id'), last_value, is_called)
FROM custinfo.access_log_id_seq;
-- +goose StatementBegin
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT a.privilege_type, a.grantee::regrole AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'custinfo.access_log'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON custinfo.access_log_unpartitioned TO %s', g.privilege_type, g.grantee);
    END LOOP;
    FOR g IN
        SELECT a.privilege_type, a.grantee::regrole AS grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'custinfo.access_log_id_seq'::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON SEQUENCE %s TO %s', g.privilege_type,
                       pg_get_serial_sequence('custinfo.access_log_unpartitioned', 'id'), g.grantee);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP TABLE custinfo.access_log;
ALTER TABLE custinfo.access_log_unpartitioned RENAME TO access_log;
ALTER SEQUENCE custinfo.access_log_unpartitioned_id_seq RENAME TO access_log_id_seq;
ALTER TABLE custinfo.access_log ADD CONSTRAINT access_log_pkey PRIMARY KEY (id);
CREATE INDEX access_log_at_idx ON custinfo.access_log (at);
CREATE INDEX access_log_query_hash_idx ON custinfo.access_log (query_hash, at) WHERE query_hash <> '';
CREATE INDEX access_log_key_id_idx ON custinfo.access_log (key_id, at) WHERE key_id IS NOT NULL;
COMMENT ON TABLE custinfo.access_log IS 'One row per lookup request: who asked for what, when, from where, and the outcome. Query values are masked; query_hash is a keyed hash for audits.';
