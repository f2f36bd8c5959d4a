-- The least-privilege role that `custinfo serve` runs as.
--
-- serve reads the configuration tables, appends to custinfo.access_log and
-- reads the customer sources an admin grants it; it can change nothing else.
-- The custinfo tables stay owned by the role that ran `custinfo migrate`.
--
-- Run it once per database with psql, as the role that owns the custinfo
-- schema or as a superuser, naming the new role and its password:
--
--   psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 \
--        -v role=custinfo_server -v password="$(openssl rand -base64 24)" \
--        -f db/roles/serve_role.sql
--
-- Roles are shared by every database of a server: the role is created only
-- when it does not exist yet (an existing role keeps its password), and the
-- GRANTs are always run, so the script is safe to run again, e.g. after an
-- upgrade whose migration adds a configuration table.
--
-- Then grant it the sources of your lookups, for example:
--
--   GRANT USAGE ON SCHEMA crm TO custinfo_server;
--   GRANT SELECT ON crm.customers, crm.customer_cards TO custinfo_server;
--
-- and start serve with DATABASE_URL=postgres://custinfo_server:PASSWORD@host/db.
-- `custinfo lookups check` names any source the role cannot read.

-- psql does not substitute variables inside a DO block: the block reads
-- them from two settings of this session.
SET custinfo.serve_role = :'role';
SET custinfo.serve_password = :'password';
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_setting('custinfo.serve_role')) THEN
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION',
                       current_setting('custinfo.serve_role'), current_setting('custinfo.serve_password'));
    END IF;
END
$$;
RESET custinfo.serve_password;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"role";
GRANT USAGE ON SCHEMA custinfo TO :"role";

-- The configuration, read at start, on NOTIFY and periodically.
GRANT SELECT ON custinfo.lookups, custinfo.lookup_params, custinfo.lookup_results, custinfo.api_keys TO :"role";

-- The access log: rows are added with COPY and never read back or changed.
-- (After a commit whose answer was lost, serve asks pg_xact_status, which
-- every role may call, whether its transaction committed.)
GRANT INSERT ON custinfo.access_log TO :"role";
GRANT USAGE ON SEQUENCE custinfo.access_log_id_seq TO :"role";
-- Its daily partitions, created ahead by serve: the function runs as the
-- owner of the access log and only adds partitions (and moves rows waiting in
-- the default partition into theirs); it cannot drop or change a row.
GRANT EXECUTE ON FUNCTION custinfo.access_log_ensure_partitions(date, date) TO :"role";

-- phone matching computes custinfo.phone_key(column) in the lookup queries.
-- Functions are executable by PUBLIC unless revoked; granted here explicitly
-- so a database that revokes it still serves.
GRANT EXECUTE ON FUNCTION custinfo.phone_key(text) TO :"role";

-- Its own row of custinfo.status, written after every configuration load.
GRANT SELECT, INSERT, UPDATE ON custinfo.status TO :"role";
