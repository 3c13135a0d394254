-- +goose Up
-- Usage the alert evaluator collects from the providers, one row per
-- service and collection, in the units alert rules are written in.
CREATE TABLE service_samples (
    service_id    uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL,
    online        boolean     NOT NULL,
    cpu           real        NOT NULL, -- percent of the plan's CPUs
    memory        real        NOT NULL, -- percent of the plan's memory
    disk          real        NOT NULL, -- percent of the plan's disk
    network_in    real        NOT NULL, -- Mbit/s since the previous sample
    network_out   real        NOT NULL,
    -- the provider's byte counters, for the next sample's rates
    net_in_bytes  bigint      NOT NULL,
    net_out_bytes bigint      NOT NULL,
    PRIMARY KEY (service_id, at)
);
CREATE INDEX service_samples_at ON service_samples (at);

-- Where a rule's condition started holding without a gap, written only
-- when that changes.
ALTER TABLE alert_rules ADD COLUMN breach_since timestamptz;

-- Whether the notifications of a firing and of its resolving were handed
-- to the job queue; an evaluation that stopped before then hands them
-- over on its next round.
ALTER TABLE fired_alerts ADD COLUMN firing_notified boolean NOT NULL DEFAULT false;
ALTER TABLE fired_alerts ADD COLUMN resolved_notified boolean NOT NULL DEFAULT false;
ALTER TABLE fired_alerts ADD COLUMN resolved_value double precision;
CREATE INDEX fired_alerts_unnotified ON fired_alerts (service_id)
    WHERE NOT firing_notified OR (resolved_at IS NOT NULL AND NOT resolved_notified);

-- Webhook URLs carry credentials (a Discord webhook's token): they are
-- kept sealed, with a hint for display.
ALTER TABLE monitoring_settings DROP COLUMN discord_webhook_url;
ALTER TABLE monitoring_settings DROP COLUMN generic_webhook_url;
ALTER TABLE monitoring_settings ADD COLUMN sealed_webhooks bytea;
ALTER TABLE monitoring_settings ADD COLUMN discord_webhook_hint text NOT NULL DEFAULT '';
ALTER TABLE monitoring_settings ADD COLUMN generic_webhook_hint text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE monitoring_settings DROP COLUMN generic_webhook_hint;
ALTER TABLE monitoring_settings DROP COLUMN discord_webhook_hint;
ALTER TABLE monitoring_settings DROP COLUMN sealed_webhooks;
ALTER TABLE monitoring_settings ADD COLUMN generic_webhook_url text NOT NULL DEFAULT '';
ALTER TABLE monitoring_settings ADD COLUMN discord_webhook_url text NOT NULL DEFAULT '';
DROP INDEX fired_alerts_unnotified;
ALTER TABLE fired_alerts DROP COLUMN resolved_value;
ALTER TABLE fired_alerts DROP COLUMN resolved_notified;
ALTER TABLE fired_alerts DROP COLUMN firing_notified;
ALTER TABLE alert_rules DROP COLUMN breach_since;
DROP TABLE service_samples;
