-- A customer's account: the e-money limits of its identification level (docs/design.md,
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

-- Which limit a debit of p_amount for a payment would break: 'payment', 'daily' or
-- 'monthly' (the Kazakhstan day and month of p_now), or NULL. The caller holds the
-- account's row lock (payment_debit): every debit of a customer is checked and written
-- under it, so concurrent confirms are counted one after another, never together, and
-- each check (a statement of its own, with its own snapshot, taken after the lock) sees
-- every debit committed before it. A payment uses its share from its debit
-- (confirmed_at) while it holds the money (PENDING, COMPLETED); one Kaspi declined,
-- whose money was returned, frees it. A refund does not: the limits count payments
-- made, and a refund is the merchant's operation, often in another day or month.
CREATE OR REPLACE FUNCTION payment_limit_exceeded(p_account bigint, p_amount bigint,
                                                  p_limits jsonb, p_now timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_account accounts;
    v_daily bigint;
    v_monthly bigint;
    v_day_tiyn bigint;
    v_month_tiyn bigint;
BEGIN
    SELECT * INTO v_account FROM accounts WHERE id = p_account;
    IF p_amount > level_limit(p_limits, v_account.identification_level, 'payment') THEN
        RETURN 'payment';
    END IF;
    v_daily := level_limit(p_limits, v_account.identification_level, 'daily');
    v_monthly := level_limit(p_limits, v_account.identification_level, 'monthly');
    IF v_daily IS NULL AND v_monthly IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(amount_tiyn) FILTER (WHERE confirmed_at >= kz_day_start(p_now)), 0),
           coalesce(sum(amount_tiyn), 0)
      INTO v_day_tiyn, v_month_tiyn
      FROM payments
     WHERE customer_id = v_account.customer_id AND confirmed_at >= kz_month_start(p_now)
       AND status IN ('PENDING', 'COMPLETED');
    IF v_day_tiyn + p_amount > v_daily THEN
        RETURN 'daily';
    END IF;
    IF v_month_tiyn + p_amount > v_monthly THEN
        RETURN 'monthly';
    END IF;
    RETURN NULL;
END;
$$;

-- A credit of p_amount (a deposit; a top-up) and the account's balance cap: locks the
-- account row (held to the caller's commit, so two credits cannot pass the cap
-- together) and answers its level, the cap (NULL: none) and whether the credit would
-- lift the balance over it.
CREATE OR REPLACE FUNCTION balance_cap_exceeded(p_account bigint, p_amount bigint,
                                                p_limits jsonb, OUT level text,
                                                OUT cap_tiyn bigint, OUT exceeded boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
BEGIN
    SELECT identification_level, balance_tiyn INTO level, v_balance
      FROM accounts WHERE id = p_account FOR UPDATE;
    cap_tiyn := level_limit(p_limits, level, 'balance');
    exceeded := coalesce(v_balance + p_amount > cap_tiyn, false);
END;
$$;

-- A credit to a customer about to be made (a deposit, a top-up): the customer's account,
-- created empty if missing, its row locked to the caller's commit, and whether the credit
-- would lift the balance over the cap of its level (balance_cap_exceeded).
CREATE OR REPLACE FUNCTION customer_credit_check(p_customer_id text, p_amount bigint,
                                                 p_limits jsonb, OUT account_id bigint,
                                                 OUT level text, OUT exceeded boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_cap record;
BEGIN
    INSERT INTO accounts (kind, customer_id) VALUES ('customer', p_customer_id)
    ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id
    RETURNING id INTO account_id;
    SELECT * INTO v_cap FROM balance_cap_exceeded(account_id, p_amount, p_limits);
    level := v_cap.level;
    exceeded := v_cap.exceeded;
END;
$$;

-- Whether a customer's balance is over the cap of their level now. Only counted (a
-- refund is never refused for a limit: it is money the customer already had). VOLATILE
-- on purpose: called in the statement that applied a refund, after it, it reads with a
-- snapshot of its own that sees the refund's credit.
CREATE OR REPLACE FUNCTION balance_over_cap(p_customer_id text, p_limits jsonb)
RETURNS boolean LANGUAGE sql VOLATILE AS $$
    SELECT coalesce(bool_or(balance_tiyn > level_limit(p_limits, identification_level,
                                                       'balance')), false)
      FROM accounts WHERE customer_id = p_customer_id
$$;
