# The two commands a new user needs are `make run` and `make test`.
.PHONY: run test bench chaos sqlc fmt vet

run: ## start API, workers, scheduler, dashboard and simulators, with demo data
	scripts/dev.sh

test: ## vet, sqlc check, every test against real PostgreSQL and Redis, and a short chaos run
	scripts/test.sh

bench: ## API vs bare enqueue, long-job hold, console fan-out, step runner, alert evaluation
	scripts/bench.sh

chaos: ## kill workers, API, scheduler and Redis under a job stream with provider faults; check the invariants (CHAOS_SHORT=1: short run)
	scripts/chaos.sh

sqlc: ## regenerate queries/ from queries/*.sql
	scripts/sqlc.sh generate

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	go vet ./...
