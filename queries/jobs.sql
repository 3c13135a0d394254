-- name: InsertJob :one
INSERT INTO jobs (id, kind, queue, team_id, service_id, mutating, status, args, max_attempts,
                  timeout_seconds, idempotency_key, request_hash, api_key_id, requested_by, run_at,
                  sealed_secrets, person_id, grant_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
RETURNING *;

-- name: InsertGuardedJob :one
-- Inserts a service's job only while the service is the team's, in one of
-- statuses and on none of the excluded providers: the checks and the
-- insert are one round trip. No row: the caller reads the service to say
-- why.
INSERT INTO jobs (id, kind, queue, team_id, service_id, mutating, status, args, max_attempts,
                  timeout_seconds, idempotency_key, request_hash, api_key_id, requested_by, run_at,
                  sealed_secrets, person_id, grant_id)
SELECT sqlc.arg(id)::uuid, sqlc.arg(kind)::text, sqlc.arg(queue)::text, s.team_id, s.id, sqlc.arg(mutating)::boolean,
       sqlc.arg(status)::text, sqlc.arg(args)::jsonb, sqlc.arg(max_attempts)::integer, sqlc.arg(timeout_seconds)::integer,
       sqlc.narg(idempotency_key)::text, sqlc.arg(request_hash)::bytea, sqlc.narg(api_key_id)::uuid,
       sqlc.arg(requested_by)::text, sqlc.narg(run_at)::timestamptz, sqlc.arg(sealed_secrets)::bytea,
       sqlc.narg(person_id)::uuid, sqlc.narg(grant_id)::uuid
FROM services s
WHERE s.id = sqlc.arg(service_id)::uuid AND s.team_id = sqlc.arg(team_id)::uuid
  AND s.status = ANY(sqlc.arg(statuses)::text[]) AND NOT (s.provider = ANY(sqlc.arg(excluded)::text[]))
RETURNING *;

-- name: GetJob :one
SELECT * FROM jobs WHERE id = $1;

-- name: GetTeamJob :one
SELECT * FROM jobs WHERE id = $1 AND team_id = $2;

-- name: GetJobByIdempotencyKey :one
SELECT * FROM jobs WHERE team_id = $1 AND idempotency_key = $2;

-- name: GetActiveServiceJob :one
SELECT * FROM jobs
WHERE service_id = $1 AND mutating AND status IN ('queued', 'scheduled', 'running', 'retrying')
LIMIT 1;

-- name: ListTeamJobs :many
SELECT * FROM jobs
WHERE team_id = $1
  AND (sqlc.narg(service_id)::uuid IS NULL OR service_id = sqlc.narg(service_id))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(kind)::text IS NULL OR kind = sqlc.narg(kind))
ORDER BY created_at DESC, id
LIMIT $2 OFFSET $3;

-- name: CountTeamJobs :one
SELECT count(*) FROM jobs
WHERE team_id = $1
  AND (sqlc.narg(service_id)::uuid IS NULL OR service_id = sqlc.narg(service_id))
  AND (sqlc.narg(status)::text IS NULL OR status = sqlc.narg(status))
  AND (sqlc.narg(kind)::text IS NULL OR kind = sqlc.narg(kind));

-- StartJobAttempt moves a job that may run into running and counts the
-- attempt; the new count fences the attempt's later writes. It returns no row
-- when the job has already ended or was cancelled, so a late or duplicate
-- task delivery does nothing.
-- name: StartJobAttempt :one
-- Starts an attempt of a job that has not ended and whose time has come: a
-- job moved later (a renewal) whose old task came at the old time is not
-- started (no row; see Workers.drop).
UPDATE jobs
SET status = 'running', attempts = attempts + 1, error = '',
    started_at = coalesce(started_at, now()), updated_at = now()
WHERE id = $1 AND status IN ('queued', 'scheduled', 'running', 'retrying')
  AND (run_at IS NULL OR run_at <= now() + interval '1 minute')
