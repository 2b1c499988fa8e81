-- What the server's role (members of mpp_app, migration 016) may do: run by `migrate`
-- after every run that applied something (mpp_server/migrate.py), so a table any
-- migration adds is covered, whatever the order migrations arrive in.
-- The privileges follow the tables' triggers (records.sql), one rule for every table:
--   append-only (a trigger calling refuse_change):
--       SELECT, INSERT            transfers, entries, exchange_journal, inbound_requests
--   not deleted by the server (a trigger calling refuse_delete or refuse_young_delete):
--       SELECT, INSERT, UPDATE    payments, refunds, topups, topup_refunds, accounts, events
--   schema_migrations: SELECT (/readyz reads it; only `migrate` writes it)
--   any other table: SELECT, INSERT, UPDATE, DELETE (outboxes, reconciliation, ...)
-- No TRUNCATE, REFERENCES or TRIGGER anywhere; the role owns nothing, so it can neither
-- alter nor drop a table, nor disable a trigger. Retention runs as the owner through
-- retention_maintain (retention.sql), the one SECURITY DEFINER function it may call.
CREATE OR REPLACE FUNCTION server_role_grant() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_table record;
BEGIN
    GRANT USAGE ON SCHEMA public TO mpp_app;
    FOR v_table IN
        SELECT c.oid::regclass AS name,
               CASE
                   WHEN c.relname = 'schema_migrations' THEN 'SELECT'
                   WHEN guarded_by && ARRAY['refuse_change']::name[] THEN 'SELECT, INSERT'
                   WHEN guarded_by && ARRAY['refuse_delete', 'refuse_young_delete']::name[]
                       THEN 'SELECT, INSERT, UPDATE'
                   ELSE 'SELECT, INSERT, UPDATE, DELETE'
               END AS privileges
          FROM pg_class c
          CROSS JOIN LATERAL (
              SELECT coalesce(array_agg(p.proname), '{}') AS guarded_by
                FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
               WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) g
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM mpp_app', v_table.name);
        EXECUTE format('GRANT %s ON %s TO mpp_app', v_table.privileges, v_table.name);
    END LOOP;
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mpp_app;
    REVOKE EXECUTE ON FUNCTION exchange_journal_partition(date),
                               retention_maintain(int, int, int) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION retention_maintain(int, int, int) TO mpp_app;
    REVOKE EXECUTE ON FUNCTION server_role_grant() FROM PUBLIC;
END;
$$;
