# The two commands: `make run` and `make test`. Everything else is a step they use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export PATH := $(HOME)/.cargo/bin:$(CURDIR)/end2end/node_modules/.bin:$(PATH)

.PHONY: help run run-cluster test test-cluster dist setup setup-test stores build-release check unit e2e stop bench-history bench-replay bench-sign-in bench-sign-in-flood bench-alerts bench-backup bench-webhooks bench-pitr bench-recover

help:
	@echo "make run    install what is missing, start PostgreSQL + ClickHouse, build, serve http://127.0.0.1:3000/admin"
	@echo "make test   start the stores, then fmt, clippy (server + wasm), the release build, unit + integration tests,"
	@echo "            browser tests against the release build, and a check that make run serves the console"
	@echo "make run-cluster     make run with ClickHouse on a local cluster of two replicas (see README: ClickHouse cluster)"
	@echo "make test-cluster    only the ClickHouse cluster tests (make test runs them too), on a local cluster"
	@echo "make dist   the release binary, with the console's site embedded, in dist/salvage (see README: Deploying)"
	@echo "make stop   stop the local stores"
	@echo "make bench-history   a million history entries: page queries, chain verification, sign-in timing"
	@echo "make bench-replay    a million queued rows: replay rows/s against plain inserts and deletes"
	@echo "make bench-alerts    10,000 resolved and 500 open alerts: self-monitor and alerts page timings"
	@echo "make bench-webhooks  webhook deliveries/s against a plain HTTP client, and a redrive of 100,000 dead letters"
	@echo "make bench-backup    a million ClickHouse rows and the demo data: backup and restore against pg_dump and clickhouse-client"
	@echo "make bench-pitr      PostgreSQL restored to latest from pgBackRest (demo + 1 GB): Salvage against by hand"
	@echo "make bench-recover   total loss of both stores (demo + 1M ClickHouse rows): salvage recover against the raw tools by hand"
	@echo "make bench-sign-in   300 concurrent password checks: peak memory with and without the gate"
	@echo "make bench-sign-in-flood  salvage serve under setup and sign-in floods: memory and a real sign-in's time"

## Build and serve the console (release build) against the local stores.
## SALVAGE_ENV_FILE names another settings file (scripts/test-run.sh runs it on private stores).
run: setup stores build-release
	set -a; . "$${SALVAGE_ENV_FILE:-./.env}"; \
	if [ -n "$$SALVAGE_RUN_CLUSTER" ]; then . .stores/cluster/env; fi; set +a; \
	export SALVAGE_WEBHOOK_ALLOW_PRIVATE=on SALVAGE_DEMO_RECEIVER=180 \
	  SALVAGE_MIGRATION_CHUNK_ROWS=500 SALVAGE_MIGRATION_CHUNK_PAUSE_MS=1000; \
	./target/release/salvage migrate && \
	./target/release/salvage demo && \
	{ (sleep 3; exec ./target/release/salvage demo traffic) & } && \
	exec ./target/release/salvage serve

## make run with ClickHouse on the local cluster (ZooKeeper + two replicas) instead of one server.
run-cluster:
	scripts/stores.sh start cluster
	$(MAKE) run SALVAGE_RUN_CLUSTER=1

## Every check CI runs.
test: setup-test stores
	scripts/test.sh

## The ClickHouse cluster tests alone: ZooKeeper and two ClickHouse replicas, started and
## stopped around them (make test runs them as one of its steps).
test-cluster: setup-test stores
	scripts/stores.sh start cluster
	timeout 600 cargo test -p salvage -p app --features app/ssr -- --ignored cluster:: ; \
	  status=$$?; scripts/stores.sh stop cluster; exit $$status

## One file to deploy: the release binary with the site embedded.
dist: setup build-release
	mkdir -p dist
	cp target/release/salvage dist/salvage
	@echo "dist/salvage: $$(stat -c %s dist/salvage) bytes, the site embedded"
	@sha256sum dist/salvage

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

stores:
	scripts/stores.sh start

## The release build (server + site), skipped when no source changed since the last one.
build-release:
	scripts/build.sh --if-changed

stop:
	scripts/stores.sh stop

## Benchmark: the history page's queries at a million entries (prints figures).
bench-history: stores
	cargo run -q --release -p salvage --features app/ssr --example bench_history -- 1000000

## Benchmark: replay of a million queued rows against its two bounds (prints figures).
bench-replay: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage bench replay --rows 1000000

## Benchmark: the self-monitor and /admin/alerts with 10,000 resolved and 500 open alerts.
bench-alerts: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage bench alerts --resolved 10000 --open 500

## Benchmark: peak memory of 300 concurrent password checks, gated and ungated.
bench-backup: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage bench backup --rows 1000000

## Benchmark: PostgreSQL restored to latest from pgBackRest, Salvage's pitr-restore against by hand.
bench-pitr: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage migrate && ./target/release/salvage demo && \
	  ./target/release/salvage bench pitr --gb 1

## Benchmark: the recovery time of a total loss (both servers' data deleted), salvage recover
## against pgBackRest, pg_dump/pg_restore, age, lz4 and clickhouse-client run by hand.
bench-recover: setup build-release
	scripts/bench-recover.sh 1000000

## Benchmark: webhook deliveries/s against a plain HTTP client; a redrive of 100,000 dead letters.
bench-webhooks: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage bench webhooks --deliveries 5000 --dead-letters 100000

bench-sign-in:
	cargo run -q --release -p salvage --features app/ssr --example bench_sign_in

## Benchmark: a real salvage serve flooded with setup posts and wrong sign-ins (16 loops,
## 10 s each): its resident memory (start, peak, settled) and a real sign-in's time.
bench-sign-in-flood: setup stores build-release
	set -a; . ./.env; set +a; ./target/release/salvage bench sign-in-flood
