-- name: CreateService :one
INSERT INTO services (team_id, name, provider, location, provider_ref, plan, status, billing_period_end)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: GetService :one
SELECT * FROM services WHERE id = $1;

-- name: GetTeamService :one
SELECT * FROM services WHERE id = $1 AND team_id = $2;

-- name: ListTeamServices :many
SELECT * FROM services WHERE team_id = $1
ORDER BY created_at, id
LIMIT $2 OFFSET $3;

-- name: CountTeamServices :one
SELECT count(*) FROM services WHERE team_id = $1;

-- name: SetServicePowerState :exec
UPDATE services SET power_state = $2, updated_at = now() WHERE id = $1;

-- name: SetServiceStatus :exec
UPDATE services SET status = $2, updated_at = now() WHERE id = $1;

-- name: SetServiceProvisioned :exec
UPDATE services
SET provider_ref = $2, status = 'active', power_state = 'running', updated_at = now()
WHERE id = $1;

-- name: SetServicePlan :exec
UPDATE services SET plan = $2, updated_at = now() WHERE id = $1;

-- name: DeletePendingService :exec
-- A pending service whose provision job could not be recorded.
DELETE FROM services s
WHERE s.id = $1 AND s.status = 'pending'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.service_id = s.id);