RETURNING *;

-- The worker-side writes below are fenced by the attempt number: once a newer
-- attempt has started (after a crash, a timeout or a redelivery), a late write
-- from an older one changes nothing.

-- name: SaveJobCheckpoint :one
-- Saves an attempt's checkpoint and tells, in the same round trip, whether
-- a cancellation was asked for. No row: the attempt may not write any more.
UPDATE jobs
SET step = $3, progress = $4, checkpoint = $5, updated_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'running'
RETURNING (cancel_requested_at IS NOT NULL)::boolean AS cancel_requested;

-- name: CommitJobCheckpoint :execrows
-- Saves the checkpoint that records a job's point of no return, unless a
-- cancellation was asked for meanwhile (which then wins).
UPDATE jobs
SET step = $3, progress = $4, checkpoint = $5, updated_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'running' AND cancel_requested_at IS NULL;

-- name: RetryJobAttempt :execrows
UPDATE jobs SET status = 'retrying', error = $3, updated_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'running';

-- name: FinishJobAttempt :one
UPDATE jobs
SET status = $3, error = $4, result = $5, sealed_result = $6,
    progress = CASE WHEN $3::text = 'succeeded' THEN 100 ELSE progress END,
    sealed_secrets = NULL, finished_at = now(), updated_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'running'
RETURNING *;

-- CancelWaitingJob ends a job that is not running now.
-- name: CancelWaitingJob :one
UPDATE jobs
SET status = 'cancelled', error = $2, sealed_secrets = NULL, finished_at = now(), updated_at = now()
WHERE id = $1 AND status IN ('queued', 'scheduled', 'retrying')
  AND NOT coalesce((checkpoint->>'committed')::boolean, false)
RETURNING *;

-- name: FailJob :one
-- Ends a job as failed. With attempts, only that running attempt may (the
-- worker's); without, any unfinished job (the sweeper's). With a repair
-- reason, the same statement marks the job's service needs_repair, so that no
-- crash can leave one without the other. A terminated service stays
-- terminated; another job changing the service (a console met a reinstall's
-- clone before its tag) is left to finish: what it leaves is what counts.
WITH marked AS (
    UPDATE services SET status = 'needs_repair', repair_reason = sqlc.arg(repair_reason)::text, updated_at = now()
    WHERE sqlc.arg(repair_reason)::text <> '' AND services.status <> 'terminated'
      AND services.id = (SELECT j.service_id FROM jobs j WHERE j.id = sqlc.arg(id)
                           AND CASE WHEN sqlc.narg(attempts)::int IS NULL THEN j.status IN ('queued', 'scheduled', 'running', 'retrying')
                                    ELSE j.attempts = sqlc.narg(attempts)::int AND j.status = 'running' END)
      AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.service_id = services.id AND o.id <> sqlc.arg(id) AND o.mutating
                      AND o.status IN ('queued', 'scheduled', 'running', 'retrying'))
    RETURNING services.id
)
UPDATE jobs
SET status = 'failed', error = sqlc.arg(error), sealed_secrets = NULL, finished_at = now(), updated_at = now()
WHERE jobs.id = sqlc.arg(id)
  AND CASE WHEN sqlc.narg(attempts)::int IS NULL THEN jobs.status IN ('queued', 'scheduled', 'running', 'retrying')
           ELSE jobs.attempts = sqlc.narg(attempts)::int AND jobs.status = 'running' END
RETURNING jobs.*;

-- name: BeatJobAttempt :execrows
-- The running attempt is alive (see jobs_unfinished and the sweeper).
UPDATE jobs SET heartbeat_at = now() WHERE id = $1 AND attempts = $2 AND status = 'running';

-- name: SnoozeJobAttempt :execrows
-- Puts a job back to wait without spending an attempt: the attempt that
-- only waited is given back.
UPDATE jobs SET status = 'retrying', error = $3, attempts = attempts - 1, updated_at = now()
WHERE id = $1 AND attempts = $2 AND status = 'running';

