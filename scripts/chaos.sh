#!/usr/bin/env bash
# `make chaos`: the chaos suite. Private PostgreSQL and Redis (thrown away
# afterwards), the provider simulators as their own providersim process
# (fixed SIM_SEED, 300 ms tasks), migrations, a team, its key and a
# platform key; then
# cmd/chaos starts the API, the scheduler and three workers as separate
# processes, drives a mixed stream of jobs while faults, SIGKILLs and a
# Redis loss hit the fleet, waits for quiet, reconciles twice and checks the
# invariants (README, "Chaos suite"). It exits 1 when one fails.
#
#   scripts/chaos.sh [chaos flags]      # a full run, a few minutes
#   CHAOS_SHORT=1 scripts/chaos.sh      # a short run, about 2 minutes
#   CHAOS_KEEP=1 scripts/chaos.sh       # keep the database afterwards, to look into a failure
#   CHAOS_TENANTOS_WIPE_PROFILE=0 scripts/chaos.sh    # terminations give bare metal back unwiped
#
# Every process listens on 127.0.0.1 only. Logs stay in .run/chaos-logs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Ports below the kernel's ephemeral range (32768-60999), so that no
# outgoing connection of a test running beside this one holds them when
# Redis is started again.
pg_port=${CHAOS_PG_PORT:-25435}
redis_port=${CHAOS_REDIS_PORT:-26382}
# The API listens on $port, the simulators on $port+6 to $port+12, the
# scheduler's and workers' metrics on $port+20 to $port+79.
port=${CHAOS_PORT_BASE:-18300}
bin=.run/chaos-bin
logs=.run/chaos-logs
sim_pid=
chaos_pid=

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$chaos_pid" ]; then
		kill "$chaos_pid" 2>/dev/null || true
		wait "$chaos_pid" 2>/dev/null || true
	fi
	# Whatever the driver could not end itself.
	for f in "$logs"/pids/*.pid; do
		[ -f "$f" ] || continue
		kill -9 "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	if [ -n "$sim_pid" ]; then
		kill "$sim_pid" 2>/dev/null || true
		wait "$sim_pid" 2>/dev/null || true
	fi
	if [ "${CHAOS_KEEP:-}" = 1 ]; then
		scripts/services.sh stop chaos
		echo "chaos: data kept; look with: scripts/services.sh start chaos $pg_port $redis_port &&" \
			"psql 'postgres://provisiond@127.0.0.1:$pg_port/provisiond'" >&2
	else
		scripts/services.sh stop chaos --purge
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/services.sh stop chaos --purge
rm -rf "$logs"
mkdir -p "$bin" "$logs/pids"
scripts/services.sh start chaos "$pg_port" "$redis_port"

go build -o "$bin/provisiond" ./cmd/provisiond
go build -o "$bin/providersim" ./cmd/providersim
go build -o "$bin/chaos" ./cmd/chaos

# The fleet's configuration: every process reads the same environment.
export DATABASE_URL="postgres://provisiond@127.0.0.1:$pg_port/provisiond?sslmode=disable"
export REDIS_ADDR="127.0.0.1:$redis_port"
export HTTP_ADDR="127.0.0.1:$port"
SECRETS_KEY=$(head -c 32 /dev/urandom | base64)
export SECRETS_KEY
export LOG_FORMAT=json LOG_LEVEL=info
export PROXMOX_SIM_ADDR="127.0.0.1:$((port + 6))" PTERODACTYL_SIM_ADDR="127.0.0.1:$((port + 7))"
export TENANTOS_SIM_ADDR="127.0.0.1:$((port + 8))" CLOUDFLARE_SIM_ADDR="127.0.0.1:$((port + 9))"
export OPENPROVIDER_SIM_ADDR="127.0.0.1:$((port + 10))" KOPIA_SIM_CONTROL_ADDR="127.0.0.1:$((port + 11))"
export KOPIA_SIM_ADDR="127.0.0.1:$((port + 12))"
export PROXMOX_URL="http://$PROXMOX_SIM_ADDR/api2/json"
export PROXMOX_TOKEN_ID='root@pam!provisiond' PROXMOX_TOKEN_SECRET=chaos-token-secret
export PROXMOX_CONSOLE_USER=root@pam PROXMOX_CONSOLE_PASSWORD=chaos-console-password
export PTERODACTYL_URL="http://$PTERODACTYL_SIM_ADDR"
export PTERODACTYL_APPLICATION_KEY=ptla_chaosapplicationkey00000000000000000000
export PTERODACTYL_CLIENT_KEY=ptlc_chaosclientkey0000000000000000000000000
# Bare metal: the Tenantos simulator takes TENANTOS_KEY, the fleet sends
# TENANTOS_API_KEY; free servers carry "For Rent". A terminated service's
# server is wiped with CHAOS_TENANTOS_WIPE_PROFILE (default 20, the
# simulator's disk wipe; 0 gives it back unwiped) before the pool has it.
export TENANTOS_KEY=chaos-tenantos-key TENANTOS_API_KEY=chaos-tenantos-key
export TENANTOS_URL="http://$TENANTOS_SIM_ADDR" TENANTOS_POLL_INTERVAL=200ms TENANTOS_REQUEST_TIMEOUT=10s
export TENANTOS_POOL_TAGS="For Rent"
export TENANTOS_WIPE_PROFILE=${CHAOS_TENANTOS_WIPE_PROFILE:-20}
export SIM_SEED=${CHAOS_SIM_SEED:-7} SIM_TASK_DURATION=300ms
export SWEEP_INTERVAL=5s SWEEP_GRACE=15s RECONCILE_INTERVAL=30s CANCEL_GRACE=20s ORPHAN_GRACE=24h
export API_RATE_LIMIT=100000 JOB_RETRY_BASE=1s JOB_RETRY_MAX=10s
export PROXMOX_POLL_INTERVAL=200ms PTERODACTYL_POLL_INTERVAL=300ms
export PROXMOX_REQUEST_TIMEOUT=10s PTERODACTYL_REQUEST_TIMEOUT=10s
export POWER_SHUTDOWN_TIMEOUT=20s SHUTDOWN_TIMEOUT=5s PROXMOX_AGENT_TIMEOUT=30s
export WORKER_CONCURRENCY=100 DATABASE_MAX_CONNS=16

"$bin/providersim" >"$logs/providersim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do curl -fs "http://$PROXMOX_SIM_ADDR/_sim/vms" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "http://$PROXMOX_SIM_ADDR/_sim/vms" >/dev/null || { tail -n 20 "$logs/providersim.log" >&2; exit 1; }

"$bin/provisiond" migrate >"$logs/migrate.log" 2>&1 || { tail -n 20 "$logs/migrate.log" >&2; exit 1; }
"$bin/provisiond" teams create chaos >/dev/null
CHAOS_KEY=$("$bin/provisiond" keys create --team chaos --name chaos | sed -n 1p)
CHAOS_PLATFORM_KEY=$("$bin/provisiond" keys create --platform --name chaos-platform | sed -n 1p)
export CHAOS_KEY CHAOS_PLATFORM_KEY

"$bin/chaos" -bin "$bin/provisiond" -logs "$logs" -metrics-port "$((port + 20))" "$@" &
chaos_pid=$!
rc=0
wait "$chaos_pid" || rc=$?
chaos_pid=
exit "$rc"
