-- +goose Up
-- VMIDs a provision has chosen but may not have cloned to yet. PVE's
-- nextid answers every concurrent caller the same free id; a reservation
-- here makes the choice unique across the fleet until the clone exists.
CREATE TABLE vmid_reservations (
    vmid       integer     PRIMARY KEY,
    job_id     uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE vmid_reservations;
