#!/usr/bin/env bash
# Peak memory while draining a large Kafka backlog: publishes EVENTS events
# (one match per nine player profiles) on the shared Kafka, then runs persist,
# enrich and cache as separate processes until each has caught up. Fails when
# any process peaks at 300 MiB or more; prints drain time, events/s and peak
# RSS per process (the table docs/RELIABILITY.md keeps).
#
#   scripts/backlog-memory.sh [EVENTS]   default 5000000, in release
#
# The test command runs the same test with 100,000 events
# (cli/tests/backlog_memory.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-5000000}"
bash scripts/services.sh >/dev/null
export SCOUTSTREAM_KAFKA_BROKERS="${SCOUTSTREAM_KAFKA_BROKERS:-127.0.0.1:9092}"
export SCOUTSTREAM_REDIS_URL="${SCOUTSTREAM_REDIS_URL:-redis://127.0.0.1:6379}"
export SCOUTSTREAM_DATABASE_URL="${SCOUTSTREAM_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
SCOUTSTREAM_BACKLOG_EVENTS="$events" exec cargo test --release -p scoutstream --test backlog_memory -- --nocapture
