-- Mistakes in a mapping fail at the statement that makes them, not at the
-- next helpdesk call. A deferred constraint trigger on each mapping table
-- checks the written rows against the catalog when the transaction commits
-- (so a multi-statement setup, or a source created later in the same
-- transaction, is fine): the source exists and is a table or view outside the
-- sensitive schemas, every column exists, and each match mode fits its
-- column's type. The error names the lookup, says what exists instead and
-- gives a HINT.
--
-- The server checks the same things again whenever it loads the
-- configuration, which also catches a column dropped afterwards.
-- SET LOCAL custinfo.mapping_checks = off skips the checks for one
-- transaction (for a source that is created later, in another one).

-- +goose Up
-- +goose StatementBegin
-- edit_distance is the Levenshtein distance of a and b (case-sensitive),
-- bounded: strings longer than 100 characters count as entirely different.
CREATE FUNCTION custinfo.edit_distance(a text, b text) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    la integer := char_length(a);
    lb integer := char_length(b);
    prev integer[];
    cur integer[];
BEGIN
    IF la = 0 OR lb = 0 OR la > 100 OR lb > 100 THEN
        RETURN greatest(la, lb);
    END IF;
    prev := ARRAY(SELECT generate_series(0, lb));
    FOR i IN 1..la LOOP
        cur := ARRAY[i];
        FOR j IN 1..lb LOOP
            cur := cur || least(prev[j + 1] + 1, cur[j] + 1,
                                prev[j] + CASE WHEN substr(a, i, 1) = substr(b, j, 1) THEN 0 ELSE 1 END);
        END LOOP;
        prev := cur;
    END LOOP;
    RETURN prev[lb + 1];
END;
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION custinfo.edit_distance(text, text) IS 'Levenshtein distance, for the "did you mean" of the mapping checks.';

