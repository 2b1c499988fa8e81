-- Kaspi Pay's QR API for partners takes payments only from a device registered for a
-- trade point (device/register -> DeviceToken; docs/topups.md): registered once per
-- trade point, by one process at a time (a lease, committed before the call), kept here.
CREATE TABLE acquirer_devices (
    provider        text NOT NULL CHECK (provider IN ('kaspi-ecom')),
    trade_point_id  text NOT NULL CHECK (length(trade_point_id) BETWEEN 1 AND 64),
    -- The n-th registration attempt registers DeviceId mpp-<trade point>-<n>: after one
    -- left unanswered the next uses a new id, since Kaspi refuses a DeviceId twice.
    attempts        int NOT NULL DEFAULT 0,
    device_token    text CHECK (length(device_token) BETWEEN 1 AND 512),
    claimed_until   timestamptz,
    registered_at   timestamptz,
    PRIMARY KEY (provider, trade_point_id)
);
