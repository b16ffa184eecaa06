# Developer entry points. `make` (or `make help`) lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Ports of the throwaway services; scripts/services.sh and scripts/run.sh read them too.
PG_PORT ?= 5432
REDIS_PORT ?= 6379
export PG_PORT REDIS_PORT

# The services' connection strings (what `scripts/services.sh env` prints). A value already
# in the environment or given on the command line wins. Only `test` and `sqlx-prepare` pass
# them on; `run` leaves the choice to scripts/run.sh, which also honours `.env`.
DATABASE_URL ?= postgres://coinpulse:coinpulse@127.0.0.1:$(PG_PORT)/coinpulse
REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)

# The sqlx query macros read the committed .sqlx data instead of a live database, so build,
# test and lint never need Postgres to compile. `make sqlx-prepare` regenerates that data.
export SQLX_OFFLINE ?= true

.PHONY: help services-up services-down test-tools build run test lint deny fmt sqlx-prepare bench ci

help: ## List the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN { FS = ":.*## " } /^[a-z-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

services-up: ## Start local Postgres and Redis (installs them with apt when missing)
	scripts/services.sh up

services-down: ## Stop the local Postgres and Redis and delete their data
	scripts/services.sh down

test-tools: ## Install the outside tools tests use as judges (promtool) when missing
	scripts/services.sh tools

build: ## Build every crate (debug)
	cargo build --workspace

run: services-up ## Run api and worker in the foreground; Ctrl-C stops both
	cargo build -p api -p worker
	scripts/run.sh

test: services-up test-tools ## Run all tests against the local services (extra cargo args: TEST_ARGS='...')
	DATABASE_URL='$(DATABASE_URL)' REDIS_URL='$(REDIS_URL)' cargo test --workspace $(TEST_ARGS)

lint: ## Check formatting, then clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

deny: ## Check dependency licenses, bans and sources against deny.toml (installs cargo-deny when missing)
	scripts/deny.sh

fmt: ## Format all crates
	cargo fmt --all

sqlx-prepare: services-up ## Regenerate the .sqlx offline query data from the migrations
	DATABASE_URL='$(DATABASE_URL)' scripts/sqlx-prepare.sh

bench: ## Benchmark api, worker and job queue against same-session ceilings (target/bench/report.md)
	scripts/bench.sh

ci: ## What CI runs: lint and test, then stop the services
	.ci/run
