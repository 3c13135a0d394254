-- name: AcquireLease :one
-- Takes the lease when it is free, expired or already the holder's, and
-- returns the holder afterwards: the caller holds it when that is itself.
INSERT INTO leases (resource, holder, expires_at)
VALUES ($1, $2, now() + sqlc.arg(ttl)::interval)
ON CONFLICT (resource) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.expires_at < now() OR leases.holder = excluded.holder
RETURNING holder;

-- name: LeaseHolder :one
SELECT holder, expires_at FROM leases WHERE resource = $1;

-- name: ReleaseLease :exec
DELETE FROM leases WHERE resource = $1 AND holder = $2;
