#!/usr/bin/env bash
# One-shot topic creation for docker-compose.yml, run inside the apache/kafka
# image (kafka-topics.sh lives in /opt/kafka/bin). Creates every topic the
# pipeline uses (schemas/src/topics.rs) with the configured partition count;
# topics that already exist are left as they are. `scoutstream run` also
# creates the ones it needs at start-up, with the same count (bus.partitions);
# doing it here first means no consumer ever subscribes to a missing topic.
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${PARTITIONS:-12}"
REPLICATION="${REPLICATION_FACTOR:-1}"
TOPICS=(matches players matches.enriched dead-letters jobs jobs.status)
KAFKA_TOPICS=/opt/kafka/bin/kafka-topics.sh

for attempt in $(seq 1 30); do
  if "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; then
    break
  fi
  if [ "$attempt" = 30 ]; then
    echo "create-topics: no broker answered at $BOOTSTRAP" >&2
    exit 1
  fi
  sleep 2
done

for topic in "${TOPICS[@]}"; do
  "$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$topic" --partitions "$PARTITIONS" --replication-factor "$REPLICATION"
done

# A topic created earlier with fewer partitions would cap the consumers: say so.
status=0
for topic in "${TOPICS[@]}"; do
  have=$("$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topic "$topic" \
    | grep -c 'Partition: ' || true)
  echo "create-topics: $topic has $have partitions"
  if [ "$have" -lt "$PARTITIONS" ]; then
    echo "create-topics: $topic has $have partitions, fewer than $PARTITIONS" >&2
    status=1
  fi
done
exit "$status"
