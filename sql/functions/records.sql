-- Records that cannot be rewritten (docs/operations.md, "Records, retention and roles"):
-- the trigger functions, and the policy that says which table each guards (below). The server's privileges follow the triggers (server_role_grant,
-- privileges.sql): no UPDATE or DELETE where refuse_change guards, no DELETE where
-- refuse_delete or refuse_young_delete does.

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

-- The records policy, one line per table: append-only (the ledger, the journals), never
-- deleted (the money records whose state changes), or pruned only after 30 days (the
-- inbound log, also never updated; the events). Every guard holds for every role, the
-- owner's too, and TRUNCATE is refused as well. Like states.sql's triggers, applied with
-- this file after every migration, so a table a later migration creates (disputes) is
-- guarded from the run that creates it; CREATE OR REPLACE, so applying it again changes
-- nothing. A money table a new migration adds gets its line here.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT * FROM (VALUES
            ('transfers', 'append-only', NULL), ('entries', 'append-only', NULL),
            ('exchange_journal', 'append-only', NULL), ('audit_journal', 'append-only', NULL),
            ('payments', 'never deleted', NULL), ('refunds', 'never deleted', NULL),
            ('deposits', 'never deleted', NULL), ('topups', 'never deleted', NULL),
            ('topup_refunds', 'never deleted', NULL), ('accounts', 'never deleted', NULL),
            ('disputes', 'never deleted', NULL),
            ('inbound_requests', 'never updated, kept 30 days', 'received_at'),
            ('events', 'kept 30 days', 'created_at')) AS policy (tbl, rule, since)
    LOOP
        IF v.rule = 'append-only' THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE OR DELETE ON %I '
                           'FOR EACH ROW EXECUTE FUNCTION refuse_change()',
                           v.tbl || '_append_only', v.tbl);
        ELSIF v.rule = 'never deleted' THEN
            EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE DELETE ON %I '
                           'FOR EACH ROW EXECUTE FUNCTION refuse_delete()',
                           v.tbl || '_no_delete', v.tbl);
        ELSE
            IF v.rule = 'never updated, kept 30 days' THEN
                EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE ON %I '
                               'FOR EACH ROW EXECUTE FUNCTION refuse_change()',
                               v.tbl || '_append_only', v.tbl);
            END IF;
            EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE DELETE ON %I '
                           'FOR EACH ROW EXECUTE FUNCTION refuse_young_delete(%L)',
                           v.tbl || '_kept_30_days', v.tbl, v.since);
        END IF;
        EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', v.tbl || '_no_truncate',
                       v.tbl, CASE WHEN v.rule LIKE 'never updated%' OR v.rule = 'append-only'
                                   THEN 'refuse_change' ELSE 'refuse_delete' END);
    END LOOP;
END;
$$;
