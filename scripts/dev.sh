#!/usr/bin/env bash
# `make run`: private PostgreSQL and Redis for development (data in .run/dev,
# kept between runs), then API, workers, scheduler, dashboard and simulated
# providers in one process. Stop with Ctrl-C; the servers stay up for the
# next run (scripts/services.sh stop dev stops them).
set -euo pipefail
cd "$(dirname "$0")/.."

pg_port=${DEV_PG_PORT:-55433}
redis_port=${DEV_REDIS_PORT:-56380}
scripts/services.sh start dev "$pg_port" "$redis_port"
export DATABASE_URL=${DATABASE_URL:-"postgres://provisiond@127.0.0.1:$pg_port/provisiond?sslmode=disable"}
export REDIS_ADDR=${REDIS_ADDR:-"127.0.0.1:$redis_port"}
go build -o .run/provisiond ./cmd/provisiond
exec .run/provisiond dev
