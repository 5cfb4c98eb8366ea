#!/usr/bin/env bash
# Supply-chain checks of the dependency tree (deny.toml): licences, banned
# crates and duplicate versions, and where crates come from. Installs the pinned
# cargo-deny from crates.io the first time (a few minutes of compiling).
#
# The advisories check reads the RustSec database from GitHub, which the
# project's build machines cannot reach; run `cargo deny check advisories` on a
# machine that can (a developer's, or a CI runner with internet access).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2

if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "supply-chain: installing cargo-deny $CARGO_DENY_VERSION from crates.io (once per machine)" >&2
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" --quiet
fi
cargo deny --log-level error check licenses bans sources
