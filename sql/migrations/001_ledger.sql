-- The ledger: accounts with their balance on the row, balanced transfers, and one
-- entry per leg with the balance before and after (pgledger's shape).
-- Sign convention: an account's balance is the sum of its entries. A customer's
-- balance is what we owe them and can never go below zero (CHECK below).

CREATE TABLE accounts (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('customer', 'funding', 'settlement')),
    customer_id   text UNIQUE CHECK (length(customer_id) BETWEEN 1 AND 12),
    -- System accounts are sharded so that concurrent payments do not all queue on one
    -- hot row; their balance is the sum over shards.
    shard         int NOT NULL DEFAULT 0,
    balance_tiyn  bigint NOT NULL DEFAULT 0,
    version       bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'customer') = (customer_id IS NOT NULL)),
    CONSTRAINT customer_balance_not_negative CHECK (kind <> 'customer' OR balance_tiyn >= 0)
);
CREATE UNIQUE INDEX accounts_system_shard ON accounts (kind, shard) WHERE customer_id IS NULL;

-- funding: money that entered from core banking (deposits), negative by construction.
-- settlement: what the wallet owes Kaspi for confirmed payments, less refunds.
INSERT INTO accounts (kind, shard)
SELECT k, s FROM unnest(ARRAY['funding', 'settlement']) AS k, generate_series(0, 15) AS s;

CREATE TABLE transfers (
    id                 bigserial PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN
                         ('deposit', 'payment_debit', 'payment_return', 'refund_credit')),
    -- depositId, paymentId or refundId: at most one transfer of a kind per reference,
    -- so no retry, race or bug can move the same money twice.
    reference          text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    amount_tiyn        bigint NOT NULL CHECK (amount_tiyn > 0),
    debit_account_id   bigint NOT NULL REFERENCES accounts (id),
    credit_account_id  bigint NOT NULL REFERENCES accounts (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, reference),
    CHECK (debit_account_id <> credit_account_id)
);

CREATE TABLE entries (
    id                   bigserial PRIMARY KEY,
    transfer_id          bigint NOT NULL REFERENCES transfers (id),
    account_id           bigint NOT NULL REFERENCES accounts (id),
    amount_tiyn          bigint NOT NULL CHECK (amount_tiyn <> 0),
    balance_before_tiyn  bigint NOT NULL,
    balance_after_tiyn   bigint NOT NULL,
    CHECK (balance_after_tiyn = balance_before_tiyn + amount_tiyn)
);
CREATE INDEX entries_account ON entries (account_id, id);
CREATE INDEX entries_transfer ON entries (transfer_id);

-- The one way money moves: both legs in one call, so a transfer is balanced by
-- construction. Accounts are locked in id order, so two transfers never deadlock.
-- A debit that would take a customer below zero fails on the CHECK above
-- (check_violation), aborting the caller's transaction.
CREATE FUNCTION ledger_transfer(p_kind text, p_reference text, p_debit bigint,
                                p_credit bigint, p_amount bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_transfer bigint;
    v_debit_after bigint;
    v_credit_after bigint;
BEGIN
    PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
    UPDATE accounts SET balance_tiyn = balance_tiyn - p_amount, version = version + 1
     WHERE id = p_debit RETURNING balance_tiyn INTO v_debit_after;
    UPDATE accounts SET balance_tiyn = balance_tiyn + p_amount, version = version + 1
     WHERE id = p_credit RETURNING balance_tiyn INTO v_credit_after;
    IF v_debit_after IS NULL OR v_credit_after IS NULL THEN
        RAISE EXCEPTION 'ledger_transfer: unknown account % or %', p_debit, p_credit;
    END IF;
    INSERT INTO transfers (kind, reference, amount_tiyn, debit_account_id, credit_account_id)
    VALUES (p_kind, p_reference, p_amount, p_debit, p_credit) RETURNING id INTO v_transfer;
    INSERT INTO entries (transfer_id, account_id, amount_tiyn, balance_before_tiyn,
                         balance_after_tiyn)
    VALUES (v_transfer, p_debit, -p_amount, v_debit_after + p_amount, v_debit_after),
           (v_transfer, p_credit, p_amount, v_credit_after - p_amount, v_credit_after);
    RETURN v_transfer;
END;
$$;

-- The wallet's feed of what to tell customers. `txid` makes the cursor safe: a reader
-- only sees events whose transaction is older than every transaction still running,
-- ordered by (txid, id), so an event that commits late can never fall behind a cursor.
CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type         text NOT NULL,
    customer_id  text NOT NULL,
    payment_id   text,
    refund_id    text,
    amount_tiyn  bigint,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_cursor ON events (txid, id);
