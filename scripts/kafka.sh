#!/usr/bin/env bash
# The local Apache Kafka node (KRaft, broker + controller) the tests, benchmarks
# and local runs use, on 127.0.0.1:9092.
#
#   scripts/kafka.sh install   resolve the broker's jars from Maven Central into the cache
#   scripts/kafka.sh start     install if needed, format once, start, wait for metadata
#   scripts/kafka.sh stop      SIGTERM, wait for a clean shutdown
#   scripts/kafka.sh kill      SIGKILL (tests use it to crash the broker)
#   scripts/kafka.sh pid       print the running broker's pid
#   scripts/kafka.sh sweep     delete the topics earlier test and benchmark runs left behind
#
# Jars live in $SCOUTSTREAM_CACHE_DIR/kafka-<version>/libs (default ~/.cache/scoutstream);
# data, pid and the broker's log (server.log) in $SCOUTSTREAM_KAFKA_STATE_DIR (default
# /tmp/scoutstream-services/kafka). A test that kills the broker starts a private one
# with its own state dir and ports (SCOUTSTREAM_KAFKA_PORT, _CONTROLLER_PORT, _HEAP),
# tied to its own lifetime by SCOUTSTREAM_KAFKA_OWNER_PID. A test of security settings
# adds listeners with SCOUTSTREAM_KAFKA_EXTRA_PROPERTIES (a file appended to
# server.properties; later keys win) and SCRAM users with SCOUTSTREAM_KAFKA_ADD_SCRAM
# (one `SCRAM-SHA-512=[name=…,password=…]` per line, stored when the node is formatted).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/kafka/pom.xml")"
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
LOG_DIR="${SCOUTSTREAM_LOG_DIR:-/tmp/scoutstream-services}"
STATE_DIR="${SCOUTSTREAM_KAFKA_STATE_DIR:-$LOG_DIR/kafka}"
DATA_DIR="$STATE_DIR/data"
PID_FILE="$STATE_DIR/kafka.pid"
LOG_FILE="$STATE_DIR/server.log"
PORT="${SCOUTSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${SCOUTSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
HEAP="${SCOUTSTREAM_KAFKA_HEAP:-1g}"
# A broker that loads many logs after an unclean stop keeps writing progress to its
# log: start-up waits as long as it does, up to the hard limit.
STALL_TIMEOUT_SECS=120
START_LIMIT_SECS=900
# Tests and benchmarks name their topics with a random hex id (uuid-based); user
# topics on this development broker do not. A Java regex matched against the whole
# name; no comma, the tool reads commas as alternatives.
DEBRIS_TOPICS='.*[0-9a-f]{10}.*'

