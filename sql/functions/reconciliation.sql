-- A reconciliation run as it reads now (docs/reconciliation.md, "A run's status"): its
-- discrepancies are resolved by later runs or acknowledged by a person after it ended, so
-- its status is derived here, the one place every reader (the API, `reconcile`, the
-- gauges, the operators' console) takes it from:
--   discrepancies                  something is open;
--   acknowledged_with_differences  nothing is open, but a person acknowledged a
--                                  discrepancy, or Kaspi's payments − refunds still differ
--                                  from ours (issue 27: an acknowledged settlement_mismatch
--                                  read as MATCHED while the money differed by 7,702.00);
--   matched                        nothing is open and nothing was acknowledged: every
--                                  finding was resolved by evidence (a later registry, the
--                                  run itself completing a PENDING payment).
-- settlement_difference_tiyn is Kaspi's payments − refunds less ours (fees aside).
CREATE OR REPLACE FUNCTION reconciliation_run_now(p_run reconciliation_runs,
                                                  OUT status text, OUT open_count bigint,
                                                  OUT acknowledged_count bigint,
                                                  OUT settlement_difference_tiyn bigint)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN d.open_count > 0 THEN 'discrepancies'
                WHEN d.acknowledged_count > 0 OR m.difference <> 0
                    THEN 'acknowledged_with_differences'
                ELSE 'matched' END,
           d.open_count, d.acknowledged_count, m.difference
      FROM (SELECT count(*) FILTER (WHERE NOT resolved) AS open_count,
                   count(*) FILTER (WHERE resolved_by IS NOT NULL) AS acknowledged_count
              FROM reconciliation_discrepancies WHERE run_id = p_run.id) d,
           (SELECT (p_run.kaspi_payments_tiyn - p_run.kaspi_refunds_tiyn)
                   - (p_run.our_payments_tiyn - p_run.our_refunds_tiyn) AS difference) m
$$;
