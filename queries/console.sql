-- name: CreateConsoleSession :one
INSERT INTO console_sessions (token_hash, team_id, service_id, job_id, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: UseConsoleSession :one
-- Takes the session for a connection: once, and only before it expires.
UPDATE console_sessions SET used_at = now()
WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
RETURNING *;

-- name: GetConsoleSession :one
SELECT * FROM console_sessions WHERE token_hash = $1;

-- name: DeleteExpiredConsoleSessions :execrows
DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day';
