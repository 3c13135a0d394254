-- name: ListMonitoredServices :many
-- Services whose usage is collected: active, on a provider that reports
-- usage, and placed there already.
SELECT * FROM services
WHERE status = 'active' AND provider IN ('proxmox', 'pterodactyl') AND provider_ref <> '{}'::jsonb
ORDER BY provider, id;

-- name: GetMonitoredServices :many
SELECT * FROM services
WHERE id = ANY(@ids::uuid[]) AND status = 'active'
ORDER BY id;

-- name: LatestSamples :many
-- Each service's newest sample since @since, for network rates.
SELECT DISTINCT ON (service_id) * FROM service_samples
WHERE service_id = ANY(@ids::uuid[]) AND at >= @since
ORDER BY service_id, at DESC;

-- name: InsertSamples :execrows
INSERT INTO service_samples (service_id, at, online, cpu, memory, disk, network_in, network_out, net_in_bytes, net_out_bytes)
SELECT unnest(@service_ids::uuid[]), unnest(@ats::timestamptz[]), unnest(@online::boolean[]), unnest(@cpu::real[]),
    unnest(@memory::real[]), unnest(@disk::real[]), unnest(@network_in::real[]), unnest(@network_out::real[]),
    unnest(@net_in_bytes::bigint[]), unnest(@net_out_bytes::bigint[])
ON CONFLICT DO NOTHING;

-- name: SamplesSince :many
-- The samples an evaluation reads: every sample of the services from
-- @since on, oldest first.
SELECT service_id, at, online, cpu, memory, disk, network_in, network_out FROM service_samples
WHERE service_id = ANY(@ids::uuid[]) AND at >= @since
ORDER BY service_id, at;

-- name: ServiceSamples :many
SELECT at, online, cpu, memory, disk, network_in, network_out FROM service_samples
WHERE service_id = @service_id AND at >= @since
ORDER BY at;

-- name: DeleteServiceSamples :execrows
DELETE FROM service_samples WHERE service_id = @service_id;

-- name: DeleteOldSamples :execrows
DELETE FROM service_samples WHERE at < @before;

-- name: RulesToEvaluate :many
-- The rules of the services with the alert each has open. Open alerts are
-- picked by service too, so that a batch reads its own and not every open
-- alert of the fleet.
SELECT r.id, r.team_id, r.service_id, r.metric_type, r.operator, r.threshold, r.duration_minutes, r.severity,
       r.enabled, r.breach_since, f.id AS open_alert_id
FROM alert_rules r
LEFT JOIN fired_alerts f ON f.rule_id = r.id AND f.resolved_at IS NULL AND f.service_id = ANY(@ids::uuid[])
WHERE r.service_id = ANY(@ids::uuid[]);

-- name: StartBreaches :exec
UPDATE alert_rules r SET breach_since = u.since
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@sinces::timestamptz[]) AS since) AS u
WHERE r.id = u.id;

-- name: ClearBreaches :exec
UPDATE alert_rules SET breach_since = NULL WHERE id = ANY(@ids::uuid[]);

-- name: FireAlerts :many
-- At most one alert is open per rule: a firing that raced another is
-- dropped.
INSERT INTO fired_alerts (rule_id, service_id, metric_type, severity, threshold, value, fired_at)
SELECT r.id, r.service_id, r.metric_type, r.severity, r.threshold, u.value, u.fired_at
FROM (SELECT unnest(@rule_ids::uuid[]) AS rule_id, unnest(@values::double precision[]) AS value,
      unnest(@fired_ats::timestamptz[]) AS fired_at) AS u
JOIN alert_rules r ON r.id = u.rule_id
ON CONFLICT (rule_id) WHERE resolved_at IS NULL DO NOTHING
RETURNING *;

-- name: ResolveAlerts :many
UPDATE fired_alerts f SET resolved_at = u.resolved_at, resolved_value = u.value
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@values::double precision[]) AS value,
      unnest(@resolved_ats::timestamptz[]) AS resolved_at) AS u
WHERE f.id = u.id AND f.resolved_at IS NULL
RETURNING f.*;

-- name: UnnotifiedAlerts :many
-- Alerts of the services whose notifications were not handed over yet.
SELECT f.id, f.service_id, f.firing_notified, f.resolved_at, f.resolved_notified, s.team_id,
       m.discord_webhook_hint, m.generic_webhook_hint
FROM fired_alerts f
JOIN services s ON s.id = f.service_id
LEFT JOIN monitoring_settings m ON m.team_id = s.team_id
WHERE f.service_id = ANY(@ids::uuid[]) AND (NOT f.firing_notified OR (f.resolved_at IS NOT NULL AND NOT f.resolved_notified));

-- name: MarkFiringNotified :exec
UPDATE fired_alerts SET firing_notified = true WHERE id = ANY(@ids::uuid[]);

-- name: MarkResolvedNotified :exec
UPDATE fired_alerts SET resolved_notified = true WHERE id = ANY(@ids::uuid[]) AND resolved_at IS NOT NULL;

-- name: GetFiredAlert :one
SELECT f.*, r.operator, r.duration_minutes, s.name AS service_name, s.team_id
FROM fired_alerts f JOIN alert_rules r ON r.id = f.rule_id JOIN services s ON s.id = f.service_id
WHERE f.id = @id;

-- name: ResolveAlertsOfTerminatedServices :execrows
-- A terminated service is no longer watched: its open alerts end, without
-- a notification.
UPDATE fired_alerts f SET resolved_at = @at::timestamptz, resolved_notified = true, firing_notified = true
FROM services s
WHERE s.id = f.service_id AND s.status = 'terminated' AND f.resolved_at IS NULL;
