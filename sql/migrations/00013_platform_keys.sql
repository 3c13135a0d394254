-- +goose Up
-- A platform key is the checkout's or an operator's: it registers and
-- provisions services for any team, renews them and suspends them for
-- payment, and may read and act on every team's services. It still has a
-- home team (for its rate limit and its logs).
ALTER TABLE api_keys ADD COLUMN platform boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN platform;
