#!/usr/bin/env bash
# The local schema registry the tests, benchmarks and local runs use: Apicurio Registry
# with in-memory storage (H2 in memory: every start begins empty), its
# Confluent-compatible API at http://127.0.0.1:8081/apis/ccompat/v7.
#
#   scripts/registry.sh install   resolve Apicurio's ready application from Maven Central into the cache
#   scripts/registry.sh start     install if needed, start, wait until the ccompat API answers
#   scripts/registry.sh stop      SIGTERM, wait for the JVM to exit
#   scripts/registry.sh pid       print the running registry's pid
#
# The application lives in $SCOUTSTREAM_CACHE_DIR/apicurio-<version>/ (default
# ~/.cache/scoutstream); pid and log (registry.log) in $SCOUTSTREAM_REGISTRY_STATE_DIR
# (default /tmp/scoutstream-services/registry). Apicurio 3.x needs Java 21 or newer:
# $SCOUTSTREAM_REGISTRY_JAVA, else $JAVA_HOME, `java` or a JDK under /usr/lib/jvm.
#
# Settings: SCOUTSTREAM_REGISTRY_PORT (8081), SCOUTSTREAM_REGISTRY_MANAGEMENT_PORT
# (health and metrics, port + 1000), SCOUTSTREAM_REGISTRY_HEAP (384m), and
# SCOUTSTREAM_REGISTRY_COMPATIBILITY (BACKWARD, Confluent's default): the default global
# compatibility rule, enforced on registration (HTTP 409) until `PUT /config` or
# `PUT /config/<subject>` sets another; NONE starts with no rule, Apicurio's own default.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APICURIO_VERSION="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$HERE/registry/pom.xml")"
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
APICURIO_HOME="$CACHE_DIR/apicurio-$APICURIO_VERSION"
APP_DIR="$APICURIO_HOME/quarkus-app"
LOG_DIR="${SCOUTSTREAM_LOG_DIR:-/tmp/scoutstream-services}"
STATE_DIR="${SCOUTSTREAM_REGISTRY_STATE_DIR:-$LOG_DIR/registry}"
PID_FILE="$STATE_DIR/registry.pid"
LOG_FILE="$STATE_DIR/registry.log"
PORT="${SCOUTSTREAM_REGISTRY_PORT:-8081}"
MANAGEMENT_PORT="${SCOUTSTREAM_REGISTRY_MANAGEMENT_PORT:-$((PORT + 1000))}"
HEAP="${SCOUTSTREAM_REGISTRY_HEAP:-384m}"
COMPATIBILITY="${SCOUTSTREAM_REGISTRY_COMPATIBILITY:-BACKWARD}"
READY_PATH=/apis/ccompat/v7/subjects
START_LIMIT_SECS=180
MIN_JAVA=21

