#!/usr/bin/env bash
# Starts or stops a private PostgreSQL and Redis for one purpose (dev, test,
# bench), with their data under .run/<name>/ in the checkout, never the
# system's. Installs Debian's postgresql and redis-server packages first when
# they are missing.
#
#   scripts/services.sh start NAME PG_PORT REDIS_PORT   # prints shell exports
#   scripts/services.sh stop  NAME [--purge]
#
# With WITH_PROMTOOL=1, start also installs Debian's prometheus package when
# promtool is missing (the tests check the alerting rules with it).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?usage: services.sh start|stop NAME ...}
name=${2:?usage: services.sh start|stop NAME ...}
run="$root/.run/$name"

log() { printf '%s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
	local missing=()
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	[ -n "$(pg_bin 2>/dev/null)" ] || missing+=(postgresql)
	if [ "${WITH_PROMTOOL:-}" = 1 ]; then
		command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]} from Debian's packages"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
	# The packages start system-wide servers we do not use.
	as_root systemctl disable --now redis-server prometheus prometheus-node-exporter >/dev/null 2>&1 || true
	as_root service redis-server stop >/dev/null 2>&1 || true
	as_root service prometheus stop >/dev/null 2>&1 || true
}

pg_bin() {
	ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root; then it runs as the postgres user.
pg_user() {
	if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi
}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The data folder must be reachable by the user that runs PostgreSQL; a
# checkout under a private home directory is not, so fall back to /tmp.
pg_dir() {
	local dir="$run/pg"
	if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$root" 2>/dev/null; then
		dir="${TMPDIR:-/tmp}/provisiond-$(echo "$root" | sha1sum | cut -c1-8)-$name-pg"
	fi
	echo "$dir"
}

start() {
	local pg_port=${3:?PG_PORT} redis_port=${4:?REDIS_PORT}
	install_packages
	mkdir -p "$run"
	local bin data
	bin=$(pg_bin)
	data=$(pg_dir)

	if [ ! -f "$data/PG_VERSION" ]; then
		mkdir -p "$data"
		[ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
		chmod 700 "$data"
		as_pg "$bin/initdb" -D "$data" -U provisiond --auth=trust -E UTF8 --no-instructions >"$run/initdb.log" 2>&1 ||
			{ cat "$run/initdb.log" >&2; exit 1; }
	fi
	local extra=()
	if [ "$name" = test ]; then
		# Test data is thrown away; durability only costs time there.
		extra=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
	fi
	if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		as_pg "$bin/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
			-o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300 ${extra[*]}" \
			start >/dev/null || { tail -n 20 "$data/server.log" >&2; exit 1; }
	fi
	"$bin/psql" -qAt -h 127.0.0.1 -p "$pg_port" -U provisiond -d postgres \
		-c "SELECT 1 FROM pg_database WHERE datname = 'provisiond'" | grep -q 1 ||
		"$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U provisiond provisiond

	local redis_conf=(--port "$redis_port" --bind 127.0.0.1 --dir "$run" --daemonize yes
		--pidfile "$run/redis.pid" --logfile "$run/redis.log" --databases 256)
	if [ "$name" = dev ]; then
		redis_conf+=(--appendonly yes)
	else
		redis_conf+=(--save '' --appendonly no)
	fi
	if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
		redis-server "${redis_conf[@]}"
		for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
		redis-cli -p "$redis_port" ping >/dev/null || { tail -n 20 "$run/redis.log" >&2; exit 1; }
	fi
	log "$name: PostgreSQL on 127.0.0.1:$pg_port (data $data), Redis on 127.0.0.1:$redis_port (data $run)"
	echo "$pg_port $redis_port" >"$run/ports"
}

stop() {
	local bin data
	bin=$(pg_bin)
	data=$(pg_dir)
	if [ -f "$run/ports" ]; then
		local redis_port
		redis_port=$(cut -d' ' -f2 "$run/ports")
		redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
	fi
	if [ -n "$bin" ] && [ -f "$data/PG_VERSION" ]; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	if [ "${3:-}" = --purge ]; then
		rm -rf "$run" "$data"
	fi
}

case "$cmd" in
start) start "$@" ;;
stop) stop "$@" ;;
*) log "usage: services.sh start|stop NAME ..."; exit 2 ;;
esac
