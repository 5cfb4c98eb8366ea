#!/usr/bin/env bash
# The chaos suite at any size: the real binaries on an Apache Kafka node, a
# PostgreSQL cluster and a Redis server of the run's own, while a persist process
# is SIGKILLed 20 times, a rebalance storm runs, the broker and PostgreSQL are
# killed and restarted 3 times each, Redis is paused and restarted, and 1% of the
# events are poison. A checker then counts missing, twice-applied and reordered
# matches, dead letters against the poison, and hero pools against a recount;
# the run fails when any is off. It prints the schedule as it goes and a report
# table at the end (the one docs/RELIABILITY.md keeps).
#
#   scripts/chaos.sh [MATCHES [RATE]]   default 1000000 matches at 1500/s, in release
#
# The test command runs the same suite with 100,000 matches
# (cli/tests/chaos/, test `chaos_on_kafka_loses_duplicates_and_reorders_nothing`).
set -euo pipefail
cd "$(dirname "$0")/.."
matches="${1:-1000000}"
rate="${2:-1500}"
bash scripts/services.sh packages >/dev/null
SCOUTSTREAM_CHAOS_MATCHES="$matches" SCOUTSTREAM_CHAOS_RATE="$rate" exec cargo test --release -p scoutstream --test chaos -- --nocapture
