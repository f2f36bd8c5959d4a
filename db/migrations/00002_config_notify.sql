-- Any change to the configuration tables notifies the channel custinfo_config,
-- so running servers reload within a second of the COMMIT.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION custinfo.notify_config_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('custinfo_config', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION custinfo.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER lookups_touch BEFORE UPDATE ON custinfo.lookups
    FOR EACH ROW EXECUTE FUNCTION custinfo.touch_updated_at();

CREATE TRIGGER lookups_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custinfo.lookups
    FOR EACH STATEMENT EXECUTE FUNCTION custinfo.notify_config_change();
CREATE TRIGGER lookup_params_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custinfo.lookup_params
    FOR EACH STATEMENT EXECUTE FUNCTION custinfo.notify_config_change();
CREATE TRIGGER lookup_results_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custinfo.lookup_results
    FOR EACH STATEMENT EXECUTE FUNCTION custinfo.notify_config_change();
CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custinfo.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION custinfo.notify_config_change();

-- +goose Down
DROP TRIGGER api_keys_notify ON custinfo.api_keys;
DROP TRIGGER lookup_results_notify ON custinfo.lookup_results;
DROP TRIGGER lookup_params_notify ON custinfo.lookup_params;
DROP TRIGGER lookups_notify ON custinfo.lookups;
DROP TRIGGER lookups_touch ON custinfo.lookups;
DROP FUNCTION custinfo.touch_updated_at();
DROP FUNCTION custinfo.notify_config_change();
