-- +goose Up
-- What the last verification of a service found differing between the
-- database and its provider ([] when nothing), and when it ran.
ALTER TABLE services
    ADD COLUMN drift       jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN verified_at timestamptz;

-- VMs that carry a service's tag while no live service points at them, and
-- since when: one of ours left over is destroyed after a grace period.
CREATE TABLE orphan_vms (
    node       text        NOT NULL,
    vmid       integer     PRIMARY KEY,
    service_id uuid        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE orphan_vms;
ALTER TABLE services DROP COLUMN drift, DROP COLUMN verified_at;
