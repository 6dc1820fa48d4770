# shardsync — build, test, demo and benchmark entry points.
# Every target that needs Redis or nutcracker runs `deps` first, which installs
# what is missing (scripts/deps.sh; idempotent, quick when all is there).

SHELL := /bin/bash
CARGO ?= cargo
# Honour CARGO_TARGET_DIR, as cargo does, to find the binary.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/release/shardsync
SAMPLE_RDB := assets/sample.rdb

# Tests that need an older Redis (RDB 9, RESTORE into an older destination) read this.
SHARDSYNC_REDIS6_BIN ?= $(CURDIR)/.deps/redis-6.0.9/redis-server
export SHARDSYNC_REDIS6_BIN

.PHONY: help deps build test demo bench soak fuzz sample rdb-fixtures clean-bench

help:
	@echo "make demo     set up, build, start the local sandbox (real servers) and open the wizard on it"
	@echo "make test     set up, then fmt, clippy and every test (what CI runs)"
	@echo "make build    cargo build --release"
	@echo "make bench    build the benchmark RDBs (once), measure, write BENCHMARKS.md, cargo bench"
	@echo "make soak     production-size soak: 5 runs of 1M keys under live writes, every key compared (SOAK_RUNS=N)"
	@echo "make fuzz     a long run of the RDB parser fuzzer (mutated fixtures; FUZZ_CASES=N)"
	@echo "make sample   regenerate $(SAMPLE_RDB) from a real redis-server"
	@echo "make rdb-fixtures  regenerate tests/fixtures/rdb (the parser's corpus) from every server at hand"
	@echo "make deps     install redis, nutcracker, tmux, time and Redis 6.0.9 if missing"

deps:
	@scripts/deps.sh

build:
	$(CARGO) build --release

# `--all-targets` builds and runs unit, integration and example tests, and runs
# the criterion benches in test mode (each benchmark once, no timing); it skips
# doctests, hence the second `cargo test`.
test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(CARGO) test --doc

# A sandbox of real servers on loopback (2 masters with replicas behind
# nutcracker, an empty destination, sample data and a write load), the
# wizard filled with it; everything stops and is removed on exit.
demo: deps build
	$(BIN) demo

# Only when missing: the committed file makes `make demo` instant.
$(SAMPLE_RDB):
	scripts/make-sample-rdb.sh $@

sample:
	scripts/make-sample-rdb.sh $(SAMPLE_RDB)

# Regenerates the committed RDB corpus (tests/fixtures/rdb) from every Redis
# and Valkey version at hand; RDB_CORPUS=redis-7.0,valkey-9.1 limits it.
rdb-fixtures: deps
	$(CARGO) run --release --example rdb_corpus

# Settings: see the heads of scripts/bench-rdb.sh (MIXED_KEYS, LIST_LEN, RUNS, BENCH_DIR…)
# scripts/bench-sync.sh (SYNC_KEYS, SMALL_KEYS, RUNS, INCR_RUNS, INCR_REQUESTS…),
# scripts/bench-resilience.sh (RUNS, BACKLOG_REQUESTS, LOAD_REQUESTS) and
# scripts/bench-verify.sh (VERIFY_KEYS, RUNS), scripts/bench-heavy-lag.sh (ROUNDS, KEYS, REQUESTS)
# and scripts/bench-cluster.sh (ROUNDS, SYNC_KEYS).
bench: deps build
	SHARDSYNC_BIN=$(BIN) scripts/bench-rdb.sh
	scripts/bench-parse.sh
	$(CARGO) bench
	SHARDSYNC_BIN=$(BIN) scripts/bench-sync.sh
	SHARDSYNC_BIN=$(BIN) scripts/bench-resilience.sh
	SHARDSYNC_BIN=$(BIN) scripts/bench-verify.sh
	SHARDSYNC_BIN=$(BIN) scripts/bench-heavy-lag.sh
	SHARDSYNC_BIN=$(BIN) scripts/bench-cluster.sh

# The production-size soak (examples/soak/): fresh servers per run, about a
# million keys of every type, a writer of every seed command during the full
# copy, then every key compared; fails when any run differs. Outside
# `make test`: about 3 minutes a run on 2 cores. SOAK_ARGS passes more
# options (see `target/release/examples/soak --help`).
SOAK_RUNS ?= 5
SOAK_ARGS ?=
soak: deps build
	$(CARGO) build --release --example soak
	$(TARGET_DIR)/release/examples/soak --runs $(SOAK_RUNS) --bin $(BIN) --benchmarks-md BENCHMARKS.md $(SOAK_ARGS)

# `make test` runs 3000 mutated fixtures; this runs many more (about a minute
# per 100k cases on one core).
FUZZ_CASES ?= 200000
fuzz:
	SHARDSYNC_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release --test rdb_robustness mutated_fixtures_never_panic

clean-bench:
	rm -rf target/bench-data
