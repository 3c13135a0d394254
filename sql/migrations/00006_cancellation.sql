-- +goose Up
-- A service's cancellation and its scheduled termination. The termination
-- is also an asynq task (its job's id, derived from the service and the
-- cancellation's generation); the scheduler reconciles the two.
ALTER TABLE services
    ADD COLUMN cancellation_generation integer     NOT NULL DEFAULT 0,
    ADD COLUMN cancel_when            text        CHECK (cancel_when IN ('immediately', 'end_of_billing_period')),
    ADD COLUMN cancellation_reason    text        NOT NULL DEFAULT '',
    ADD COLUMN cancelled_at           timestamptz,
    ADD COLUMN terminate_at           timestamptz,
    ADD COLUMN termination_job_id     uuid,
    -- why the service is suspended: 'payment' (dunning), 'cancellation'
    ADD COLUMN suspensions            text[]      NOT NULL DEFAULT '{}';
CREATE INDEX services_terminate_at ON services (terminate_at) WHERE terminate_at IS NOT NULL;

-- +goose Down
DROP INDEX services_terminate_at;
ALTER TABLE services
    DROP COLUMN cancellation_generation, DROP COLUMN cancel_when, DROP COLUMN cancellation_reason,
    DROP COLUMN cancelled_at, DROP COLUMN terminate_at, DROP COLUMN termination_job_id, DROP COLUMN suspensions;
