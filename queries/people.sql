-- name: EnsurePerson :one
-- The person with the email, made when unknown.
INSERT INTO people (email) VALUES (lower(sqlc.arg(email)::text))
ON CONFLICT (email) DO UPDATE SET email = excluded.email
RETURNING *;

-- name: GetPerson :one
SELECT * FROM people WHERE id = $1;

-- name: GetPersonByEmail :one
SELECT * FROM people WHERE email = lower(sqlc.arg(email)::text);

-- name: AddTeamMember :one
-- Adds the person to the team; no row when they are a member already
-- (a role is changed with SetTeamMemberRole, which keeps an owner).
INSERT INTO team_members (team_id, person_id, role) VALUES ($1, $2, $3)
ON CONFLICT (team_id, person_id) DO NOTHING
RETURNING *;

-- name: GetTeamMember :one
SELECT * FROM team_members WHERE team_id = $1 AND person_id = $2;

-- name: ListTeamMembers :many
SELECT m.team_id, m.person_id, m.role, m.created_at, p.email, p.name
FROM team_members m JOIN people p ON p.id = m.person_id
WHERE m.team_id = $1
ORDER BY m.created_at, p.email;

-- name: SetTeamMemberRole :one
-- Changes a member's role unless that leaves the team without an owner.
UPDATE team_members m SET role = sqlc.arg(role)
WHERE m.team_id = sqlc.arg(team_id) AND m.person_id = sqlc.arg(person_id)
  AND (sqlc.arg(role)::text = 'owner' OR m.role <> 'owner'
       OR (SELECT count(*) FROM team_members o WHERE o.team_id = m.team_id AND o.role = 'owner') > 1)
RETURNING *;

-- name: RemoveTeamMember :execrows
-- Removes a member unless it is the team's last owner.
DELETE FROM team_members m
WHERE m.team_id = sqlc.arg(team_id) AND m.person_id = sqlc.arg(person_id)
  AND (m.role <> 'owner' OR (SELECT count(*) FROM team_members o WHERE o.team_id = m.team_id AND o.role = 'owner') > 1);

-- name: RevokePersonTeamKeys :execrows
-- A person who leaves a team loses the keys they held in it.
UPDATE api_keys SET revoked_at = now()
WHERE team_id = $1 AND person_id = $2 AND revoked_at IS NULL;

-- name: LockTeam :exec
-- Serialises changes of the team's members, so that two at once cannot
-- both take away the last owner.
SELECT id FROM teams WHERE id = $1 FOR UPDATE;
