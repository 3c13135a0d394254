-- +goose Up
-- A secret a job hands back once (a rescue password), sealed like
-- sealed_secrets and cleared when the API has shown it.
ALTER TABLE jobs ADD COLUMN sealed_result bytea;

-- +goose Down
ALTER TABLE jobs DROP COLUMN sealed_result;
