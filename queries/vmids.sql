-- name: TakeVMID :one
-- Returns the first VMID from from_id up that no earlier call returned.
INSERT INTO vmid_counter (id, next) VALUES (1, sqlc.arg(from_id)::integer + 1)
ON CONFLICT (id) DO UPDATE SET next = greatest(vmid_counter.next, sqlc.arg(from_id)::integer) + 1
RETURNING (next - 1)::integer AS vmid;
