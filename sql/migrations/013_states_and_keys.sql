-- One home for each rule (issue 21).
--
-- Status moves: every status column is guarded by a trigger (sql/functions/states.sql)
-- that refuses a move its machine's table of moves does not list.
--
-- Idempotency keys: every request keyed by the caller's id claims the key first, in the
-- record the key names (docs/design.md, "Idempotency"). Kaspi's refunds claim their row
-- as RECEIVED, a status that never outlives refund_apply's transaction. Deposits, which
-- were only a ledger transfer with a reference, get a row of their own that stores the
-- request and the answer.

ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check
    CHECK (status IN ('RECEIVED', 'SUCCESS', 'REFUSED'));

CREATE TABLE deposits (
    deposit_id          text PRIMARY KEY CHECK (length(deposit_id) BETWEEN 1 AND 64),
    customer_id         text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 12),
    amount_tiyn         bigint NOT NULL CHECK (amount_tiyn > 0),
    -- The answer (the customer's balance right after this deposit) and its transfer,
    -- written by the transaction that claimed the key (deposit_apply), never NULL once
    -- it committed.
    balance_after_tiyn  bigint,
    transfer_id         bigint UNIQUE REFERENCES transfers (id),
    created_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO deposits (deposit_id, customer_id, amount_tiyn, balance_after_tiyn, transfer_id,
                      created_at)
SELECT t.reference, a.customer_id, t.amount_tiyn, e.balance_after_tiyn, t.id, t.created_at
  FROM transfers t
  JOIN accounts a ON a.id = t.credit_account_id
  JOIN entries e ON e.transfer_id = t.id AND e.account_id = t.credit_account_id
 WHERE t.kind = 'deposit';
