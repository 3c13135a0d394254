-- +goose Up
-- Teams own keys, services and jobs. Nothing crosses a team boundary.
CREATE TABLE teams (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL UNIQUE CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as a SHA-256 hash of the whole secret; the prefix is
-- kept so that operators and panels can tell keys apart.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id      uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name         text        NOT NULL DEFAULT '',
    prefix       text        NOT NULL,
    key_hash     bytea       NOT NULL UNIQUE,
    scopes       text[]      NOT NULL DEFAULT '{}',
    ip_allowlist cidr[]      NOT NULL DEFAULT '{}',
    -- requests per minute; 0 means the server's default
    rate_limit   integer     NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_team ON api_keys (team_id, created_at);

-- API processes cache keys; a changed key must leave every cache at once.
-- +goose StatementBegin
CREATE FUNCTION api_keys_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_keys', encode(OLD.key_hash, 'hex'));
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_notify AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_notify();

CREATE TABLE services (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    team_id            uuid        NOT NULL REFERENCES teams (id),
    name               text        NOT NULL,
    provider           text        NOT NULL CHECK (provider IN
                           ('proxmox', 'pterodactyl', 'tenantos', 'kopia', 'cloudflare', 'openprovider')),
    location           text        NOT NULL DEFAULT '',
    -- where the service lives at its provider, e.g. {"node":"pve1","vmid":100}
    provider_ref       jsonb       NOT NULL DEFAULT '{}',
    -- plan limits, e.g. {"cores":2,"memoryMb":2048,"diskGb":20}
    plan               jsonb       NOT NULL DEFAULT '{}',
    status             text        NOT NULL DEFAULT 'active' CHECK (status IN
                           ('pending', 'active', 'suspended', 'terminated')),
    power_state        text        NOT NULL DEFAULT 'unknown' CHECK (power_state IN
                           ('unknown', 'running', 'stopped', 'paused')),
    billing_period_end timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX services_team ON services (team_id, created_at, id);

CREATE TABLE jobs (
    id                  uuid        PRIMARY KEY,
    kind                text        NOT NULL,
    queue               text        NOT NULL,
    team_id             uuid        NOT NULL REFERENCES teams (id),
    service_id          uuid        REFERENCES services (id),
    -- a mutating job holds its service: at most one queued or running at a time
    mutating            boolean     NOT NULL DEFAULT true,
    status              text        NOT NULL DEFAULT 'queued' CHECK (status IN
                            ('queued', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
    -- the typed job arguments; never secrets (those go sealed into sealed_secrets)
    args                jsonb       NOT NULL DEFAULT '{}',
    step                text        NOT NULL DEFAULT '',
    progress            smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    -- finished steps and what they left for later steps, see jobs.Checkpoint
    checkpoint          jsonb       NOT NULL DEFAULT '{}',
    sealed_secrets      bytea,
    result              jsonb,
    error               text        NOT NULL DEFAULT '',
    attempts            integer     NOT NULL DEFAULT 0,
    max_attempts        integer     NOT NULL,
    timeout_seconds     integer     NOT NULL,
    idempotency_key     text,
    request_hash        bytea,
    api_key_id          uuid        REFERENCES api_keys (id),
    requested_by        text        NOT NULL DEFAULT '',
    cancel_requested_at timestamptz,
    run_at              timestamptz,
    -- when the sweeper last compared the job with its task
    swept_at            timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (team_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX jobs_one_active_per_service ON jobs (service_id)
    WHERE mutating AND status IN ('queued', 'scheduled', 'running', 'retrying');
CREATE INDEX jobs_team ON jobs (team_id, created_at DESC, id);
CREATE INDEX jobs_service ON jobs (service_id, created_at DESC);
CREATE INDEX jobs_unfinished ON jobs ((coalesce(swept_at, updated_at))) WHERE status IN ('queued', 'running', 'retrying');

-- Every state change, step and progress of a job, for history and streaming.
CREATE TABLE job_events (
    id       bigserial   PRIMARY KEY,
    job_id   uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT now(),
    type     text        NOT NULL CHECK (type IN ('status', 'step', 'progress', 'log')),
    status   text        NOT NULL,
    step     text        NOT NULL DEFAULT '',
    progress smallint    NOT NULL DEFAULT 0,
    message  text        NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Events are written by triggers so that no code path (API, worker, sweeper,
-- an operator's UPDATE) can change a job without leaving its trace. Readers
-- (the API's event streams) LISTEN on job_events. A job's creation notifies
-- nobody: no one can be listening for a job that did not exist yet, and
-- NOTIFY serialises committing transactions, which would make every job
-- insert wait for the one before it.
-- +goose StatementBegin
CREATE FUNCTION jobs_record_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_events (job_id, type, status, step, progress)
        VALUES (NEW.id, 'status', NEW.status, NEW.step, NEW.progress);
        RETURN NULL;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO job_events (job_id, type, status, step, progress, message)
        VALUES (NEW.id, 'status', NEW.status, NEW.step, NEW.progress, NEW.error);
    ELSIF NEW.step IS DISTINCT FROM OLD.step THEN
        INSERT INTO job_events (job_id, type, status, step, progress)
        VALUES (NEW.id, 'step', NEW.status, NEW.step, NEW.progress);
    ELSIF NEW.progress IS DISTINCT FROM OLD.progress THEN
        INSERT INTO job_events (job_id, type, status, step, progress)
        VALUES (NEW.id, 'progress', NEW.status, NEW.step, NEW.progress);
    ELSE
        RETURN NULL;
    END IF;
    PERFORM pg_notify('job_events', NEW.id::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER jobs_record_event AFTER INSERT OR UPDATE ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_record_event();

-- Log lines (install output and the like) are inserted directly.
-- +goose StatementBegin
CREATE FUNCTION job_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_events', NEW.job_id::text);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER job_log_notify AFTER INSERT ON job_events
    FOR EACH ROW WHEN (NEW.type = 'log')
    EXECUTE FUNCTION job_log_notify();

-- +goose Down
DROP TABLE job_events;
DROP TABLE jobs;
DROP FUNCTION job_log_notify();
DROP FUNCTION jobs_record_event();
DROP TABLE services;
DROP TABLE api_keys;
DROP FUNCTION api_keys_notify();
DROP TABLE teams;
