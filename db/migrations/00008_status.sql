-- The running servers' own view of the configuration, in SQL: after every
-- load each instance records what it loaded, so an admin in psql sees what
-- the servers think (SELECT * FROM custinfo.status) without reading logs.

-- +goose Up
CREATE TABLE custinfo.status (
    instance   text PRIMARY KEY,
    host       text NOT NULL DEFAULT '',
    pid        integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL,
    loaded_at  timestamptz NULL,
    checked_at timestamptz NOT NULL,
    load_error text NULL,
    lookups    jsonb NOT NULL DEFAULT '{}',
    keys       jsonb NOT NULL DEFAULT '{}',
    stopped_at timestamptz NULL
);
COMMENT ON TABLE custinfo.status IS 'One row per serve instance, written after every configuration load: what it loaded and what it thinks of it.';
COMMENT ON COLUMN custinfo.status.instance IS 'The instance''s name: --instance, by default host:pid.';
COMMENT ON COLUMN custinfo.status.loaded_at IS 'When the configuration now serving was loaded.';
COMMENT ON COLUMN custinfo.status.checked_at IS 'The last load attempt, good or not (every reload interval at least).';
COMMENT ON COLUMN custinfo.status.load_error IS 'Why the last load attempt failed (the previous configuration keeps serving); NULL after a good load.';
COMMENT ON COLUMN custinfo.status.lookups IS 'Per lookup name: {"state": "ok"|"broken"|"disabled", "problems": [...]}.';
COMMENT ON COLUMN custinfo.status.keys IS 'Per key id: {"lookup", "label", "state", "last_used"}; last_used is the last request this instance verified with the key since it started.';
COMMENT ON COLUMN custinfo.status.stopped_at IS 'Set when the instance shut down cleanly; rows of stopped instances may be deleted.';

-- +goose Down
DROP TABLE custinfo.status;
