-- The limits in O(1) (issue 28): each customer account keeps what it paid in the current
-- Kazakhstan calendar day and month, updated by the debit and by a decline's return
-- under the account's row lock (sql/functions/accounts.sql), so a confirm no longer sums
-- the month's payments (70 ms at 100,000 of them, while holding the account's lock).
-- A window start older than the current day or month means nothing paid in it yet.

ALTER TABLE accounts
    ADD COLUMN paid_day_start    timestamptz,
    ADD COLUMN paid_day_tiyn     bigint NOT NULL DEFAULT 0 CHECK (paid_day_tiyn >= 0),
    ADD COLUMN paid_month_start  timestamptz,
    ADD COLUMN paid_month_tiyn   bigint NOT NULL DEFAULT 0 CHECK (paid_month_tiyn >= 0);

-- The windows of now, in Kazakhstan time (UTC+5), as sql/functions/accounts.sql computes
-- them (the functions are applied after the migrations, so the expressions are here).
WITH win AS (
    SELECT (date_trunc('day', (now() AT TIME ZONE 'UTC') + interval '5 hours')
            - interval '5 hours') AT TIME ZONE 'UTC' AS day_start,
           (date_trunc('month', (now() AT TIME ZONE 'UTC') + interval '5 hours')
            - interval '5 hours') AT TIME ZONE 'UTC' AS month_start
), paid AS (
    SELECT p.customer_id,
           coalesce(sum(p.amount_tiyn) FILTER (WHERE p.confirmed_at >= win.day_start), 0)
             AS day_tiyn,
           coalesce(sum(p.amount_tiyn), 0) AS month_tiyn
      FROM payments p, win
     WHERE p.status IN ('PENDING', 'COMPLETED') AND p.confirmed_at >= win.month_start
     GROUP BY p.customer_id
)
UPDATE accounts a
   SET paid_day_start = win.day_start, paid_day_tiyn = paid.day_tiyn,
       paid_month_start = win.month_start, paid_month_tiyn = paid.month_tiyn
  FROM paid, win
 WHERE a.customer_id = paid.customer_id;
