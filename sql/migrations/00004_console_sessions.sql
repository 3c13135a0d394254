-- +goose Up
-- One-time console sessions: the browser connects to our gateway with the
-- token (only its hash is kept) once, before it expires; the gateway then
-- opens the provider's console itself, so no provider ticket is stored.
CREATE TABLE console_sessions (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash  bytea       NOT NULL UNIQUE,
    team_id     uuid        NOT NULL REFERENCES teams (id),
    service_id  uuid        NOT NULL REFERENCES services (id),
    job_id      uuid        NOT NULL REFERENCES jobs (id),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- +goose Down
DROP TABLE console_sessions;
