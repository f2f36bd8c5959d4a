-- Keys are at least 16 characters and not one character repeated, and no
-- error about a row of custinfo.api_keys ever shows its key. The CHECK
-- constraints of 00001 printed the whole row, secret included, in their
-- DETAIL ("Failing row contains ..."), to psql and to the server log; so did
-- a NOT NULL violation of any column. A trigger that checks the same rules
-- first and raises fixed messages replaces them. Keys stored before this
-- migration are left alone (revoking one still works); serve warns about a
-- weak active key at start. The Go side of the rule is
-- signature.CheckKeyStrength.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION custinfo.api_keys_check() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Never put NEW.secret, nor a row holding it, into a message, DETAIL or HINT.
    IF NEW.id IS NULL OR NEW.label IS NULL OR NEW.schemes IS NULL OR NEW.created_at IS NULL THEN
        RAISE EXCEPTION 'custinfo.api_keys: id, label, schemes and created_at may not be NULL'
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF NOT (cardinality(NEW.schemes) > 0 AND NEW.schemes <@ ARRAY['body', 'uri_body']) THEN
        RAISE EXCEPTION 'custinfo.api_keys: schemes must name body, uri_body or both'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_schemes_valid';
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.secret IS NOT DISTINCT FROM OLD.secret THEN
        RETURN NEW; -- revoking or relabelling a key stored before this rule
    END IF;
    IF NEW.secret IS NULL OR NEW.secret = '' OR NEW.secret <> btrim(NEW.secret, E' \t\r\n') THEN
        RAISE EXCEPTION 'custinfo.api_keys: the key is empty or has white space around it'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_secret_trimmed',
                  HINT = 'Paste exactly the key the helpdesk shows, or add it with custinfo keys add.';
    END IF;
    IF char_length(NEW.secret) < 16 OR NEW.secret = repeat(left(NEW.secret, 1), char_length(NEW.secret)) THEN
        RAISE EXCEPTION 'custinfo.api_keys: the key is too weak: a key needs at least 16 characters, not all the same'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_secret_strength',
                  HINT = 'Generate a new key in the helpdesk, or use custinfo keys add --generate.';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER api_keys_check BEFORE INSERT OR UPDATE ON custinfo.api_keys
    FOR EACH ROW EXECUTE FUNCTION custinfo.api_keys_check();
ALTER TABLE custinfo.api_keys DROP CONSTRAINT api_keys_secret_nonempty;
ALTER TABLE custinfo.api_keys DROP CONSTRAINT api_keys_secret_trimmed;
ALTER TABLE custinfo.api_keys DROP CONSTRAINT api_keys_schemes_valid;

-- +goose Down
ALTER TABLE custinfo.api_keys ADD CONSTRAINT api_keys_schemes_valid CHECK (cardinality(schemes) > 0 AND schemes <@ ARRAY['body', 'uri_body']);
ALTER TABLE custinfo.api_keys ADD CONSTRAINT api_keys_secret_trimmed CHECK (secret = btrim(secret, E' \t\r\n'));
ALTER TABLE custinfo.api_keys ADD CONSTRAINT api_keys_secret_nonempty CHECK (secret <> '');
DROP TRIGGER api_keys_check ON custinfo.api_keys;
DROP FUNCTION custinfo.api_keys_check();
