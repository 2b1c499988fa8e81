-- The ledger's functions: the one way money moves, and the settlement account's shard.
-- Re-applied by `migrate` whenever this file changes (docs/design.md, "SQL").

-- The one way money moves: both legs in one call, so a transfer is balanced by
-- construction. Accounts are locked customers first, then system accounts, each in id
-- order: one order for every transaction, so none deadlocks, and a step that already
-- holds its customer's row (payment_confirm, a credit's cap check) takes the system
-- account's shard only here, last.
-- A debit that would take a customer below zero fails on the CHECK above
-- (check_violation), aborting the caller's transaction.
-- p_paid_at (a payment's debit: its time) also moves the payer's running totals of the
-- limits (accounts.sql, paid_total) in the same update of the debited row: one row
-- version, not two.
CREATE OR REPLACE FUNCTION ledger_transfer(p_kind text, p_reference text, p_debit bigint,
                                p_credit bigint, p_amount bigint,
                                p_paid_at timestamptz DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_transfer bigint;
    v_debit_after bigint;
    v_credit_after bigint;
BEGIN
    PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit)
     ORDER BY customer_id IS NULL, id FOR UPDATE;
    IF p_paid_at IS NULL THEN
        UPDATE accounts SET balance_tiyn = balance_tiyn - p_amount, version = version + 1
         WHERE id = p_debit RETURNING balance_tiyn INTO v_debit_after;
    ELSE
        UPDATE accounts
           SET balance_tiyn = balance_tiyn - p_amount, version = version + 1,
               paid_day_tiyn = paid_total(paid_day_start, paid_day_tiyn,
                                          kz_day_start(p_paid_at), p_amount),
               paid_day_start = paid_start(paid_day_start, kz_day_start(p_paid_at),
                                           p_amount),
               paid_month_tiyn = paid_total(paid_month_start, paid_month_tiyn,
                                            kz_month_start(p_paid_at), p_amount),
               paid_month_start = paid_start(paid_month_start, kz_month_start(p_paid_at),
                                             p_amount)
         WHERE id = p_debit RETURNING balance_tiyn INTO v_debit_after;
    END IF;
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
