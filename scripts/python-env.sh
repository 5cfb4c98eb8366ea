#!/usr/bin/env bash
# The Python virtualenv of the interop publisher (producers/interop/confluent_avro_publish.py):
# Confluent's own clients, confluent-kafka with its AvroSerializer and SchemaRegistryClient,
# pinned below, so the integration tests can check that records framed by a client that is
# not ours read back through our pipeline; and schemathesis (its `st` beside that python),
# which the API test runs against the jobs API's OpenAPI description; and psycopg2 and
# redis-py for the peer baseline of `scoutstream bench --peer` (producers/peer/persist_peer.py).
#
#   scripts/python-env.sh      create the venv if needed; print the absolute path of its python
#
# Only that path goes to stdout; messages go to stderr. The venv lives in
# $SCOUTSTREAM_CACHE_DIR/python-interop-<N> (default ~/.cache/scoutstream): bump N with every
# change to the pins. A marker file says it is complete, so a second run returns at once.
# The base interpreter is $SCOUTSTREAM_PYTHON, else `python3` (3.10 or newer: the pins are
# those of 3.10+, where the schema registry client uses httpx2). pip's log:
# $SCOUTSTREAM_LOG_DIR/python-interop-<N>-pip.log (default /tmp/scoutstream-services).
set -euo pipefail

VENV_REVISION=3
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
VENV="$CACHE_DIR/python-interop-$VENV_REVISION"
MARKER="$VENV/.installed"
LOG_DIR="${SCOUTSTREAM_LOG_DIR:-/tmp/scoutstream-services}"
PIP_LOG="$LOG_DIR/python-interop-$VENV_REVISION-pip.log"
BASE_PYTHON="${SCOUTSTREAM_PYTHON:-python3}"

# confluent-kafka[avro,schemaregistry] and everything its extras pull, as resolved on
# CPython 3.11 / x86_64 Linux; binary wheels only.
REQUIREMENTS='
confluent-kafka[avro,schemaregistry]==2.16.1
fastavro==1.13.1
avro==1.12.2
requests==2.34.2
httpx2==2.16.2
httpcore2==2.16.2
h11==0.16.0
anyio==4.16.0
truststore==0.10.5
attrs==26.1.0
cachetools==8.0.2
certifi==2026.10.19.post1
authlib==1.9.10
joserfc==1.8.0
cryptography==50.0.2
cffi==2.1.1
pycparser==3.12
charset-normalizer==3.5.3
idna==3.20
urllib3==2.8.0
typing-extensions==4.16.0
schemathesis==4.32.5
psycopg2-binary==2.9.13
redis==8.2.0
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
rich==15.0.0
sortedcontainers==2.4.0
Werkzeug==3.1.9
'

say() { printf 'python-env: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# -x follows the bin/python symlink: a venv whose base interpreter is gone is not ready.
ready() { [ -f "$MARKER" ] && [ -x "$VENV/bin/python" ]; }

if ready; then echo "$VENV/bin/python"; exit 0; fi

mkdir -p "$CACHE_DIR" "$LOG_DIR"
# Tests run in parallel: one creates the venv, the others wait for it.
exec 9>"$VENV.lock"
flock 9
if ready; then echo "$VENV/bin/python"; exit 0; fi

command -v "$BASE_PYTHON" >/dev/null || die "$BASE_PYTHON not found: the interop publisher needs Python 3.10 or newer"
"$BASE_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "$("$BASE_PYTHON" --version 2>&1) is too old: the pinned confluent-kafka extras need Python 3.10 or newer (set SCOUTSTREAM_PYTHON)"

# No venv module or no ensurepip (Debian splits them into python3-venv): install it once.
if ! "$BASE_PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  [ "$BASE_PYTHON" = python3 ] && [ "$(command -v python3)" = /usr/bin/python3 ] ||
    die "$BASE_PYTHON has no venv/ensurepip module; install it, or point SCOUTSTREAM_PYTHON at a Python that has"
  say "installing python3-venv from Debian (once per machine)"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; } \
    >"$LOG_DIR/apt-python-venv.log" 2>&1 || {
    tail -20 "$LOG_DIR/apt-python-venv.log" >&2
    die "could not install python3-venv from Debian (log: $LOG_DIR/apt-python-venv.log)"
  }
fi

started_ns="$(date +%s%N)"
say "creating $VENV with confluent-kafka 2.16.1 from PyPI (seconds, once per machine)"
rm -rf "$VENV"
"$BASE_PYTHON" -m venv "$VENV" >"$PIP_LOG" 2>&1 || { cat "$PIP_LOG" >&2; die "$BASE_PYTHON -m venv $VENV failed"; }
printf '%s' "$REQUIREMENTS" >"$VENV/requirements.txt"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input --only-binary=:all: \
    -r "$VENV/requirements.txt" >>"$PIP_LOG" 2>&1; then
  tail -20 "$PIP_LOG" >&2
  die "pip could not install confluent-kafka[avro,schemaregistry]==2.16.1 and its pinned dependencies (log: $PIP_LOG)"
fi
"$VENV/bin/python" -c 'import confluent_kafka, fastavro
from confluent_kafka.schema_registry.avro import AvroSerializer
import schemathesis, psycopg2, redis' >>"$PIP_LOG" 2>&1 ||
  { tail -20 "$PIP_LOG" >&2; die "confluent_kafka or schemathesis does not import after installation (log: $PIP_LOG)"; }
touch "$MARKER"
ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
say "ready after $((ms / 1000)).$(printf '%03d' $((ms % 1000)) | cut -c1)s: $VENV"
echo "$VENV/bin/python"
