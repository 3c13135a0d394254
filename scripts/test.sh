#!/usr/bin/env bash
# The whole test run: private PostgreSQL and Redis on their own ports and
# data (torn down afterwards), go vet, checks that sqlc's generated code and
# go.mod are current, staticcheck (its default checks), promtool's checks of
# the alerting rules, every test with the race detector, and a short run of
# the chaos suite (scripts/chaos.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_port=${TEST_PG_PORT:-55432}
redis_port=${TEST_REDIS_PORT:-56379}
trap 'scripts/services.sh stop test --purge' EXIT
scripts/services.sh stop test --purge
WITH_PROMTOOL=1 scripts/services.sh start test "$pg_port" "$redis_port"
export TEST_DATABASE_URL="postgres://provisiond@127.0.0.1:$pg_port/postgres?sslmode=disable"
export TEST_REDIS_ADDR="127.0.0.1:$redis_port"

echo "== go vet"
go vet ./...

echo "== sqlc generate gives no diff"
scripts/sqlc.sh check

echo "== go mod tidy gives no diff"
go mod tidy -diff

echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== promtool: the alerting rules and their unit tests"
promtool check config monitoring/prometheus.yml
promtool test rules monitoring/alerts_test.yml

echo "== go test -race"
go test -race -count=1 -timeout 15m -parallel 16 ./...

echo "== chaos suite, short run: kills and a Redis loss under a job stream; every invariant holds"
CHAOS_SHORT=1 scripts/chaos.sh
