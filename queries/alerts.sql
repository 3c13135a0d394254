-- name: CreateAlertRule :one
-- Adds a rule unless the service has max_rules already (no row then).
INSERT INTO alert_rules (team_id, service_id, metric_type, operator, threshold, duration_minutes, severity, enabled)
SELECT $1, $2, $3, $4, $5, $6, $7, $8
WHERE (SELECT count(*) FROM alert_rules WHERE service_id = $2) < sqlc.arg(max_rules)::int
RETURNING *;

-- name: ListAlertRules :many
SELECT * FROM alert_rules WHERE service_id = $1 ORDER BY created_at, id;

-- name: GetAlertRule :one
SELECT * FROM alert_rules WHERE id = $1 AND service_id = $2;

-- name: UpdateAlertRule :one
UPDATE alert_rules
SET enabled = $3, threshold = $4, duration_minutes = $5, severity = $6, updated_at = now()
WHERE id = $1 AND service_id = $2
RETURNING *;

-- name: DeleteAlertRule :execrows
DELETE FROM alert_rules WHERE id = $1 AND service_id = $2;

-- name: ListFiredAlerts :many
SELECT * FROM fired_alerts WHERE service_id = $1 ORDER BY fired_at DESC, id LIMIT $2;

-- name: GetMonitoringSettings :one
SELECT * FROM monitoring_settings WHERE team_id = $1;

-- name: SaveMonitoringSettings :one
INSERT INTO monitoring_settings (team_id, profile_name, sealed_webhooks, discord_webhook_hint, generic_webhook_hint, sealed_signing_key)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (team_id) DO UPDATE
SET profile_name = excluded.profile_name, sealed_webhooks = excluded.sealed_webhooks,
    discord_webhook_hint = excluded.discord_webhook_hint, generic_webhook_hint = excluded.generic_webhook_hint,
    sealed_signing_key = coalesce(excluded.sealed_signing_key, monitoring_settings.sealed_signing_key),
    updated_at = now()
RETURNING *;
