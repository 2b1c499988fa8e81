-- Records that cannot be rewritten (docs/operations.md, "Records, retention and roles").
-- The triggers that call these are created by migrations 003 and 015; the server's
-- privileges follow them (server_role_grant, privileges.sql).

-- Append-only: every UPDATE, DELETE and TRUNCATE refused, for every role (ledger
-- transfers and entries, the exchange journal).
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

-- Never deleted: DELETE and TRUNCATE refused (payments, refunds, top-ups and their
-- refunds, accounts: they change state, and are kept as money records).
CREATE OR REPLACE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted', TG_TABLE_NAME;
END;
$$;