say() { printf 'kafka: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && grep -q 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

java_bin() {
  command -v java >/dev/null || die "java not found: Apache Kafka $KAFKA_VERSION needs Java 17 or newer"
  echo java
}

tool() {
  "$(java_bin)" -Xmx256m -Dlog4j2.configurationFile="$HERE/kafka/tools-log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

install() {
  if [ -f "$KAFKA_HOME/.installed" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: Maven resolves the broker's jars from Maven Central"
  say "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (about 1 minute, once per machine)"
  mkdir -p "$LOG_DIR"
  rm -rf "$KAFKA_HOME/libs"
  if ! mvn -B -q -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" >"$LOG_DIR/kafka-install.log" 2>&1; then
    tail -30 "$LOG_DIR/kafka-install.log" >&2
    die "could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central (log: $LOG_DIR/kafka-install.log)"
  fi
  [ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after resolution"
  touch "$KAFKA_HOME/.installed"
}

# Data of a previous boot of this machine is test debris: start that broker empty.
format_once() {
  local boot_id
  boot_id="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)"
  if [ -f "$DATA_DIR/meta.properties" ] && [ "$(cat "$STATE_DIR/boot_id" 2>/dev/null)" = "$boot_id" ]; then
    return 0
  fi
  rm -rf "$DATA_DIR"
  mkdir -p "$DATA_DIR"
  local cluster_id scram=() user
  cluster_id="$(tool kafka.tools.StorageTool random-uuid)"
  while IFS= read -r user; do
    [ -n "$user" ] && scram+=(--add-scram "$user")
  done <<<"${SCOUTSTREAM_KAFKA_ADD_SCRAM:-}"
  tool kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE_DIR/server.properties" \
    "${scram[@]}" >/dev/null || die "formatting $DATA_DIR failed"
  echo "$boot_id" >"$STATE_DIR/boot_id"
  say "formatted $DATA_DIR (cluster $cluster_id)"
}

log_size() { stat -c %s "$LOG_FILE" 2>/dev/null || echo 0; }

wait_for_metadata() {
  local started=$1 pid=$2 size last_progress last_size=-1 now
  last_progress="$started"
  until port_open "$PORT" && tool org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$PORT" --list >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$LOG_FILE" >&2; die "the broker exited during start-up (log: $LOG_FILE)"; }
    now="$(date +%s)"
    size="$(log_size)"
    if [ "$size" != "$last_size" ]; then last_size="$size"; last_progress="$now"; fi
    if [ $(( now - last_progress )) -ge "$STALL_TIMEOUT_SECS" ] || [ $(( now - started )) -ge "$START_LIMIT_SECS" ]; then
      tail -30 "$LOG_FILE" >&2
      die "no metadata answer after $(( now - started ))s, the log silent for $(( now - last_progress ))s (log: $LOG_FILE)"
    fi
    sleep 0.5
  done
}

# Every test and benchmark topic carries a random hex id. Their runs do not delete
# what they create, so the test command sweeps before it starts: left alone, they
# grew to 6,900 partitions and 19 GB here, and a broker restart spent minutes loading them.
sweep() {
  running_pid >/dev/null || die "not running; start it first"
  local count
  count="$(tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" \
    --list --exclude-internal | grep -cE "^${DEBRIS_TOPICS}$" || true)"
  if [ "$count" -eq 0 ]; then say "sweep: no test topics left behind"; return 0; fi
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" \
    --delete --if-exists --topic "$DEBRIS_TOPICS" >/dev/null ||
    die "sweep: deleting $count test topics failed"
  say "sweep: deleted $count topics earlier test and benchmark runs left behind"
}

# A private broker dies with the process that owns it (SCOUTSTREAM_KAFKA_OWNER_PID),
# even when that process is killed before it can stop the broker itself.
watch_owner() {
  [ -n "${SCOUTSTREAM_KAFKA_OWNER_PID:-}" ] || return 0
  setsid nohup bash -c 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 2; done
    kill -9 "$2" 2>/dev/null' _ "$SCOUTSTREAM_KAFKA_OWNER_PID" "$1" >/dev/null 2>&1 </dev/null &
}

start() {
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is taken by another process; stop it first"
  install
  mkdir -p "$STATE_DIR"
  sed -e "s:@DATA_DIR@:$DATA_DIR:" -e "s/@PORT@/$PORT/g" -e "s/@CONTROLLER_PORT@/$CONTROLLER_PORT/g" \
    "$HERE/kafka/server.properties" >"$STATE_DIR/server.properties"
  if [ -n "${SCOUTSTREAM_KAFKA_EXTRA_PROPERTIES:-}" ]; then
    cat "$SCOUTSTREAM_KAFKA_EXTRA_PROPERTIES" >>"$STATE_DIR/server.properties"
  fi
  sed "s:@LOG_FILE@:$LOG_FILE:" "$HERE/kafka/log4j2.properties" >"$STATE_DIR/log4j2.properties"
  format_once
  local started
  started="$(date +%s)"
  # setsid: the broker outlives the shell (and test process) that started it.
  setsid nohup "$(java_bin)" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$STATE_DIR/server.properties" \
    >"$STATE_DIR/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  watch_owner "$pid"
  wait_for_metadata "$started" "$pid"
  say "Apache Kafka $KAFKA_VERSION serving metadata on 127.0.0.1:$PORT after $(( $(date +%s) - started ))s (pid $pid, log $LOG_FILE)"
}

stop_with() {
  local signal=$1 pid
  pid="$(running_pid)" || { say "not running"; return 0; }
  kill "-$signal" "$pid"
  for _ in $(seq 1 600); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; say "stopped (SIG$signal)"; return 0; }
    sleep 0.1
  done
  die "pid $pid still alive 60s after SIG$signal"
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop_with TERM ;;
  kill) stop_with KILL ;;
  pid) running_pid || exit 1 ;;
  sweep) sweep ;;
  *) die "usage: $0 install|start|stop|kill|pid|sweep" ;;
esac
