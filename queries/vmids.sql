-- name: TakeVMID :one
-- Returns the first VMID from from_id up that no earlier call returned.
INSERT INTO vmid_counter (id, next) VALUES (1, sqlc.arg(from_id)::integer + 1)
ON CONFLICT (id) DO UPDATE SET next = greatest(vmid_counter.next, sqlc.arg(from_id)::integer) + 1
RETURNING (next - 1)::integer AS vmid;

-- name: ReserveVMID :execrows
-- Reserves vmid for the service; 0 rows when another service holds it.
INSERT INTO vmid_reservations (vmid, service_id) VALUES ($1, $2)
ON CONFLICT (vmid) DO UPDATE SET vmid = excluded.vmid
WHERE vmid_reservations.service_id = excluded.service_id;

-- name: ServiceVMIDs :many
-- The VMIDs reserved for a service, newest first.
SELECT vmid FROM vmid_reservations WHERE service_id = $1 ORDER BY reserved_at DESC, vmid DESC;
