-- +goose Up
-- The fleet's VMID counter. PVE's nextid answers every concurrent caller
-- the same free id; taking ids from this counter (never below nextid)
-- makes each provision's choice unique across the fleet. A job that
-- retries its placement may skip an id; nothing else is lost.
CREATE TABLE vmid_counter (
    id   integer PRIMARY KEY CHECK (id = 1),
    next integer NOT NULL
);

-- +goose Down
DROP TABLE vmid_counter;
