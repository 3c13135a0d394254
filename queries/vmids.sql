-- name: ReserveVMID :one
-- Reserves the first VMID from from_id up that no recent reservation holds, or
-- returns the one the job reserved before.
WITH mine AS (
    SELECT vmid FROM vmid_reservations WHERE job_id = sqlc.arg(job_id)::uuid
), candidate AS (
    SELECT min(v)::integer AS vmid
    FROM generate_series(sqlc.arg(from_id)::integer, sqlc.arg(from_id)::integer + 10000) AS v
    WHERE NOT EXISTS (SELECT 1 FROM vmid_reservations r
                      WHERE r.vmid = v AND r.created_at > now() - interval '1 day')
), taken AS (
    INSERT INTO vmid_reservations (vmid, job_id)
    SELECT vmid, sqlc.arg(job_id)::uuid FROM candidate WHERE NOT EXISTS (SELECT 1 FROM mine)
    ON CONFLICT (vmid) DO UPDATE SET job_id = excluded.job_id, created_at = now()
        WHERE vmid_reservations.created_at <= now() - interval '1 day'
    RETURNING vmid
)
SELECT vmid FROM mine UNION ALL SELECT vmid FROM taken LIMIT 1;

-- name: DeleteOldVMIDReservations :execrows
DELETE FROM vmid_reservations WHERE created_at < now() - interval '1 day';

-- name: DropVMIDReservation :exec
DELETE FROM vmid_reservations WHERE job_id = $1;
