-- +goose Up
-- People are known by their email (lower-cased). They belong to teams with
-- a role; an API key may belong to a person in its team, and then acts with
-- that person's role (a key without a person acts for the whole team, as
-- keys did before people existed).
CREATE TABLE people (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email      text        NOT NULL UNIQUE CHECK (email <> '' AND email = lower(email)),
    name       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_members (
    team_id    uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    person_id  uuid        NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    role       text        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, person_id)
);
CREATE INDEX team_members_person ON team_members (person_id);

ALTER TABLE api_keys ADD COLUMN person_id uuid REFERENCES people (id) ON DELETE CASCADE;

-- A member's role is cached with their keys: a change of role or a removal
-- tells the API processes, as a change of the key itself does.
-- +goose StatementBegin
CREATE FUNCTION team_members_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_keys', encode(k.key_hash, 'hex'))
    FROM api_keys k WHERE k.team_id = OLD.team_id AND k.person_id = OLD.person_id;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER team_members_notify AFTER UPDATE OR DELETE ON team_members
    FOR EACH ROW EXECUTE FUNCTION team_members_notify();

-- A grant shares one service with a person, by email, with some of the
-- service permissions; the grantee accepts or declines it. At most one
-- open (pending or accepted) grant per service and email.
CREATE TABLE grants (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    service_id   uuid        NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    email        text        NOT NULL CHECK (email <> '' AND email = lower(email)),
    permissions  text[]      NOT NULL CHECK (cardinality(permissions) > 0),
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'declined', 'revoked')),
    granted_by   uuid        REFERENCES people (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    responded_at timestamptz
);
CREATE UNIQUE INDEX grants_one_open ON grants (service_id, email) WHERE status IN ('pending', 'accepted');
CREATE INDEX grants_email ON grants (email, status);

-- Jobs record the person who asked and the grant they asked through.
ALTER TABLE jobs ADD COLUMN person_id uuid REFERENCES people (id) ON DELETE SET NULL,
                 ADD COLUMN grant_id  uuid REFERENCES grants (id) ON DELETE SET NULL;

-- +goose Down
ALTER TABLE jobs DROP COLUMN grant_id, DROP COLUMN person_id;
DROP TABLE grants;
ALTER TABLE api_keys DROP COLUMN person_id;
DROP TRIGGER team_members_notify ON team_members;
DROP FUNCTION team_members_notify();
DROP TABLE team_members;
DROP TABLE people;
