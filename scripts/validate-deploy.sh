#!/usr/bin/env bash
# Validates the deployment files without a container engine or a cluster:
# Dockerfile and .dockerignore, docker-compose.yml and deploy/compose/, the
# Kubernetes manifests in deploy/kubernetes/, and their agreement with the
# code (topics, groups, config keys, ports, health endpoints). It prints what
# it checked, what it skipped and why, and what no check here can exercise.
# Exits non-zero on any failure.
#
# Tools come from PyPI into a cached virtualenv ($SCOUTSTREAM_CACHE_DIR, by
# default ~/.cache/scoutstream, /venv); python3 itself from Debian when it is
# missing and this runs as root. Optional tools are used when present:
# `docker compose` (config -q), promtool, kubectl (kustomize), shellcheck, cargo.
#
# SCOUTSTREAM_DEPLOY_EXTRACT=DIR also writes DIR/deploy.json: every config a
# deployed `scoutstream` process would load (file + SCOUTSTREAM__ variables)
# and every health probe command, for cli/tests/deploy_files.rs to load with
# the real config code and to run against the real binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${SCOUTSTREAM_CACHE_DIR:-$HOME/.cache/scoutstream}"
VENV="$CACHE_DIR/venv"
LOG="$CACHE_DIR/validate-deploy-install.log"
# Pinned: the schemas they ship are part of what is checked.
REQUIREMENTS=(
  "PyYAML==6.0.3"
  "jsonschema==4.26.0"
  "dockerfile-parse==2.0.1"
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  'tomli==2.2.1; python_version < "3.11"'
)

say() { printf 'validate-deploy: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

mkdir -p "$CACHE_DIR"
: >"$LOG"

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    return 1
  fi
  say "installing $* (apt)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } \
    >>"$LOG" 2>&1
}

find_python() {
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      PYTHON="$candidate"
      return 0
    fi
  done
  if apt_install python3 python3-venv; then
    PYTHON=python3
    return 0
  fi
  die "python3 (3.9 or newer) is required and could not be installed: install python3 and python3-venv, then run again (log: $LOG)"
}

ensure_venv() {
  local stamp="$VENV/.scoutstream-requirements" wanted
  wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
    && "$VENV/bin/python" -c 'import yaml, jsonschema, dockerfile_parse, kubernetes_validate, check_jsonschema' 2>/dev/null; then
    return 0
  fi
  find_python
  say "preparing the validation tools in $VENV (PyPI, once per machine)"
  if ! "$PYTHON" -m venv --clear "$VENV" >>"$LOG" 2>&1; then
    # Debian's python3 without ensurepip.
    apt_install python3-venv || true
    "$PYTHON" -m venv --clear "$VENV" >>"$LOG" 2>&1 \
      || die "cannot create a virtualenv with $PYTHON: install python3-venv, then run again (log: $LOG)"
  fi
  if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    "$VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}" >>"$LOG" 2>&1; then
    tail -n 20 "$LOG" >&2
    die "could not install ${REQUIREMENTS[*]} from PyPI (log: $LOG)"
  fi
  printf '%s\n' "$wanted" >"$stamp"
}

# One installer at a time (tests may run this concurrently).
if command -v flock >/dev/null; then
  exec 9>"$CACHE_DIR/venv.lock"
  flock 9
fi
ensure_venv
if command -v flock >/dev/null; then
  flock -u 9
fi

# The checks themselves; their dependencies are the pinned REQUIREMENTS above.
exec "$VENV/bin/python" "$ROOT/scripts/validate_deploy" "$ROOT"