-- +goose StatementBegin
-- closest_name returns the candidate nearest to want (ignoring case), or NULL
-- when none is near enough to be a likely typo.
CREATE FUNCTION custinfo.closest_name(want text, candidates text[]) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT c
    FROM unnest(candidates) AS c,
         LATERAL (SELECT custinfo.edit_distance(lower(want), lower(c)) AS d) AS dist
    WHERE d <= CASE WHEN char_length(want) <= 3 THEN 1 WHEN char_length(want) <= 8 THEN 2 ELSE 3 END
    ORDER BY d, c
    LIMIT 1
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- sensitive_schema reports whether a lookup may not read from schema nsp:
-- custinfo's own tables hold the keys, the others are the system's.
CREATE FUNCTION custinfo.sensitive_schema(nsp text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT nsp IN ('custinfo', 'pg_catalog', 'information_schema', 'pg_toast')
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- mapping_source resolves a lookup's source as the server does: as PostgreSQL
-- reads it in a query (crm.customers, "CRM"."Customers"), else as the exact
-- name of a relation on the search path, else as exact "schema.name". It
-- returns the relation, or NULL with the problem and a hint.
CREATE FUNCTION custinfo.mapping_source(source text, OUT rel oid, OUT problem text, OUT hint text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    nsp text;
    relname text;
    kind "char";
    sch text;
    nam text;
    guess text;
BEGIN
    BEGIN
        rel := to_regclass(source)::oid;
    EXCEPTION WHEN invalid_name OR syntax_error OR invalid_parameter_value THEN
        rel := NULL;
    END;
    IF rel IS NULL THEN
        rel := to_regclass(quote_ident(source))::oid;
    END IF;
    IF rel IS NULL AND position('.' IN source) > 0 THEN
        rel := to_regclass(quote_ident(split_part(source, '.', 1)) || '.'
                           || quote_ident(substr(source, position('.' IN source) + 1)))::oid;
    END IF;
    IF rel IS NULL THEN
        problem := format('source "%s" does not exist', source);
        hint := 'Give a table or view, optionally schema-qualified (crm.customers); quote mixed-case names ("CRM"."Customers"). A source created later in the same transaction is fine.';
        IF position('.' IN source) > 0 THEN
            sch := btrim(split_part(source, '.', 1), '"');
            nam := btrim(substr(source, position('.' IN source) + 1), '"');
            SELECT n.nspname INTO nsp FROM pg_namespace n WHERE n.nspname IN (sch, lower(sch)) LIMIT 1;
            IF nsp IS NULL THEN
                guess := custinfo.closest_name(sch, ARRAY(
                    SELECT n.nspname::text FROM pg_namespace n
                    WHERE NOT custinfo.sensitive_schema(n.nspname) AND n.nspname NOT LIKE 'pg\_%'));
                problem := problem || format('; there is no schema "%s"', sch);
                IF guess IS NOT NULL THEN
                    problem := problem || format('; did you mean "%s"?', format('%I.%s', guess, nam));
                END IF;
                RETURN;
            END IF;
            guess := custinfo.closest_name(nam, ARRAY(
                SELECT c.relname::text FROM pg_class c
                WHERE c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = nsp) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')));
            IF guess IS NOT NULL THEN
                problem := problem || format('; did you mean "%s"?', format('%I.%I', nsp, guess));
            END IF;
        ELSE
            SELECT format('%I.%I', n.nspname, c.relname) INTO guess
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY (current_schemas(false)) AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND c.relname::text = custinfo.closest_name(source, ARRAY(
                    SELECT c2.relname::text FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
                    WHERE n2.nspname = ANY (current_schemas(false)) AND c2.relkind IN ('r', 'v', 'm', 'p', 'f')))
            ORDER BY array_position(current_schemas(false), n.nspname::text)
            LIMIT 1;
            IF guess IS NOT NULL THEN
                problem := problem || format('; did you mean "%s"?', guess);
            END IF;
        END IF;
        RETURN;
    END IF;
    SELECT n.nspname, c.relname, c.relkind INTO nsp, relname, kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    IF custinfo.sensitive_schema(nsp) THEN
        problem := format('source "%s" is in schema "%s", which lookups may not read', source, nsp);
        hint := 'Point the lookup at your own table, or at a view in a schema of your own.';
        rel := NULL;
    ELSIF kind NOT IN ('r', 'v', 'm', 'p', 'f') THEN
        problem := format('source "%s" is not a table or view (relkind %s)', source, kind);
        hint := 'Give a table or view; express joins and computed fields as a view.';
        rel := NULL;
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- mapping_column finds a column of rel as the server does: by its exact name,
-- by a double-quoted name, or by the name an unquoted identifier folds to.
-- It returns the column, or NULL with the problem and a hint.
CREATE FUNCTION custinfo.mapping_column(rel oid, col text, OUT attname text, OUT atttypid oid, OUT problem text, OUT hint text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    cols text[];
    want text := col;
    guess text;
    relname text;
BEGIN
    SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO cols
    FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
    IF col = ANY (cols) THEN
        attname := col;
    ELSIF char_length(col) >= 2 AND left(col, 1) = '"' AND right(col, 1) = '"' THEN
        want := replace(substr(col, 2, char_length(col) - 2), '""', '"');
        IF want = ANY (cols) THEN
            attname := want;
        END IF;
    ELSIF lower(col) = ANY (cols) THEN
        attname := lower(col);
    END IF;
    IF attname IS NOT NULL THEN
        SELECT a.atttypid INTO atttypid FROM pg_attribute a WHERE a.attrelid = rel AND a.attname = mapping_column.attname;
        RETURN;
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname) INTO relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    problem := format('column "%s" does not exist in %s', col, relname);
    guess := custinfo.closest_name(want, cols);
    IF guess IS NOT NULL THEN
        problem := problem || format('; did you mean "%s"?', guess);
    END IF;
    hint := format('The columns of %s are: %s.', relname,
                   coalesce(array_to_string(ARRAY(SELECT quote_ident(c) FROM unnest(cols) AS c), ', '), 'none'));
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- check_mapping is the deferred constraint trigger of the three mapping
-- tables. It re-reads the row as it is at commit (a later statement of the
-- transaction may have changed or deleted it) and raises the first problem.
CREATE FUNCTION custinfo.check_mapping() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    lk custinfo.lookups%ROWTYPE;
    src record;
    c record;
    pr custinfo.lookup_params%ROWTYPE;
    rs custinfo.lookup_results%ROWTYPE;
    lookup_name text;
    ob text;
    cat "char";
    typ text;
BEGIN
    IF coalesce(current_setting('custinfo.mapping_checks', true), '') IN ('off', 'false', '0') THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'lookups' THEN
        lookup_name := NEW.name;
    ELSE
        lookup_name := NEW.lookup;
    END IF;
    SELECT * INTO lk FROM custinfo.lookups WHERE name = lookup_name;
    IF NOT FOUND THEN
        RETURN NULL; -- deleted or renamed later in the transaction
    END IF;
    IF TG_TABLE_NAME = 'lookup_params' THEN
        SELECT * INTO pr FROM custinfo.lookup_params WHERE lookup = NEW.lookup AND field = NEW.field;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    ELSIF TG_TABLE_NAME = 'lookup_results' THEN
        SELECT * INTO rs FROM custinfo.lookup_results WHERE lookup = NEW.lookup AND field = NEW.field;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;

    src := custinfo.mapping_source(lk.source);
    IF src.rel IS NULL THEN
        RAISE EXCEPTION 'lookup "%": %', lk.name, src.problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', HINT = src.hint,
                  TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
    END IF;

    IF TG_TABLE_NAME = 'lookups' THEN
        ob := btrim(coalesce(lk.order_by, ''));
        IF upper(ob) LIKE '% DESC' THEN
            ob := btrim(left(ob, -5));
        ELSIF upper(ob) LIKE '% ASC' THEN
            ob := btrim(left(ob, -4));
        END IF;
        IF ob <> '' THEN
            c := custinfo.mapping_column(src.rel, ob);
            IF c.attname IS NULL THEN
                RAISE EXCEPTION 'lookup "%": order_by: %', lk.name, c.problem
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', HINT = c.hint,
                          TABLE = TG_TABLE_NAME, SCHEMA = TG_TABLE_SCHEMA;
            END IF;
        END IF;
        -- A new source must have the columns the params and results name.
        FOR pr IN SELECT * FROM custinfo.lookup_params WHERE lookup = lk.name AND match <> 'hint' ORDER BY field LOOP
            PERFORM custinfo.check_param(lk, src.rel, pr, TG_TABLE_NAME);
        END LOOP;
        FOR rs IN SELECT * FROM custinfo.lookup_results WHERE lookup = lk.name ORDER BY position, field LOOP
            PERFORM custinfo.check_result(lk, src.rel, rs, TG_TABLE_NAME);
        END LOOP;
    ELSIF TG_TABLE_NAME = 'lookup_params' THEN
        PERFORM custinfo.check_param(lk, src.rel, pr, TG_TABLE_NAME);
    ELSE
        PERFORM custinfo.check_result(lk, src.rel, rs, TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- check_param raises the first problem of one lookup_params row.
CREATE FUNCTION custinfo.check_param(lk custinfo.lookups, rel oid, pr custinfo.lookup_params, tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    cat "char";
    typ text;
    relname text;
BEGIN
    IF pr.region_field IS NOT NULL AND pr.match <> 'phone' THEN
        RAISE EXCEPTION 'lookup "%": param "%": region_field is only used with match ''phone''', lk.name, pr.field
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid',
                  HINT = 'Set match to ''phone'', or region_field to NULL.', TABLE = tbl, SCHEMA = 'custinfo';
    END IF;
    IF pr.match = 'hint' THEN
        RETURN;
    END IF;
    c := custinfo.mapping_column(rel, pr.source_column);
    IF c.attname IS NULL THEN
        RAISE EXCEPTION 'lookup "%": param "%": %', lk.name, pr.field, c.problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', HINT = c.hint, TABLE = tbl, SCHEMA = 'custinfo';
    END IF;
    SELECT coalesce(bt.typcategory, t.typcategory), format_type(c.atttypid, NULL) INTO cat, typ
    FROM pg_type t LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
    WHERE t.oid = c.atttypid;
    IF pr.match IN ('ci', 'phone') AND cat <> 'S' THEN
        RAISE EXCEPTION 'lookup "%": param "%": % matching needs a text column; "%" is %',
                lk.name, pr.field, pr.match, c.attname, typ
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', TABLE = tbl, SCHEMA = 'custinfo',
                  HINT = format('Use match ''exact'' for this column (%s), or a view that gives it as text.', typ);
    END IF;
    IF pr.match = 'exact' THEN
        -- The comparison the server will run, planned and not executed.
        SELECT format('%I.%I', n.nspname, cl.relname) INTO relname
        FROM pg_class cl JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = rel;
        BEGIN
            EXECUTE format('SELECT 1 FROM %s WHERE %I = CAST($1 AS %s) LIMIT 0', relname, c.attname, typ) USING NULL::text;
        EXCEPTION
            WHEN undefined_function OR datatype_mismatch OR cannot_coerce THEN
                RAISE EXCEPTION 'lookup "%": param "%": exact matching needs a type with equality; "%" is %',
                        lk.name, pr.field, c.attname, typ
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', TABLE = tbl, SCHEMA = 'custinfo',
                          HINT = 'Match a column of a comparable type (text, a number, a uuid, a date), or a view that casts it.';
            WHEN insufficient_privilege THEN
                NULL; -- this role cannot read the source; the server's role is checked at load
        END;
    END IF;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- check_result raises the problem of one lookup_results row, if any.
CREATE FUNCTION custinfo.check_result(lk custinfo.lookups, rel oid, rs custinfo.lookup_results, tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    c := custinfo.mapping_column(rel, rs.source_column);
    IF c.attname IS NULL THEN
        RAISE EXCEPTION 'lookup "%": result "%": %', lk.name, rs.field, c.problem
            USING ERRCODE = 'check_violation', CONSTRAINT = 'lookup_mapping_valid', HINT = c.hint, TABLE = tbl, SCHEMA = 'custinfo';
    END IF;
END;
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER lookups_mapping_valid
    AFTER INSERT OR UPDATE OF name, source, order_by ON custinfo.lookups
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION custinfo.check_mapping();
CREATE CONSTRAINT TRIGGER lookup_params_mapping_valid
    AFTER INSERT OR UPDATE ON custinfo.lookup_params
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION custinfo.check_mapping();
CREATE CONSTRAINT TRIGGER lookup_results_mapping_valid
    AFTER INSERT OR UPDATE ON custinfo.lookup_results
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION custinfo.check_mapping();

-- +goose Down
DROP TRIGGER lookup_results_mapping_valid ON custinfo.lookup_results;
DROP TRIGGER lookup_params_mapping_valid ON custinfo.lookup_params;
DROP TRIGGER lookups_mapping_valid ON custinfo.lookups;
DROP FUNCTION custinfo.check_mapping();
DROP FUNCTION custinfo.check_result(custinfo.lookups, oid, custinfo.lookup_results, text);
DROP FUNCTION custinfo.check_param(custinfo.lookups, oid, custinfo.lookup_params, text);
DROP FUNCTION custinfo.mapping_column(oid, text);
DROP FUNCTION custinfo.mapping_source(text);
DROP FUNCTION custinfo.sensitive_schema(text);
DROP FUNCTION custinfo.closest_name(text, text[]);
DROP FUNCTION custinfo.edit_distance(text, text);