say() { printf 'registry: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The status code of GET $READY_PATH, without curl (not on every machine).
ready_status() {
  timeout 5 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
    read -r _ code _ <&3 && echo "$code"' _ "$PORT" "$READY_PATH" 2>/dev/null
}

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && grep -q "apicurio-$APICURIO_VERSION" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

# The first Java $MIN_JAVA+ of: $SCOUTSTREAM_REGISTRY_JAVA, $JAVA_HOME, `java`, /usr/lib/jvm/* (newest first).
java_bin() {
  local candidates=() c major
  [ -n "${SCOUTSTREAM_REGISTRY_JAVA:-}" ] && candidates+=("$SCOUTSTREAM_REGISTRY_JAVA")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null && candidates+=("$(command -v java)")
  while IFS= read -r c; do candidates+=("$c"); done < <(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV)
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    major="$(java_major "$c")"
    if [ -n "$major" ] && [ "$major" -ge "$MIN_JAVA" ]; then echo "$c"; return 0; fi
  done
  die "no Java $MIN_JAVA or newer found (looked at: ${candidates[*]:-none}): Apicurio Registry $APICURIO_VERSION is compiled for Java $MIN_JAVA; set SCOUTSTREAM_REGISTRY_JAVA to a java binary"
}

install() {
  if [ -f "$APICURIO_HOME/.installed" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: Maven resolves Apicurio Registry from Maven Central"
  say "resolving Apicurio Registry $APICURIO_VERSION from Maven Central into $APICURIO_HOME (160 MB, once per machine)"
  mkdir -p "$LOG_DIR"
  rm -rf "$APICURIO_HOME"
  mkdir -p "$APICURIO_HOME/download"
  if ! mvn -B -q -f "$HERE/registry/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$APICURIO_HOME/download" >"$LOG_DIR/registry-install.log" 2>&1; then
    tail -30 "$LOG_DIR/registry-install.log" >&2
    die "could not resolve io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all from Maven Central (log: $LOG_DIR/registry-install.log)"
  fi
  local archive="$APICURIO_HOME/download/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
  [ -f "$archive" ] || die "$archive missing after resolution (log: $LOG_DIR/registry-install.log)"
  mkdir -p "$APP_DIR"
  tar -xzf "$archive" -C "$APP_DIR" --no-same-owner || die "unpacking $archive failed"
  rm -rf "$APICURIO_HOME/download"
  [ -f "$APP_DIR/quarkus-run.jar" ] || die "quarkus-run.jar missing in $archive"
  touch "$APICURIO_HOME/.installed"
}

wait_ready() {
  local started_ns=$1 pid=$2
  until [ "$(ready_status)" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$LOG_FILE" >&2; die "the registry exited during start-up (log: $LOG_FILE)"; }
    if [ $(( ($(date +%s%N) - started_ns) / 1000000000 )) -ge "$START_LIMIT_SECS" ]; then
      tail -30 "$LOG_FILE" >&2
      die "GET $READY_PATH did not answer 200 within ${START_LIMIT_SECS}s (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
}

start() {
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT is taken by another process; stop it first"
  port_open "$MANAGEMENT_PORT" && die "management port $MANAGEMENT_PORT is taken by another process; set SCOUTSTREAM_REGISTRY_MANAGEMENT_PORT"
  install
  local java
  java="$(java_bin)"
  mkdir -p "$STATE_DIR"
  local rules=()
  case "$COMPATIBILITY" in
    NONE | "") ;;
    BACKWARD | BACKWARD_TRANSITIVE | FORWARD | FORWARD_TRANSITIVE | FULL | FULL_TRANSITIVE)
      rules+=("-Dapicurio.rules.global.compatibility=$COMPATIBILITY") ;;
    *) die "SCOUTSTREAM_REGISTRY_COMPATIBILITY=$COMPATIBILITY: expected NONE, BACKWARD, FORWARD, FULL or one of their _TRANSITIVE forms" ;;
  esac
  local started_ns
  started_ns="$(date +%s%N)"
  # setsid: the registry outlives the shell (and test process) that started it. Storage is
  # Apicurio's default, H2 in memory; the pool is shrunk from its 20 idle connections.
  # The management interface (health, metrics) cannot be turned off after the build: it
  # listens on loopback too. No access log: tests and benchmarks send many requests.
  (cd "$STATE_DIR" && exec setsid nohup "$java" -Xmx"$HEAP" \
    -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$MANAGEMENT_PORT" \
    -Dquarkus.http.access-log.enabled=false \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
    -Dapicurio.datasource.jdbc.max-size=20 \
    ${rules[@]+"${rules[@]}"} \
    -jar "$APP_DIR/quarkus-run.jar" >"$LOG_FILE" 2>&1 </dev/null) &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  wait_ready "$started_ns" "$pid"
  local ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
  say "Apicurio Registry $APICURIO_VERSION answering on http://127.0.0.1:$PORT/apis/ccompat/v7 after $((ms / 1000)).$(printf '%03d' $((ms % 1000)) | cut -c1)s (pid $pid, compatibility ${COMPATIBILITY:-NONE}, log $LOG_FILE)"
}

stop() {
  local pid
  pid="$(running_pid)" || { say "not running"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; say "stopped"; return 0; }
    sleep 0.1
  done
  die "pid $pid still alive 30s after SIGTERM"
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  pid) running_pid || exit 1 ;;
  *) die "usage: $0 install|start|stop|pid" ;;
esac
