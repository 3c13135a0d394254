-- +goose Up
-- Customers' alert rules on their services, the alerts that fired, and
-- where a team's notifications go.
CREATE TABLE alert_rules (
    id               uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id          uuid             NOT NULL REFERENCES teams (id),
    service_id       uuid             NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    metric_type      text             NOT NULL CHECK (metric_type IN
                         ('cpu', 'memory', 'disk', 'network_in', 'network_out', 'offline')),
    operator         text             NOT NULL CHECK (operator IN ('gt', 'gte', 'lt', 'lte')),
    threshold        double precision NOT NULL,
    duration_minutes integer          NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    severity         text             NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    enabled          boolean          NOT NULL DEFAULT true,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX alert_rules_service ON alert_rules (service_id, created_at);

CREATE TABLE fired_alerts (
    id          uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    rule_id     uuid             NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    service_id  uuid             NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    metric_type text             NOT NULL,
    severity    text             NOT NULL,
    threshold   double precision NOT NULL,
    value       double precision NOT NULL,
    fired_at    timestamptz      NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX fired_alerts_service ON fired_alerts (service_id, fired_at DESC);
-- At most one open alert per rule.
CREATE UNIQUE INDEX fired_alerts_open ON fired_alerts (rule_id) WHERE resolved_at IS NULL;

CREATE TABLE monitoring_settings (
    team_id             uuid        PRIMARY KEY REFERENCES teams (id),
    profile_name        text        NOT NULL DEFAULT '',
    discord_webhook_url text        NOT NULL DEFAULT '',
    generic_webhook_url text        NOT NULL DEFAULT '',
    -- the HMAC key generic webhook bodies are signed with, sealed
    sealed_signing_key  bytea,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE monitoring_settings;
DROP TABLE fired_alerts;
DROP TABLE alert_rules;
