-- +goose Up
-- Provider tasks a job's step adopted (started, or found again after a lost
-- answer). A task is held by at most one job: the primary key makes it so,
-- whatever the workers believe.
CREATE TABLE job_tasks (
    upid       text        PRIMARY KEY,
    job_id     uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    step       text        NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_tasks_job ON job_tasks (job_id);

-- VMIDs the fleet has given to services. A VMID stays reserved while any
-- service, terminated or not, references it, so that the fleet never hands
-- it out a second time and a stale reference can never meet a new
-- customer's VM made by us.
CREATE TABLE vmid_reservations (
    vmid        integer     PRIMARY KEY CHECK (vmid >= 100),
    service_id  uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vmid_reservations_service ON vmid_reservations (service_id);
INSERT INTO vmid_reservations (vmid, service_id)
SELECT DISTINCT ON ((provider_ref->>'vmid')::integer) (provider_ref->>'vmid')::integer, id
FROM services
WHERE provider = 'proxmox' AND provider_ref ? 'vmid' AND (provider_ref->>'vmid')::integer >= 100
ORDER BY (provider_ref->>'vmid')::integer, created_at
ON CONFLICT DO NOTHING;

-- A service whose job could not finish, or whose VM is not its own any more,
-- says so (needs_repair, with the reason) until a repair job brings it back.
-- install is what the service was last installed from (template, network
-- identity, cloud-init user and keys), for that repair.
ALTER TABLE services DROP CONSTRAINT services_status_check;
ALTER TABLE services ADD CONSTRAINT services_status_check CHECK (status IN
    ('pending', 'active', 'suspended', 'terminated', 'needs_repair'));
ALTER TABLE services
    ADD COLUMN repair_reason text  NOT NULL DEFAULT '',
    ADD COLUMN install       jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE services DROP COLUMN repair_reason, DROP COLUMN install;
UPDATE services SET status = 'active' WHERE status = 'needs_repair';
ALTER TABLE services DROP CONSTRAINT services_status_check;
ALTER TABLE services ADD CONSTRAINT services_status_check CHECK (status IN
    ('pending', 'active', 'suspended', 'terminated'));
DROP TABLE vmid_reservations;
DROP TABLE job_tasks;
