-- Records that cannot be rewritten (docs/operations.md, "Records, retention and roles").
-- The triggers that call these are created by migrations 003 and 015; the server's
-- privileges follow them (server_role_grant, privileges.sql): no UPDATE or DELETE where
-- refuse_change guards, no DELETE where refuse_delete or refuse_young_delete does.

-- Append-only: every UPDATE, DELETE and TRUNCATE refused, for every role (ledger
-- transfers and entries, the exchange journal).
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

-- Never deleted: DELETE and TRUNCATE refused (payments, refunds, deposits, top-ups and
-- their refunds, accounts: they change state, and are kept as money records).
CREATE OR REPLACE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted', TG_TABLE_NAME;
END;
$$;

-- Kept at least 30 days (the integration checklist's minimum for exchanges), whoever
-- asks: a DELETE of a row whose timestamp column (the trigger's argument) is younger is
-- refused. On inbound_requests and events, which retention prunes (retention.sql).
CREATE OR REPLACE FUNCTION refuse_young_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz < now() - interval '30 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'rows of % are kept at least 30 days', TG_TABLE_NAME;
END;
$$;
