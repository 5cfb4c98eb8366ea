#!/usr/bin/env bash
# Makes sure the servers the tests talk to are up: the Tansu Kafka-protocol broker
# (installed once into a cache outside the repo), Redis and PostgreSQL. Also installs
# Prometheus (`prometheus`, `promtool`) without starting it: the observability test
# starts its own on a free port.
# Source it or run it; it is idempotent.
set -euo pipefail

TANSU_VERSION=0.6.0
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
TANSU_ROOT="$CACHE_DIR/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
KAFKA_PORT=9092
LOG_DIR="${SCOUTSTREAM_LOG_DIR:-/tmp/scoutstream-services}"
mkdir -p "$LOG_DIR"

say() { printf 'services: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    port_open "$port" && return 0
    sleep 0.2
  done
  say "$name did not open port $port; see $LOG_DIR"
  return 1
}

install_tansu() {
  if [ -x "$TANSU_BIN" ]; then return 0; fi
  say "installing tansu $TANSU_VERSION into $TANSU_ROOT (about 11 minutes, once per machine)"
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
    --root "$TANSU_ROOT" >"$LOG_DIR/tansu-install.log" 2>&1 || {
    tail -20 "$LOG_DIR/tansu-install.log" >&2
    say "tansu install failed"
    return 1
  }
}

start_tansu() {
  if port_open "$KAFKA_PORT"; then say "kafka-protocol broker already on :$KAFKA_PORT"; return 0; fi
  install_tansu
  say "starting tansu on :$KAFKA_PORT"
  nohup "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$LOG_DIR/tansu.log" 2>&1 &
  wait_port "$KAFKA_PORT" tansu
}

start_redis() {
  if port_open 6379; then return 0; fi
  if ! command -v redis-server >/dev/null; then
    say "Redis is not installed: install it (apt-get install redis-server) and run again"
    return 1
  fi
  say "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 redis
}

start_postgres() {
  if port_open 5432; then return 0; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    say "PostgreSQL is not installed: install it (apt-get install postgresql) and run again"
    return 1
  fi
  say "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  wait_port 5432 postgresql
}

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return 0; fi
  say "installing prometheus and promtool (apt)"
  # The package's init script would start a server on :9090; tests run their own.
  { apt-get update && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
      apt-get install -y --no-install-recommends prometheus; } >"$LOG_DIR/prometheus-install.log" 2>&1 || {
    tail -20 "$LOG_DIR/prometheus-install.log" >&2
    say "prometheus install failed"
    return 1
  }
  stop_packaged_prometheus
}

# Stops the server the package's postinst may have started (only that one, by its pid file).
stop_packaged_prometheus() {
  local pidfile=/run/prometheus/prometheus.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    say "stopping the packaged prometheus service; tests start their own"
    kill "$(cat "$pidfile")" || true
  fi
}

install_prometheus
start_redis
start_postgres
start_tansu
say "ready: kafka 127.0.0.1:$KAFKA_PORT, redis 127.0.0.1:6379, postgresql 127.0.0.1:5432"
