-- +goose Up
-- A bare-metal service claims one Tenantos server (provider_ref.serverId):
-- at most one live service may hold a server, so two provisions racing for
-- the same free server cannot both take it. A terminated service gives its
-- server back.
CREATE UNIQUE INDEX services_tenantos_server ON services ((provider_ref ->> 'serverId'))
    WHERE provider = 'tenantos' AND status <> 'terminated' AND provider_ref ? 'serverId';

-- The customer's own notes on a service (seed 002's bare-metal notes).
ALTER TABLE services ADD COLUMN notes text NOT NULL DEFAULT '' CHECK (length(notes) <= 10000);

-- +goose Down
ALTER TABLE services DROP COLUMN notes;
DROP INDEX services_tenantos_server;
