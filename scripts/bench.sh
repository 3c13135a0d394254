#!/usr/bin/env bash
# `make bench`: private PostgreSQL and Redis (thrown away afterwards), a
# `provisiond api` process, and cmd/loadgen measuring the API against bare
# asynq enqueue on the same Redis; then one worker process holding
# BENCH_HOLD_JOBS (10000) provision jobs whose clones take BENCH_CLONE (30s),
# the Wings console fan-out against direct websocket clients, and the step
# runner's overhead against the same provider calls without it, and one
# alert evaluation round of 100,000 rules on 20,000 services.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_port=${BENCH_PG_PORT:-55434}
redis_port=${BENCH_REDIS_PORT:-56381}
api_addr=127.0.0.1:${BENCH_API_PORT:-18080}
api_pid=
cleanup() {
	[ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
	scripts/services.sh stop bench --purge
}
trap cleanup EXIT
scripts/services.sh stop bench --purge
scripts/services.sh start bench "$pg_port" "$redis_port"
export DATABASE_URL="postgres://provisiond@127.0.0.1:$pg_port/provisiond?sslmode=disable"
export REDIS_ADDR="127.0.0.1:$redis_port"

go build -o .run/provisiond ./cmd/provisiond
go build -o .run/loadgen ./cmd/loadgen
.run/provisiond migrate
HTTP_ADDR=$api_addr .run/provisiond api 2>.run/bench-api.log &
api_pid=$!
for _ in $(seq 100); do curl -fs "http://$api_addr/api/ping" >/dev/null && break; sleep 0.1; done
.run/loadgen -api "http://$api_addr" "$@"
kill "$api_pid" && wait "$api_pid" 2>/dev/null || true
api_pid=
echo
echo "== one worker process holding long jobs"
.run/loadgen -hold "${BENCH_HOLD_JOBS:-10000}" -clone "${BENCH_CLONE:-30s}" -worker .run/provisiond
echo
echo "== game console fan-out: 1,000 viewers on 100 servers at 20 lines/s"
go test -count=1 -run '^$' -bench FanoutTarget -benchtime 1x -v ./adapters/pterodactyl/wings | grep 'fanout_test'
echo
echo "== step runner overhead"
TEST_DATABASE_URL="postgres://provisiond@127.0.0.1:$pg_port/postgres?sslmode=disable" TEST_REDIS_ADDR="$REDIS_ADDR" \
	go test -run '^$' -bench StepRunnerOverhead -benchtime 200x ./jobs
echo
echo "== alert evaluation: one round over 20,000 services (collection from providers left out)"
TEST_DATABASE_URL="postgres://provisiond@127.0.0.1:$pg_port/postgres?sslmode=disable" TEST_REDIS_ADDR="$REDIS_ADDR" \
	go test -run '^$' -bench EvaluationRound -benchtime 3x ./monitoring/alerting | grep Benchmark
