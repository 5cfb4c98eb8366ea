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
#   scripts/chaos.sh [MATCHES [RATE [BUS]]]
#
# default 1000000 matches at 1500/s on BUS `kafka`, in release; BUS `redis`
# puts the groups on Redis Streams (Redis is then the broker the faults kill).
# The test command runs both with 100,000 matches (cli/tests/chaos/, tests
# `chaos_on_kafka_…` and `chaos_on_redis_streams_…`).
set -euo pipefail
cd "$(dirname "$0")/.."
matches="${1:-1000000}"
rate="${2:-1500}"
case "${3:-kafka}" in
  kafka) test_name=chaos_on_kafka_loses_duplicates_and_reorders_nothing ;;
  redis) test_name=chaos_on_redis_streams_loses_duplicates_and_reorders_nothing ;;
  *) echo "chaos.sh: BUS must be kafka or redis, not '$3'" >&2; exit 2 ;;
esac
bash scripts/services.sh packages >/dev/null
SCOUTSTREAM_CHAOS_MATCHES="$matches" SCOUTSTREAM_CHAOS_RATE="$rate" exec cargo test --release -p scoutstream --test chaos -- --nocapture --exact "$test_name"
