#!/usr/bin/env bash
# The one test command: installs and starts what the tests need
# (scripts/services.sh), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh
# The interop and API tests use this pinned venv (confluent-kafka, schemathesis).
bash scripts/python-env.sh >/dev/null
# Licences, banned crates and sources of the dependency tree (deny.toml).
bash scripts/supply-chain.sh
# Topics and databases of earlier runs (random hex ids) go first: one run at a
# time per broker and per PostgreSQL.
bash scripts/kafka.sh sweep
bash scripts/services.sh sweep

export SCOUTSTREAM_KAFKA_BROKERS="${SCOUTSTREAM_KAFKA_BROKERS:-127.0.0.1:9092}"
export SCOUTSTREAM_REDIS_URL="${SCOUTSTREAM_REDIS_URL:-redis://127.0.0.1:6379}"
export SCOUTSTREAM_DATABASE_URL="${SCOUTSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
# `#[sqlx::test]` makes its databases on this server (.cargo/config.toml has the default).
export DATABASE_URL="${DATABASE_URL:-$SCOUTSTREAM_DATABASE_URL}"
export SCOUTSTREAM_REGISTRY_URL="${SCOUTSTREAM_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
export RUST_LOG="${RUST_LOG:-warn}"

if command -v cargo-nextest >/dev/null; then
  # Two cores: two tests at a time keeps broker-timing tests honest.
  exec cargo nextest run --workspace --no-fail-fast --test-threads 2 "$@"
fi

# libtest prints one result line per test binary; the last line adds them up.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --no-fail-fast --lib --bins --tests -- --test-threads 2 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# What this run left behind goes too: a full disk fails the next build.
bash scripts/services.sh sweep || true
awk '/^test result:/ { passed += $4; failed += $6; skipped += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$log"
exit "$status"
