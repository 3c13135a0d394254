-- +goose Up
-- Leases on shared resources that only one job may use at a time, such as
-- the backup slot of a Proxmox node. A lease is held by a job until it
-- releases it or until it expires, so that a crashed worker's lease lapses.
CREATE TABLE leases (
    resource   text        PRIMARY KEY,
    holder     uuid        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE leases;
