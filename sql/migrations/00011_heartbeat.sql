-- +goose Up
-- A running attempt beats every 20 s: the sweeper puts back only jobs whose
-- attempt stopped beating (its worker died, or Redis lost the task while no
-- worker held it), never one a live worker still carries out.
ALTER TABLE jobs ADD COLUMN heartbeat_at timestamptz;
DROP INDEX jobs_unfinished;
CREATE INDEX jobs_unfinished ON jobs ((coalesce(swept_at, updated_at)))
    WHERE status IN ('queued', 'scheduled', 'running', 'retrying');

-- +goose Down
DROP INDEX jobs_unfinished;
CREATE INDEX jobs_unfinished ON jobs ((coalesce(swept_at, updated_at))) WHERE status IN ('queued', 'running', 'retrying');
ALTER TABLE jobs DROP COLUMN heartbeat_at;
