#!/usr/bin/env bash
# Runs the pinned sqlc through `go run`, so nothing needs installing.
#   scripts/sqlc.sh generate   regenerate queries/
#   scripts/sqlc.sh check      fail if queries/ is not what sqlc generates
set -euo pipefail
cd "$(dirname "$0")/.."
sqlc="github.com/sqlc-dev/sqlc/cmd/sqlc@v1.31.1"
case "${1:-generate}" in
generate) go run "$sqlc" generate -f queries/sqlc.yaml ;;
check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	cp -r queries "$tmp/before"
	go run "$sqlc" generate -f queries/sqlc.yaml
	if ! diff -r "$tmp/before" queries; then
		echo "queries/ differs from what sqlc generates: run 'make sqlc' and commit the result" >&2
		exit 1
	fi
	;;
*) echo "usage: scripts/sqlc.sh generate|check" >&2; exit 2 ;;
esac
