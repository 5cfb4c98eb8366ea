#!/usr/bin/env bash
# The one test command: starts what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

export SCOUTSTREAM_KAFKA_BROKERS="${SCOUTSTREAM_KAFKA_BROKERS:-127.0.0.1:9092}"
export SCOUTSTREAM_REDIS_URL="${SCOUTSTREAM_REDIS_URL:-redis://127.0.0.1:6379}"
export SCOUTSTREAM_DATABASE_URL="${SCOUTSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export RUST_LOG="${RUST_LOG:-warn}"

if command -v cargo-nextest >/dev/null; then
  # Two cores: two tests at a time keeps broker-timing tests honest.
  cargo nextest run --workspace --no-fail-fast --test-threads 2 "$@"
else
  cargo test --workspace --no-fail-fast -- --test-threads 2 "$@"
fi
