-- The operators' console (issue 24, docs/operations.md "The operators' console"):
-- operators and their roles, server-side sessions (shared by every server process), and
-- the tamper-evident audit journal of every sign-in and operator action.

-- Who may sign in. Passwords are Argon2id hashes (argon2-cffi's encoded form, with its
-- parameters); five failed sign-ins lock the login for 15 minutes (locked_until).
-- Operators are never deleted: the journal names them.
CREATE TABLE operators (
    id                bigserial PRIMARY KEY,
    login             text NOT NULL UNIQUE CHECK (login ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
    role              text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    password_hash     text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    failed_sign_ins   int NOT NULL DEFAULT 0 CHECK (failed_sign_ins >= 0),
    locked_until      timestamptz,
    disabled_at       timestamptz,
    last_sign_in_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- A signed-in browser. The cookie carries a random token; only its SHA-256 is stored,
-- so reading this table gives no usable cookie. Idle sessions end after 15 minutes
-- (last_seen_at), every session after 12 hours (created_at). signed_in_by says how the
-- operator proved who they are: a password at /login today; a reverse proxy's
-- X-Remote-User later (docs/operations.md), with the same sessions and CSRF tokens.
CREATE TABLE console_sessions (
    token_sha256   bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    operator_id    bigint NOT NULL REFERENCES operators (id),
    csrf_token     text NOT NULL CHECK (length(csrf_token) >= 32),
    signed_in_by   text NOT NULL CHECK (signed_in_by IN ('password', 'proxy')),
    source_ip      text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_operator ON console_sessions (operator_id);
CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen_at);

-- The audit journal: one row per sign-in (success or failure), sign-out and operator
-- action, in the action's own transaction. Each row's hash is SHA-256 over the previous
-- row's hash and the row's canonical form (mpp_server/audit.py), so a row
-- altered, inserted or removed afterwards breaks the chain (`python -m mpp_server audit
-- verify`). ids are consecutive from 1, handed out under an advisory lock held to the
-- commit; prev_hash UNIQUE makes a fork (two rows after one) impossible even for a
-- writer that forgot the lock. The trigger refuses every UPDATE, DELETE and TRUNCATE.
CREATE TABLE audit_journal (
    id           bigint PRIMARY KEY CHECK (id > 0),
    at           timestamptz NOT NULL,
    -- The operator's login; for a failed sign-in the login as typed; for the command
    -- line, the name given (reconcile ack --by) or the system user.
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 100),
    operator_id  bigint REFERENCES operators (id),
    via          text NOT NULL CHECK (via IN ('console', 'cli')),
    action       text NOT NULL CHECK (action ~ '^[a-z_]{1,64}$'),
    subject      text NOT NULL CHECK (length(subject) <= 200),
    details      jsonb NOT NULL,
    prev_hash    text NOT NULL UNIQUE CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash         text NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_journal_actor ON audit_journal (actor, id);

CREATE TRIGGER audit_journal_append_only BEFORE UPDATE OR DELETE ON audit_journal
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_journal_no_truncate BEFORE TRUNCATE ON audit_journal
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- What the console's pages look up by id (a payment's whole life, a customer's top-ups).
-- IF NOT EXISTS: on a large production database build them first, CONCURRENTLY, by hand
-- (docs/operations.md); this migration then finds them.
CREATE INDEX IF NOT EXISTS events_payment ON events (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_topup ON events (topup_id) WHERE topup_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS topups_customer ON topups (customer_id, created_at);
CREATE INDEX IF NOT EXISTS reconciliation_discrepancies_kaspi_id
    ON reconciliation_discrepancies (kaspi_id);
CREATE INDEX IF NOT EXISTS reconciliation_discrepancies_our_id
    ON reconciliation_discrepancies (our_id);
