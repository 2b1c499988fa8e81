-- Deposits: money entering a wallet from the bank's core (POST .../deposits), once per
-- depositId, by the idempotency idiom (docs/design.md, "Idempotency"). Outcomes are
-- declared in mpp_server/domain/outcomes.py (DepositOutcome).

-- outcome: DEPOSITED (credited from the funding account; balance is the balance after);
-- REPEAT (this depositId with this customer and amount: the stored answer, nothing
-- moves); CONFLICT (this depositId with another customer or amount); LIMIT_EXCEEDED (it
-- would lift the balance over the cap of the customer's level, `level`: nothing is
-- recorded, not even the claim or a new account, so the key stays free).
CREATE OR REPLACE FUNCTION deposit_apply(p_deposit_id text, p_customer_id text,
                                         p_amount bigint, p_shard int, p_limits jsonb,
                                         OUT outcome text, OUT balance_tiyn bigint,
                                         OUT level text)
LANGUAGE plpgsql AS $$
DECLARE
    v_stored deposits;
    v_account bigint;
    v_exceeded boolean;
    v_transfer bigint;
BEGIN
    BEGIN  -- the step: a refusal below undoes it all, the claim included
        INSERT INTO deposits (deposit_id, customer_id, amount_tiyn)
        VALUES (p_deposit_id, p_customer_id, p_amount)
        ON CONFLICT (deposit_id) DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO v_stored FROM deposits WHERE deposit_id = p_deposit_id;
            outcome := CASE WHEN (v_stored.customer_id, v_stored.amount_tiyn)
                                 = (p_customer_id, p_amount)
                            THEN 'REPEAT' ELSE 'CONFLICT' END;
            balance_tiyn := v_stored.balance_after_tiyn;
            RETURN;
        END IF;
        SELECT c.account_id, c.level, c.exceeded INTO v_account, level, v_exceeded
          FROM customer_credit_check(p_customer_id, p_amount, p_limits) c;
        IF v_exceeded THEN
            outcome := 'LIMIT_EXCEEDED';
            RAISE SQLSTATE 'MP001';  -- undo the step (caught below)
        END IF;
        v_transfer := ledger_transfer('deposit', p_deposit_id,
                                      (SELECT id FROM accounts WHERE kind = 'funding'
                                          AND shard = p_shard AND customer_id IS NULL),
                                      v_account, p_amount);
        SELECT balance_after_tiyn INTO balance_tiyn FROM entries
         WHERE transfer_id = v_transfer AND account_id = v_account;
        UPDATE deposits SET balance_after_tiyn = balance_tiyn, transfer_id = v_transfer
         WHERE deposit_id = p_deposit_id;
        outcome := 'DEPOSITED';
    EXCEPTION WHEN SQLSTATE 'MP001' THEN
        RETURN;  -- refused: outcome says why, nothing is recorded
    END;
END;
$$;
