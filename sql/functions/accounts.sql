-- A customer's account: the e-money limits of its identification level (docs/money.md,
-- "Identification and limits"). The limits arrive from the server's configuration as
-- p_limits, tiyn by level and kind (mpp_server/domain/limits.py Limits.sql_arg):
-- {"NONE": {"payment": 19660000, "daily": ..., "monthly": ..., "balance": ...}, ...};
-- a missing level or kind is no limit.

-- The Kazakhstan calendar day and month (UTC+5, one zone for the whole country since
-- 2024-03-01, no daylight saving) containing p_at: the start, as a timestamptz. A fixed
-- offset, not a tz database name, so an old tzdata cannot move the windows.
CREATE OR REPLACE FUNCTION kz_day_start(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_trunc('day', (p_at AT TIME ZONE 'UTC') + interval '5 hours')
            - interval '5 hours') AT TIME ZONE 'UTC'
$$;

CREATE OR REPLACE FUNCTION kz_month_start(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_trunc('month', (p_at AT TIME ZONE 'UTC') + interval '5 hours')
            - interval '5 hours') AT TIME ZONE 'UTC'
$$;

-- One limit in tiyn, NULL when none is configured.
CREATE OR REPLACE FUNCTION level_limit(p_limits jsonb, p_level text, p_kind text)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_limits -> p_level ->> p_kind)::bigint
$$;

-- What the account paid in the Kazakhstan day and month of p_now: its running totals
-- (accounts.paid_*, issue 28), or 0 for a window that has not seen a debit yet.
-- This and the other functions a debit calls are PL/pgSQL: a LANGUAGE sql function that
-- cannot be inlined is parsed and planned on every call (ledger.sql, settlement_account).
CREATE OR REPLACE FUNCTION paid_in_windows(p_account accounts, p_now timestamptz,
                                           OUT day_tiyn bigint, OUT month_tiyn bigint)
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    day_tiyn := CASE WHEN p_account.paid_day_start = kz_day_start(p_now)
                     THEN p_account.paid_day_tiyn ELSE 0 END;
    month_tiyn := CASE WHEN p_account.paid_month_start = kz_month_start(p_now)
                       THEN p_account.paid_month_tiyn ELSE 0 END;
END;
$$;

-- What a customer's payments use of the daily and monthly limits at p_now, recounted
-- from the payments: those debited (confirmed_at) in the Kazakhstan day and month of
-- p_now that hold the customer's money (PENDING, COMPLETED). One Kaspi declined, whose
-- money was returned, frees its share; a refund does not (payment_limit_exceeded says
-- why). What the running totals must equal (account_paid_recount, the tests).
CREATE OR REPLACE FUNCTION payments_counted(p_customer_id text, p_now timestamptz)
RETURNS TABLE (day_tiyn bigint, month_tiyn bigint) LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount_tiyn) FILTER (WHERE confirmed_at >= kz_day_start(p_now)),
                    0)::bigint,
           coalesce(sum(amount_tiyn), 0)::bigint
      FROM payments
     WHERE customer_id = p_customer_id AND confirmed_at >= kz_month_start(p_now)
       AND status IN ('PENDING', 'COMPLETED')
$$;

-- Which limit a debit of p_amount for a payment would break: 'payment', 'daily' or
-- 'monthly' (the Kazakhstan day and month of p_now), or NULL; O(1), from the running
-- totals. The caller holds the account's row lock (payment_confirm) and passes the row it
-- read under it: every debit of a customer is checked and written under that lock, so
-- concurrent confirms are counted one after another, never together. A payment uses its
-- share from its debit while it holds the money; one Kaspi declined, whose money was
-- returned, frees it (account_paid_add). A refund does not: the limits count payments
-- made, and a refund is the merchant's operation, often in another day or month.
CREATE OR REPLACE FUNCTION payment_limit_exceeded(p_account accounts, p_amount bigint,
                                                  p_limits jsonb, p_now timestamptz)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    w record;
    v_level text := p_account.identification_level;
BEGIN
    w := paid_in_windows(p_account, p_now);  -- an expression: no query
    RETURN CASE
        WHEN p_amount > level_limit(p_limits, v_level, 'payment') THEN 'payment'
        WHEN w.day_tiyn + p_amount > level_limit(p_limits, v_level, 'daily') THEN 'daily'
        WHEN w.month_tiyn + p_amount > level_limit(p_limits, v_level, 'monthly')
            THEN 'monthly'
    END;
END;
$$;

