-- The inbound request log (inbound_requests): every request Kaspi sent us, with our
-- answer, kept (append-only) EXCHANGE_RETENTION_DAYS, at least the integration
-- checklist's 30 days.

-- The one way an exchange is logged: by refund_apply_logged in the refund's own
-- statement, and by the listener for a request it refused or failed.
CREATE OR REPLACE FUNCTION inbound_log_insert(p_source_ip text, p_method text, p_path text,
                                              p_headers jsonb, p_body_masked text,
                                              p_http_status int, p_answer jsonb,
                                              p_duration_ms int)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- PL/pgSQL: its plan is kept (a LANGUAGE sql function is planned on every call).
    INSERT INTO inbound_requests (source_ip, method, path, headers, body_masked,
                                  http_status, answer, duration_ms)
    VALUES (p_source_ip, p_method, p_path, p_headers, p_body_masked, p_http_status,
            p_answer, p_duration_ms);
END;
$$;
