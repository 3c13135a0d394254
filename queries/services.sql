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

-- name: ScheduleTermination :one
-- Records a cancellation and its termination job; a service cancelled
-- already keeps its first termination (the caller answers with it).
UPDATE services
SET cancellation_generation = cancellation_generation + 1, cancel_when = sqlc.arg(cancel_when),
    cancellation_reason = sqlc.arg(reason), cancelled_at = now(), terminate_at = sqlc.arg(terminate_at),
    termination_job_id = sqlc.arg(job_id), updated_at = now()
WHERE id = sqlc.arg(id) AND termination_job_id IS NULL AND status <> 'terminated'
RETURNING *;

-- name: ClearCancellation :one
UPDATE services
SET cancel_when = NULL, cancellation_reason = '', cancelled_at = NULL, terminate_at = NULL,
    termination_job_id = NULL, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: MoveTermination :one
UPDATE services SET terminate_at = $2, updated_at = now() WHERE id = $1 RETURNING *;

-- name: SetBillingPeriodEnd :one
UPDATE services SET billing_period_end = $2, updated_at = now() WHERE id = $1 RETURNING *;

-- name: AddSuspension :one
-- Adds a suspension reason (once) and returns the reasons now recorded.
UPDATE services SET suspensions = array_append(array_remove(suspensions, sqlc.arg(reason)::text), sqlc.arg(reason)::text), updated_at = now()
WHERE id = sqlc.arg(id) RETURNING suspensions;

-- name: RemoveSuspension :one
-- Removes a suspension reason and returns the reasons left.
UPDATE services SET suspensions = array_remove(suspensions, sqlc.arg(reason)::text), updated_at = now()
WHERE id = sqlc.arg(id) RETURNING suspensions;

-- name: ListScheduledTerminations :many
SELECT * FROM services WHERE termination_job_id IS NOT NULL AND status <> 'terminated' ORDER BY terminate_at;

-- name: SetServiceRepaired :exec
-- Points a repaired service at its VM and makes it usable again (suspended,
-- its VM left off, while a suspension reason remains).
UPDATE services
SET provider_ref = $2, repair_reason = '',
    power_state = CASE WHEN cardinality(suspensions) > 0 THEN 'stopped' ELSE 'running' END,
    status = CASE WHEN cardinality(suspensions) > 0 THEN 'suspended' ELSE 'active' END,
    updated_at = now()
WHERE id = $1;

-- name: SetServiceInstall :exec
UPDATE services SET install = $2, updated_at = now() WHERE id = $1;

-- name: SetServiceProviderRef :exec
UPDATE services SET provider_ref = $2, updated_at = now() WHERE id = $1;

-- name: DeleteStaleRegistration :execrows
-- Removes the team's registration of vmid that an API stopped halfway more
-- than a minute ago (pending, without jobs), freeing its reservation.
DELETE FROM services s
USING vmid_reservations r
WHERE r.vmid = $1 AND r.service_id = s.id AND s.team_id = $2 AND s.status = 'pending'
  AND s.provider_ref ? 'vmid' AND s.created_at < now() - interval '1 minute'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.service_id = s.id);

-- name: ListRegisteredProxmoxServices :many
-- Live Proxmox services the fleet did not install (no install recorded):
-- registered VMs, which must carry their service's tag.
SELECT * FROM services
WHERE provider = 'proxmox' AND status IN ('active', 'suspended') AND install = '{}'::jsonb
ORDER BY created_at, id;

-- name: FlagServiceNeedsRepair :execrows
-- Marks a service whose VM a read found missing or not its own (no job is
-- involved); a terminated service stays terminated, and one a job is
-- changing (a reinstall between its destroy and its clone) is left to it.
UPDATE services s SET status = 'needs_repair', repair_reason = $2, updated_at = now()
WHERE s.id = $1 AND s.status IN ('active', 'suspended')
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.service_id = s.id
                  AND j.status IN ('queued', 'scheduled', 'running', 'retrying') AND j.kind <> 'service.terminate');

-- name: FollowPowerState :exec
-- Makes the recorded power state follow the VM's, unless it changed since
-- it was read or a job is changing the service.
UPDATE services s SET power_state = sqlc.arg(power_state), updated_at = now()
WHERE s.id = sqlc.arg(id) AND s.power_state = sqlc.arg(was)
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.service_id = s.id
                  AND j.status IN ('queued', 'scheduled', 'running', 'retrying') AND j.kind <> 'service.terminate');

-- name: SetServiceDrift :exec
UPDATE services SET drift = $2, verified_at = now() WHERE id = $1;

-- name: ListVerifiableServices :many
-- Live services of a provider, with whether a mutating job holds them now
-- (those are left for the next round: they are changing).
SELECT sqlc.embed(s), EXISTS (SELECT 1 FROM jobs j WHERE j.service_id = s.id AND j.mutating
                    AND j.status IN ('queued', 'scheduled', 'running', 'retrying'))::boolean AS busy
FROM services s
WHERE s.provider = $1 AND s.status IN ('active', 'suspended', 'needs_repair')
ORDER BY s.id;

-- name: SeeOrphan :one
-- Records a provider resource seen without a live service (first time
-- only) and returns when it was first seen.
INSERT INTO orphans (provider, resource, service_id) VALUES ($1, $2, $3)
ON CONFLICT (provider, resource) DO UPDATE SET service_id = excluded.service_id,
    first_seen = CASE WHEN orphans.service_id = excluded.service_id THEN orphans.first_seen ELSE now() END
RETURNING first_seen;

-- name: ForgetOrphans :exec
-- Forgets a provider's resources no longer seen without a live service.
DELETE FROM orphans WHERE provider = sqlc.arg(provider) AND NOT (resource = ANY(sqlc.arg(seen)::text[]));

-- name: ClaimTenantosServer :execrows
-- Records the Tenantos server a pending bare-metal service takes; the
-- unique index services_tenantos_server refuses one another live service
-- holds.
UPDATE services SET provider_ref = jsonb_build_object('serverId', sqlc.arg(server_id)::integer), updated_at = now()
WHERE id = sqlc.arg(id) AND provider = 'tenantos' AND status = 'pending';

-- name: MarkServiceNeedsRepair :exec
-- Marks a service its own job left half-made (a bare-metal install stopped
-- halfway); the job ends itself, so no running job is waited for.
UPDATE services SET status = 'needs_repair', repair_reason = $2, updated_at = now()
WHERE id = $1 AND status IN ('active', 'suspended');

-- name: SetServiceNotes :one
UPDATE services SET notes = $2, updated_at = now() WHERE id = $1 RETURNING notes;
