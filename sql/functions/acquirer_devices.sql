-- The devices an acquirer takes payments from (Kaspi's QR API: docs/topups.md), one per
-- trade point, registered once. Outcomes are declared in mpp_server/domain/outcomes.py
-- (DeviceOutcome).

-- Who registers the trade point's device: the caller that gets CLAIMED (a lease of
-- p_lease_s, committed before the call; `attempts` numbers the DeviceId). REGISTERED: the
-- device has its token; BUSY: another caller is registering it.
CREATE OR REPLACE FUNCTION acquirer_device_claim(p_provider text, p_trade_point text,
                                                 p_lease_s double precision,
                                                 OUT outcome text,
                                                 OUT device acquirer_devices)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO acquirer_devices (provider, trade_point_id) VALUES (p_provider, p_trade_point)
    ON CONFLICT DO NOTHING;
    SELECT * INTO device FROM acquirer_devices
     WHERE provider = p_provider AND trade_point_id = p_trade_point FOR UPDATE;
    IF device.device_token IS NOT NULL THEN
        outcome := 'REGISTERED';
    ELSIF device.claimed_until > now() THEN
        outcome := 'BUSY';
    ELSE
        outcome := 'CLAIMED';
        UPDATE acquirer_devices
           SET attempts = attempts + 1,
               claimed_until = now() + make_interval(secs => p_lease_s)
         WHERE provider = p_provider AND trade_point_id = p_trade_point
        RETURNING * INTO device;
    END IF;
END;
$$;

-- The registration's answer: p_token (STORED), or none (RELEASED: the lease ends now, the
-- next attempt registers a new DeviceId). STALE: another attempt stored its token since.
CREATE OR REPLACE FUNCTION acquirer_device_registered(p_provider text, p_trade_point text,
                                                      p_attempt int, p_token text,
                                                      OUT outcome text,
                                                      OUT device acquirer_devices)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT * INTO device FROM acquirer_devices
     WHERE provider = p_provider AND trade_point_id = p_trade_point FOR UPDATE;
    IF device.device_token IS NOT NULL OR device.attempts <> p_attempt THEN
        outcome := 'STALE';
        RETURN;
    END IF;
    outcome := CASE WHEN p_token IS NULL THEN 'RELEASED' ELSE 'STORED' END;
    UPDATE acquirer_devices
       SET device_token = p_token, claimed_until = NULL,
           registered_at = CASE WHEN p_token IS NULL THEN NULL ELSE now() END
     WHERE provider = p_provider AND trade_point_id = p_trade_point
    RETURNING * INTO device;
END;
$$;

-- The acquirer no longer knows the device (deleted, deactivated): forget its token, so
-- the next payment registers a new one. FORGOTTEN; STALE (another token is kept by now).
CREATE OR REPLACE FUNCTION acquirer_device_lost(p_provider text, p_trade_point text,
                                                p_token text, OUT outcome text)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE acquirer_devices SET device_token = NULL, registered_at = NULL
     WHERE provider = p_provider AND trade_point_id = p_trade_point
       AND device_token = p_token;
    outcome := CASE WHEN FOUND THEN 'FORGOTTEN' ELSE 'STALE' END;
END;
$$;
