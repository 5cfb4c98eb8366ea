#!/usr/bin/env bash
# Publishes N generated matches, then drains them with `scoutstream run --groups persist`
# in a process of its own under /usr/bin/time -v, and prints how long the drain took
# and the persist process's peak RSS. For the 1,000,000-event memory check of issue 11.
#
#   scripts/drain-backlog.sh CONFIG [MATCHES]
#
# CONFIG names the bus, a topic prefix and group id prefix of its own, `groups.enabled
# = ["persist"]` and a PostgreSQL database that holds nothing of that prefix yet (the
# script counts that database's `matches` rows). Needs a release build:
# `cargo build --release -p scoutstream`. Progress lines go to drain-progress.log.
set -euo pipefail
config="${1:?usage: scripts/drain-backlog.sh CONFIG [MATCHES]}"
matches="${2:-1000000}"
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/scoutstream"
url="$(sed -n 's/^url = "\(postgres[^"]*\)"/\1/p' "$config" | head -1)"
[ -n "$url" ] || { echo "no PostgreSQL url in $config" >&2; exit 1; }
count() { psql "$url" -Atc "select count(*) from matches" 2>/dev/null || echo 0; }

started=$(date +%s.%N)
/usr/bin/time -v "$bin" produce -c "$config" --generate "$matches" >/dev/null 2>produce.err
echo "published $matches matches in $(echo "$(date +%s.%N) - $started" | bc) s"

/usr/bin/time -v "$bin" run -c "$config" --groups persist >/dev/null 2>drain.err &
timer=$!
started=$(date +%s.%N)
while [ "$(count)" -lt "$matches" ]; do
  echo "$(echo "$(date +%s.%N) - $started" | bc) s: $(count) matches" >>drain-progress.log
  sleep 5
done
echo "drained $matches matches in $(echo "$(date +%s.%N) - $started" | bc) s (checked every 5 s)"
kill -TERM "$(pgrep -P "$timer")"
wait "$timer" || true
grep -E "Maximum resident|User time|System time" drain.err