-- name: RequestJobCancel :one
-- A job past its point of no return (see jobs.Run.CommitAt) is carried
-- through and cannot be cancelled.
UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())
WHERE id = $1 AND status IN ('queued', 'scheduled', 'running', 'retrying')
  AND NOT coalesce((checkpoint->>'committed')::boolean, false)
RETURNING *;

-- name: JobCancelRequested :one
SELECT (cancel_requested_at IS NOT NULL)::boolean AS requested FROM jobs WHERE id = $1;

-- ListUnfinishedJobs returns jobs that have not changed for a while and are
-- not finished, for the sweeper to compare with their tasks.
-- name: ListUnfinishedJobs :many
SELECT * FROM jobs
WHERE status IN ('queued', 'scheduled', 'running', 'retrying') AND coalesce(swept_at, updated_at) < sqlc.arg(unchanged_since)::timestamptz
  AND (heartbeat_at IS NULL OR heartbeat_at < sqlc.arg(unchanged_since)::timestamptz)
ORDER BY coalesce(swept_at, updated_at)
LIMIT sqlc.arg(max_jobs);

-- name: MarkJobSwept :exec
UPDATE jobs SET swept_at = now() WHERE id = $1;

-- name: ListJobEvents :many
SELECT * FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id;

-- name: TakeJobSealedResult :one
-- Returns the job's sealed result and clears it, so that it is shown once.
UPDATE jobs j SET sealed_result = NULL
FROM (SELECT id, sealed_result FROM jobs
      WHERE jobs.id = $1 AND jobs.team_id = $2 AND jobs.sealed_result IS NOT NULL FOR UPDATE) old
WHERE j.id = old.id
RETURNING old.sealed_result;

-- name: InsertJobLog :exec
-- A log line of a running job (install output and the like).
INSERT INTO job_events (job_id, type, status, step, progress, message)
SELECT j.id, 'log', j.status, j.step, j.progress, sqlc.arg(message)::text FROM jobs j WHERE j.id = sqlc.arg(id)::uuid;

-- name: RescheduleJob :one
-- Moves a job that has not started to another time.
UPDATE jobs SET run_at = $2, status = 'scheduled', updated_at = now()
WHERE id = $1 AND status IN ('scheduled', 'queued', 'retrying')
RETURNING *;

-- name: FindScheduledJob :one
-- The service's job of kind, waiting for its time, whose argument key has
-- value (e.g. the IP a release is for).
SELECT * FROM jobs
WHERE service_id = sqlc.arg(service_id) AND kind = sqlc.arg(kind) AND args ->> sqlc.arg(arg)::text = sqlc.arg(value)::text
  AND status IN ('scheduled', 'queued', 'retrying')
LIMIT 1;

-- name: ListScheduledJobs :many
SELECT * FROM jobs
WHERE service_id = $1 AND kind = $2 AND status = 'scheduled';

-- name: ClaimTask :one
-- Records that the job's step holds a provider task and returns the job that
-- holds it: this job, or the one that claimed it first.
INSERT INTO job_tasks (upid, job_id, step) VALUES ($1, $2, $3)
ON CONFLICT (upid) DO UPDATE SET upid = excluded.upid
RETURNING job_id;

-- name: EarlierUnfinishedJob :one
-- The oldest job of kind on the service, recorded before the given one,
-- that has not ended: cancellation power jobs (which do not hold their
-- service) run in the order they were asked for.
SELECT * FROM jobs
WHERE service_id = sqlc.arg(service_id) AND kind = sqlc.arg(kind) AND id <> sqlc.arg(id)
  AND created_at < sqlc.arg(created_at) AND status IN ('queued', 'scheduled', 'running', 'retrying')
ORDER BY created_at
LIMIT 1;
