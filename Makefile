# FinStream ingest. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PRODUCERS := market news social sec altdata
KAFKA_PORT ?= 9092
export KAFKA_PORT
# Tests always use the local broker started by `make kafka-up`.
TEST_ENV := KAFKA_BROKERS=127.0.0.1:$(KAFKA_PORT)
DOCKER ?= docker
IMAGE_PREFIX ?= finstream
IMAGE_TAG ?= dev
# make docker-push / k8s-manifests: where the images go (REGISTRY/<name>:IMAGE_TAG) and the
# namespace of the Kubernetes resources. PUSH_FLAGS: extra flags for `push` (podman:
# --tls-verify=false for a plain-HTTP registry).
REGISTRY ?=
NAMESPACE ?=
PUSH_FLAGS ?=
IMAGES := $(addsuffix -producer,$(PRODUCERS)) provider-sim
# podman builds OCI images by default, which have no HEALTHCHECK: ask for Docker's format.
BUILD_FORMAT := $(if $(filter podman,$(notdir $(DOCKER))),--format docker)

.PHONY: help deps build test test-ca test-unit test-integration test-chaos test-chaos-release bench run $(addprefix run-,$(PRODUCERS)) \
        kafka-up kafka-down kafka-secure-up kafka-secure-down kafka-chaos-up kafka-chaos-down kafka-cluster-up kafka-cluster-down kafka-topics kafka-clean \
        docker-build docker-push k8s-manifests check-deploy sync-configmap fmt fmt-check lint coverage clean fuzz fuzz-ci deny \
        test-containers containers-clean $(addsuffix -producer,$(PRODUCERS)) provider-sim

help: ## this list
	@grep -E '^[a-zA-Z0-9_ -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

deps: ## install system packages, Kafka jars (Maven Central) and Rust crates
	scripts/deps.sh

build: ## build all crates (debug)
	cargo build --workspace --all-targets --locked

test-ca: ## the test CA and certificates provider-sim serves https:// and wss:// with (.local/test-ca)
	scripts/test-ca.sh

test: test-ca kafka-up kafka-secure-up kafka-cluster-up kafka-chaos-up ## all tests (unit + integration + chaos) against the real local Kafka
	cargo build --workspace --bins --locked  # every binary, provider-sim included (deploy checks run them)
	$(TEST_ENV) cargo test --workspace --locked

test-unit: ## unit tests only (no Kafka needed)
	cargo test --workspace --locked --lib --bins

test-integration: test-ca kafka-up kafka-secure-up kafka-cluster-up kafka-chaos-up ## integration tests only (real Kafka)
	cargo build --workspace --bins --locked
	$(TEST_ENV) cargo test --workspace --locked --test '*'

test-chaos: kafka-up kafka-cluster-up kafka-chaos-up ## chaos scenarios: leader kills and 2 of 3 down on the cluster, broker SIGKILL under a market stream, spool overflow, producer kill -9 (debug build: part of `make test`)
	$(TEST_ENV) cargo test --locked -p ingest-core --test chaos -- --nocapture
	$(TEST_ENV) cargo test --locked -p market-producer --test chaos -- --nocapture

test-chaos-release: test-ca kafka-up kafka-chaos-up ## the market chaos scenarios built in release (the profile the images ship): the 100k ticks/s figures; run by CI
	$(TEST_ENV) cargo test --release --locked -p market-producer --test chaos -- --nocapture

fuzz: ## fuzz every wire parser with cargo-fuzz, FUZZ_SECS (default 60) per target; table in .local/fuzz/summary.txt
	scripts/fuzz.sh

fuzz-ci: ## the fuzz targets for a fixed 20,000 inputs each (seed 1), as CI runs them
	FUZZ_RUNS=20000 scripts/fuzz.sh

bench: kafka-up ## benchmarks: hot path (Criterion, allocations/tick), end to end through the local Kafka per Kafka profile (shipped, seed) with its ceiling (kafka-producer-perf-test), a paced 100k ticks/s latency run and the broker CPU per record
	cargo bench --locked -p market-producer --bench pipeline
	$(TEST_ENV) BENCH_PROFILE=shipped cargo bench --locked -p market-producer --bench e2e
	$(TEST_ENV) BENCH_PROFILE=seed cargo bench --locked -p market-producer --bench e2e

market-producer news-producer social-producer sec-producer altdata-producer provider-sim: ## one binary, release build: target/release/<name>
	cargo build --release --locked -p $@ --bin $@

run: ## local Kafka + all five producers (demo mode without API keys); run-<market|news|social|sec|altdata> for one
	scripts/run-local.sh all

run-market run-news run-social run-sec run-altdata: run-%: ## local Kafka + that one producer (demo mode without its API keys)
	scripts/run-local.sh $*

kafka-up: ## start the single-node local Kafka (127.0.0.1:$KAFKA_PORT) and create the topics
	scripts/kafka.sh up

kafka-down: ## stop every local broker make test starts (single node, secure, three-node cluster, chaos node); data kept (make kafka-clean deletes it)
	scripts/kafka.sh down
	scripts/kafka.sh secure-down
	scripts/kafka.sh cluster-down
	scripts/kafka.sh chaos-down

kafka-secure-up: ## start the TLS + SASL/SCRAM-SHA-512 test broker (localhost:9293; test CA and user in .local/kafka/secure)
	scripts/kafka.sh secure-up

kafka-secure-down: ## stop it
	scripts/kafka.sh secure-down

kafka-cluster-up: ## start a three-node local Kafka cluster (RF=3, min.insync.replicas=2)
	scripts/kafka.sh cluster-up

kafka-chaos-up: ## start the single node the chaos tests SIGKILL (127.0.0.1:29092)
	scripts/kafka.sh chaos-up