-- One running total (a day's or a month's) moved by p_amount in the window that starts at
-- p_window: added within the window it holds (p_start); a debit in a later window
-- starts it again; a return (p_amount < 0) for a window it no longer holds changes
-- nothing. LANGUAGE sql and simple, so inlined into the UPDATE that calls it (no call).
CREATE OR REPLACE FUNCTION paid_total(p_start timestamptz, p_total bigint,
                                      p_window timestamptz, p_amount bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_start = p_window THEN p_total + p_amount
                WHEN p_amount > 0 THEN p_amount ELSE p_total END
$$;

-- The window a running total holds after paid_total moved it.
CREATE OR REPLACE FUNCTION paid_start(p_start timestamptz, p_window timestamptz,
                                      p_amount bigint)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_amount > 0 THEN p_window ELSE p_start END
$$;

-- The running totals moved by the return of a declined payment (p_amount < 0, p_at its
-- debit's time: it frees its share only in the window it was counted in). A payment's
-- debit moves them in the debit's own update of the row (ledger_transfer's p_paid_at),
-- with the same paid_total and paid_start. The caller holds the account's row lock.
CREATE OR REPLACE FUNCTION account_paid_add(p_account bigint, p_amount bigint,
                                            p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts
       SET paid_day_tiyn = paid_total(paid_day_start, paid_day_tiyn, kz_day_start(p_at),
                                      p_amount),
           paid_day_start = paid_start(paid_day_start, kz_day_start(p_at), p_amount),
           paid_month_tiyn = paid_total(paid_month_start, paid_month_tiyn,
                                        kz_month_start(p_at), p_amount),
           paid_month_start = paid_start(paid_month_start, kz_month_start(p_at), p_amount)
     WHERE id = p_account;
END;
$$;

-- The running totals recounted from the payments themselves, for the Kazakhstan day and
-- month of p_now (the reference the tests hold the totals to, and a repair for an
-- operator). Locks the account row.
CREATE OR REPLACE FUNCTION account_paid_recount(p_account bigint, p_now timestamptz)
RETURNS void LANGUAGE sql AS $$
    UPDATE accounts a
       SET paid_day_start = kz_day_start(p_now), paid_month_start = kz_month_start(p_now),
           paid_day_tiyn = c.day_tiyn, paid_month_tiyn = c.month_tiyn
      FROM payments_counted((SELECT customer_id FROM accounts WHERE id = p_account), p_now) c
     WHERE a.id = p_account
$$;

-- A credit of p_amount (a deposit; a top-up) and the account's balance cap: locks the
-- account row (held to the caller's commit, so two credits cannot pass the cap
-- together) and answers its level, the cap (NULL: none) and whether the credit would
-- lift the balance over it. The customer's open top-ups (CREATED: the card may be charged
-- any moment, and the credit is then made whatever the cap) count as credited already,
-- all but p_except_topup (the top-up asking). They are summed in a statement after the
-- lock, so one committed by a credit that held the lock before is counted.
CREATE OR REPLACE FUNCTION balance_cap_exceeded(p_account bigint, p_amount bigint,
                                                p_limits jsonb, p_except_topup text,
                                                OUT level text, OUT cap_tiyn bigint,
                                                OUT exceeded boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_customer text;
    v_balance bigint;
    v_open bigint;
BEGIN
    SELECT customer_id, identification_level, balance_tiyn INTO v_customer, level, v_balance
      FROM accounts WHERE id = p_account FOR UPDATE;
    cap_tiyn := level_limit(p_limits, level, 'balance');
    IF cap_tiyn IS NULL THEN
        exceeded := false;
        RETURN;
    END IF;
    SELECT coalesce(sum(amount_tiyn), 0) INTO v_open FROM topups
     WHERE customer_id = v_customer AND status = 'CREATED'
       AND topup_id IS DISTINCT FROM p_except_topup;
    exceeded := v_balance + v_open + p_amount > cap_tiyn;
END;
$$;

-- A credit to a customer about to be made (a deposit, a top-up: p_topup_id): the
-- customer's account, created empty if missing, its row locked to the caller's commit,
-- and whether the credit would lift the balance over the cap of its level
-- (balance_cap_exceeded).
CREATE OR REPLACE FUNCTION customer_credit_check(p_customer_id text, p_amount bigint,
                                                 p_limits jsonb, p_topup_id text,
                                                 OUT account_id bigint, OUT level text,
                                                 OUT exceeded boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_cap record;
BEGIN
    INSERT INTO accounts (kind, customer_id) VALUES ('customer', p_customer_id)
    ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
    RETURNING id INTO account_id;
    SELECT * INTO v_cap FROM balance_cap_exceeded(account_id, p_amount, p_limits, p_topup_id);
    level := v_cap.level;
    exceeded := v_cap.exceeded;
END;
$$;

-- Whether a customer's balance is over the cap of their level now. Only counted (a
-- refund is never refused for a limit: it is money the customer already had). VOLATILE
-- on purpose: called in the statement that applied a refund, after it, it reads with a
-- snapshot of its own that sees the refund's credit.
CREATE OR REPLACE FUNCTION balance_over_cap(p_customer_id text, p_limits jsonb)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN (SELECT coalesce(bool_or(balance_tiyn > level_limit(p_limits, identification_level,
                                                               'balance')), false)
              FROM accounts WHERE customer_id = p_customer_id);
END;
$$;
