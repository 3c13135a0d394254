-- name: AcquireLease :one
-- Takes the lease when it is free, expired, already the holder's, or held
-- by a job that is not running (it ended, or waits for a retry, which takes
-- the lease again), and returns the holder afterwards: the caller holds it
-- when that is itself.
INSERT INTO leases (resource, holder, expires_at)
VALUES ($1, $2, now() + sqlc.arg(ttl)::interval)
ON CONFLICT (resource) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.expires_at < now() OR leases.holder = excluded.holder
   OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = leases.holder AND j.status = 'running')
RETURNING holder;

-- name: LeaseHolder :one
SELECT holder, expires_at FROM leases WHERE resource = $1;

-- name: ReleaseLease :exec
DELETE FROM leases WHERE resource = $1 AND holder = $2;