kafka-chaos-down: ## stop it
	scripts/kafka.sh chaos-down

kafka-cluster-down: ## stop the three-node cluster
	scripts/kafka.sh cluster-down

sync-configmap: ## copy configs/config.yaml, create-topics.sh, topics.txt and the alert rules into the Kubernetes manifests (make test checks they are equal)
	scripts/sync-configmap.sh

kafka-topics: ## list topics and partition counts
	scripts/kafka.sh topics

kafka-clean: ## stop every local broker (as kafka-down) and delete their data
	scripts/kafka.sh clean

docker-build: ## build one image per producer, and provider-sim's (Docker, or DOCKER=podman; one shared compile)
	@$(DOCKER) info >/dev/null 2>&1 || { echo "docker-build: no Docker engine reachable ($(DOCKER) info failed)"; exit 1; }
	for p in $(PRODUCERS); do \
	  $(DOCKER) build $(BUILD_FORMAT) --build-arg PRODUCER=$$p-producer --build-arg REVISION=$$(git rev-parse --short=12 HEAD 2>/dev/null) \
	    -t $(IMAGE_PREFIX)/$$p-producer:$(IMAGE_TAG) . || exit 1; \
	done
	$(DOCKER) build $(BUILD_FORMAT) --target provider-sim --build-arg REVISION=$$(git rev-parse --short=12 HEAD 2>/dev/null) \
	  -t $(IMAGE_PREFIX)/provider-sim:$(IMAGE_TAG) .

docker-push: ## push the images docker-build made to REGISTRY as REGISTRY/<name>:IMAGE_TAG (e.g. make docker-build docker-push REGISTRY=registry.example.com/finstream IMAGE_TAG=0.1.0)
	@test -n "$(REGISTRY)" || { echo "docker-push: set REGISTRY, e.g. make docker-build docker-push REGISTRY=registry.example.com/finstream IMAGE_TAG=0.1.0" >&2; exit 2; }
	@for i in $(IMAGES); do \
	  $(DOCKER) image inspect $(IMAGE_PREFIX)/$$i:$(IMAGE_TAG) >/dev/null 2>&1 || { echo "docker-push: no image $(IMAGE_PREFIX)/$$i:$(IMAGE_TAG): run make docker-build IMAGE_TAG=$(IMAGE_TAG) first" >&2; exit 1; }; \
	  $(DOCKER) tag $(IMAGE_PREFIX)/$$i:$(IMAGE_TAG) $(REGISTRY)/$$i:$(IMAGE_TAG) || exit 1; \
	  echo "pushing $(REGISTRY)/$$i:$(IMAGE_TAG)"; \
	  $(DOCKER) push $(PUSH_FLAGS) $(REGISTRY)/$$i:$(IMAGE_TAG) || exit 1; \
	done

k8s-manifests: ## the Kubernetes manifests for REGISTRY, IMAGE_TAG and NAMESPACE (kustomize, nothing edited): make k8s-manifests REGISTRY=… IMAGE_TAG=0.1.0 | kubectl apply -f -
	@REGISTRY=$(REGISTRY) IMAGE_TAG=$(if $(filter command line environment,$(origin IMAGE_TAG)),$(IMAGE_TAG)) NAMESPACE=$(NAMESPACE) scripts/k8s-manifests.sh

test-containers: ## with podman: the six images built from the Dockerfile, each checked (non-root, --version names the commit, HEALTHCHECK passes, demo records reach Kafka), pushed to a local registry with docker-push and found there by the rendered Kubernetes manifests, then docker-compose.yml started as a whole (records in every topic, producers ready, Prometheus targets up); run by CI
	scripts/containers.sh test

containers-clean: ## remove the containers, networks and volumes test-containers made (it does so itself, also on failure)
	scripts/containers.sh clean

check-deploy: kafka-up ## deployment checks: compose, hadolint, promtool, Kubernetes schemas, live Prometheus scrape (part of `make test`)
	cargo build --workspace --bins --locked
	$(TEST_ENV) cargo test --locked -p deploy-check

fmt: ## format the code
	cargo fmt --all

fmt-check: ## check formatting (the fuzz crate too)
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check

lint: ## clippy (warnings are errors; clippy.toml's disallowed methods) and the searchable invariants of ARCHITECTURE.md, each shown to fail on a violation
	cargo clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-invariants.sh
	scripts/check-invariants.sh --self-test

deny: ## cargo-deny: licenses, bans, sources, and advisories when GitHub is reachable (deny.toml; installs cargo-deny if missing)
	@cargo deny --version 2>/dev/null | grep -q "0.20.2" || cargo install cargo-deny --locked --version 0.20.2
	cargo deny --offline check licenses bans sources
	@if cargo deny fetch db >/dev/null 2>&1; then cargo deny check advisories; \
	else echo "deny: the RustSec database cannot be fetched (no network?): advisories not checked; offline: scripts/advisories-offline.sh <snapshot.tar.gz>"; fi

coverage: test-ca kafka-up kafka-secure-up kafka-cluster-up kafka-chaos-up ## HTML coverage report in coverage/ over every test, with every broker the tests need (installs cargo-tarpaulin if missing)
	@command -v cargo-tarpaulin >/dev/null || cargo install cargo-tarpaulin --locked
	$(TEST_ENV) cargo tarpaulin --workspace --out Html --output-dir coverage --target-dir target/tarpaulin \
	  --skip-clean --follow-exec --timeout 300
	@echo "coverage report: coverage/tarpaulin-report.html"

clean: ## remove build output (not the Kafka data: make kafka-clean)
	cargo clean
	rm -rf coverage
