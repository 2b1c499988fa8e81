-- The ledger's functions: the one way money moves, and the settlement account's shard.
-- Re-applied by `migrate` whenever this file changes (docs/design.md, "SQL").

-- The one way money moves: both legs in one call, so a transfer is balanced by
-- construction. Accounts are locked customers first, then system accounts, each in id
-- order: one order for every transaction, so none deadlocks, and a step that already
-- holds its customer's row (payment_confirm, a credit's cap check) takes the system
-- account's shard only here, last.
-- A debit that would take a customer below zero fails on the CHECK above
-- (check_violation), aborting the caller's transaction.
-- One statement (the locks in that order, both balances moved, the transfer and its two
-- entries, each entry with the balance before and after it): each PL/pgSQL statement
-- costs its own executor start and end, and this runs in every debit, return and
-- refund (docs/performance.md).
CREATE OR REPLACE FUNCTION ledger_transfer(p_kind text, p_reference text, p_debit bigint,
                                p_credit bigint, p_amount bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_transfer bigint;
    v_legs int;
BEGIN
    WITH locked AS (
        SELECT id FROM accounts WHERE id IN (p_debit, p_credit)
         ORDER BY customer_id IS NULL, id FOR UPDATE
    ), moved AS (
        UPDATE accounts a
           SET balance_tiyn = a.balance_tiyn
                              + CASE WHEN a.id = p_debit THEN -p_amount ELSE p_amount END,
               version = a.version + 1
          FROM locked WHERE a.id = locked.id
        RETURNING a.id, a.balance_tiyn,
                  CASE WHEN a.id = p_debit THEN -p_amount ELSE p_amount END AS amount
    ), transfer AS (
        INSERT INTO transfers (kind, reference, amount_tiyn, debit_account_id,
                               credit_account_id)
        VALUES (p_kind, p_reference, p_amount, p_debit, p_credit) RETURNING id
    ), legs AS (
        -- The debit's leg first (its amount is the negative one).
        INSERT INTO entries (transfer_id, account_id, amount_tiyn, balance_before_tiyn,
                             balance_after_tiyn)
        SELECT transfer.id, moved.id, moved.amount, moved.balance_tiyn - moved.amount,
               moved.balance_tiyn
          FROM transfer, moved ORDER BY moved.amount
        RETURNING transfer_id
    )
    SELECT min(transfer_id), count(*) INTO v_transfer, v_legs FROM legs;
    IF v_legs <> 2 THEN
        RAISE EXCEPTION 'ledger_transfer: unknown account % or %', p_debit, p_credit;
    END IF;
    RETURN v_transfer;
END;
$$;

-- The settlement account's shard (mpp_server/domain/ledger.py shard_for picks it).
-- PL/pgSQL, like every function on the payment's path: a LANGUAGE sql function that
-- cannot be inlined is parsed and planned again on every call, and this one is called
-- on every debit, decline and refund (docs/performance.md); PL/pgSQL keeps the plan.
CREATE OR REPLACE FUNCTION settlement_account(p_shard int) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT id FROM accounts WHERE kind = 'settlement' AND shard = p_shard
                                      AND customer_id IS NULL);
END;
$$;
