-- +goose Up
-- Provider resources (VMs, game servers) that carry a service's mark while
-- no live service points at them, and since when: one of ours left over is
-- deleted after a grace period. Keyed by provider and the provider's own id
-- of the resource (a VMID, a panel server id).
CREATE TABLE orphans (
    provider   text        NOT NULL,
    resource   text        NOT NULL,
    service_id uuid        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, resource)
);
INSERT INTO orphans (provider, resource, service_id, first_seen)
SELECT 'proxmox', vmid::text, service_id, first_seen FROM orphan_vms;
DROP TABLE orphan_vms;

-- +goose Down
CREATE TABLE orphan_vms (
    node       text        NOT NULL,
    vmid       integer     PRIMARY KEY,
    service_id uuid        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now()
);
INSERT INTO orphan_vms (node, vmid, service_id, first_seen)
SELECT '', resource::integer, service_id, first_seen FROM orphans WHERE provider = 'proxmox';
DROP TABLE orphans;
