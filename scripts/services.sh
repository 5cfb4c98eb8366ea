#!/usr/bin/env bash
# Installs what is missing and starts what is stopped, for the tests, benchmarks
# and local runs; idempotent, on a fresh machine and on one that has it all:
#   - PostgreSQL (Debian) on 127.0.0.1:5432, trust auth for `postgres`, database `test`;
#   - Redis (Debian) on 127.0.0.1:6379;
#   - Apache Kafka (Maven Central, KRaft, one node) on 127.0.0.1:9092, see scripts/kafka.sh;
#   - Apicurio Registry (Maven Central, in-memory storage, Java 21+) with its Confluent-compatible
#     API at http://127.0.0.1:8081/apis/ccompat/v7, see scripts/registry.sh;
#   - Prometheus and promtool (Debian), installed only: the dashboard test starts its own;
#   - OpenSSL's headers and pkg-config (Debian), which librdkafka's TLS and SASL build needs.
# `scripts/services.sh packages` installs the packages only (the build needs them first);
# `scripts/services.sh sweep` drops the databases earlier test runs left behind.
# Exits non-zero with a message naming what could not be installed or started.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_DIR="${SCOUTSTREAM_LOG_DIR:-/tmp/scoutstream-services}"
mkdir -p "$LOG_DIR"

say() { printf 'services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 150); do
    port_open "$port" && return 0
    sleep 0.2
  done
  die "$name did not open port $port; see $LOG_DIR"
}

# One `apt-get update` and one install for everything missing.
install_debian_packages() {
  local missing=()
  command -v pg_ctlcluster >/dev/null && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  { command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
  command -v mvn >/dev/null || missing+=(maven)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  { command -v pkg-config >/dev/null && pkg-config --exists openssl; } || missing+=(libssl-dev pkg-config)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing from Debian: ${missing[*]} (a minute or two, once per machine)"
  # RUNLEVEL=1 and policy-rc.d: packages must not start their own services; this script does.
  local policy=/usr/sbin/policy-rc.d ours=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1; fi
  local ok=1
  { apt-get update && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
      apt-get install -y --no-install-recommends "${missing[@]}"; } >"$LOG_DIR/apt-install.log" 2>&1 || ok=""
  [ -n "$ours" ] && rm -f "$policy"
  if [ -z "$ok" ]; then
    tail -20 "$LOG_DIR/apt-install.log" >&2
    die "could not install ${missing[*]} from Debian (log: $LOG_DIR/apt-install.log)"
  fi
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

start_redis() {
  if port_open 6379; then return 0; fi
  say "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile "$LOG_DIR/redis.log" || die "redis-server failed to start (log: $LOG_DIR/redis.log)"
  wait_port 6379 redis
}

postgres_cluster() {
  local version
  version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    say "creating PostgreSQL $version cluster 'main'"
    pg_createcluster "$version" main >"$LOG_DIR/pg-createcluster.log" 2>&1 ||
      die "pg_createcluster failed (log: $LOG_DIR/pg-createcluster.log)"
  fi
  echo "$version"
}

# Trust for loopback TCP, ahead of the packaged scram rules; a test-only server.
trust_loopback() {
  local hba="/etc/postgresql/$1/main/pg_hba.conf"
  grep -q '^# scoutstream: trust loopback' "$hba" && return 0
  say "PostgreSQL: trust auth on 127.0.0.1 and ::1 ($hba)"
  {
    echo '# scoutstream: trust loopback (test server)'
    echo 'host all all 127.0.0.1/32 trust'
    echo 'host all all ::1/128 trust'
    cat "$hba"
  } >"$hba.new" && mv "$hba.new" "$hba"
  chown postgres:postgres "$hba"
  if pg_ctlcluster "$1" main status >/dev/null 2>&1; then pg_ctlcluster "$1" main reload; fi
}

start_postgres() {
  local version
  version="$(postgres_cluster)"
  trust_loopback "$version"
  if ! port_open 5432; then
    say "starting postgresql $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      die "PostgreSQL failed to start (log: /var/log/postgresql/postgresql-$version-main.log)"
    wait_port 5432 postgresql
  fi
  if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test' || die "could not create database test"
  fi
}

# Every test database carries a random hex id after one of these prefixes (or is
# one of `#[sqlx::test]`'s numbered ones). A test killed midway, or one that keeps
# its database to show it, leaves it behind: 140 of them held 2.5 GB here before
# the test command swept them.
DEBRIS_DATABASES='^ss(test|jobs|rows|e2e|probe)_[0-9a-z_]+$|^repro[0-9]+$|^_sqlx_test_[0-9]+$'

sweep_databases() {
  port_open 5432 || die "sweep: postgresql is not running; start it first"
  local names count=0
  names="$(psql -h 127.0.0.1 -U postgres -d postgres -tAc \
    "select datname from pg_database where datname ~ '$DEBRIS_DATABASES'")" ||
    die "sweep: could not list the databases"
  for name in $names; do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists \"$name\" with (force)" ||
      die "sweep: could not drop database $name"
    count=$((count + 1))
  done
  say "sweep: dropped $count test databases earlier runs left behind"
}

started=$(date +%s)
install_debian_packages
[ "${1:-}" = packages ] && exit 0
[ "${1:-}" = sweep ] && { sweep_databases; exit 0; }
start_postgres
start_redis
bash "$HERE/kafka.sh" start
bash "$HERE/registry.sh" start
say "ready after $(( $(date +%s) - started ))s: kafka 127.0.0.1:9092, schema registry http://127.0.0.1:${SCOUTSTREAM_REGISTRY_PORT:-8081}/apis/ccompat/v7, redis 127.0.0.1:6379, postgresql 127.0.0.1:5432 (database test)"
