-- name: CreateAPIKey :one
INSERT INTO api_keys (team_id, name, prefix, key_hash, scopes, ip_allowlist, rate_limit, expires_at, platform, person_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: GetAPIKeyByHash :one
-- The key with its person's email and role in the key's team: a key
-- without a person acts for the whole team (owner); a person's key whose
-- person left the team has no role.
SELECT sqlc.embed(k), coalesce(p.email, '')::text AS email,
       (CASE WHEN k.person_id IS NULL THEN 'owner' ELSE coalesce(m.role, '') END)::text AS role
FROM api_keys k
LEFT JOIN people p ON p.id = k.person_id
LEFT JOIN team_members m ON m.team_id = k.team_id AND m.person_id = k.person_id
WHERE k.key_hash = $1;

-- name: ListAPIKeys :many
SELECT api_keys.*, teams.name AS team_name
FROM api_keys JOIN teams ON teams.id = api_keys.team_id
WHERE sqlc.narg(team_id)::uuid IS NULL OR api_keys.team_id = sqlc.narg(team_id)
ORDER BY teams.name, api_keys.created_at;

-- name: RevokeAPIKey :execrows
UPDATE api_keys SET revoked_at = now()
WHERE (id::text = sqlc.arg(key)::text OR prefix = sqlc.arg(key)::text) AND revoked_at IS NULL;

-- name: CountActiveAPIKeysNamed :one
SELECT count(*) FROM api_keys
WHERE team_id = $1 AND name = $2 AND revoked_at IS NULL
  AND (expires_at IS NULL OR expires_at > now());

-- name: GetAPIKeyAccess :one
-- The key by id, with its person's email and role (as GetAPIKeyByHash):
-- what a console token or session that a key asked for stands for.
SELECT sqlc.embed(k), coalesce(p.email, '')::text AS email,
       (CASE WHEN k.person_id IS NULL THEN 'owner' ELSE coalesce(m.role, '') END)::text AS role
FROM api_keys k
LEFT JOIN people p ON p.id = k.person_id
LEFT JOIN team_members m ON m.team_id = k.team_id AND m.person_id = k.person_id
WHERE k.id = $1;
