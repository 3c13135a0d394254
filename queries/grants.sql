-- name: CreateGrant :one
INSERT INTO grants (service_id, email, permissions, granted_by)
VALUES ($1, lower(sqlc.arg(email)::text), $2, $3)
RETURNING *;

-- name: GetGrant :one
SELECT * FROM grants WHERE id = $1;

-- name: ListServiceGrants :many
SELECT sqlc.embed(g), coalesce(p.email, '')::text AS granted_by_email
FROM grants g LEFT JOIN people p ON p.id = g.granted_by
WHERE g.service_id = $1 ORDER BY g.created_at;

-- name: ListGrantsTo :many
-- The grants addressed to an email, with their services.
SELECT g.*, s.name AS service_name, s.provider AS service_provider, t.name AS team_name
FROM grants g JOIN services s ON s.id = g.service_id JOIN teams t ON t.id = s.team_id
WHERE g.email = lower(sqlc.arg(email)::text) AND (sqlc.narg(status)::text IS NULL OR g.status = sqlc.narg(status))
ORDER BY g.created_at;

-- name: AcceptedGrant :one
-- The accepted grant of the service to the email, if any.
SELECT * FROM grants WHERE service_id = $1 AND email = lower(sqlc.arg(email)::text) AND status = 'accepted';

-- name: RespondToGrant :one
-- The grantee accepts or declines a pending grant.
UPDATE grants SET status = sqlc.arg(status), responded_at = now(), updated_at = now()
WHERE id = sqlc.arg(id) AND email = lower(sqlc.arg(email)::text) AND status = 'pending'
RETURNING *;

-- name: SetGrantPermissions :one
UPDATE grants SET permissions = $2, updated_at = now()
WHERE id = $1 AND status IN ('pending', 'accepted')
RETURNING *;

-- name: RevokeGrant :one
UPDATE grants SET status = 'revoked', updated_at = now()
WHERE id = $1 AND status IN ('pending', 'accepted')
RETURNING *;

-- name: DeleteGrantConsoleSessions :execrows
-- The console sessions opened through a grant that is revoked.
DELETE FROM console_sessions c USING jobs j
WHERE c.job_id = j.id AND j.grant_id = $1;

-- name: ListGrantsMadeBy :many
-- The open grants on the service that a person made (through their own
-- grant), for a change of that grant to reach them.
SELECT * FROM grants
WHERE service_id = $1 AND granted_by = $2 AND status IN ('pending', 'accepted');

-- name: LockGrant :one
-- The grant, locked until the transaction ends: a grant made through it
-- and its revocation do not interleave.
SELECT * FROM grants WHERE id = $1 FOR UPDATE;
