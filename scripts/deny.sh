#!/usr/bin/env bash
# Checks every dependency's license, bans and source against deny.toml with cargo-deny,
# installing it from crates.io (pinned, into the tools directory) when missing. Advisories are
# not checked: they need the RustSec database from GitHub, which CI machines cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR=${COINPULSE_TOOLS_DIR:-/var/tmp/coinpulse-tools}
DENY_VERSION=0.20.2
export PATH="$TOOLS_DIR/cargo/bin:$PATH"

if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]]; then
    echo "deny: installing cargo-deny $DENY_VERSION (crates.io) into $TOOLS_DIR/cargo" >&2
    cargo install --quiet --locked --root "$TOOLS_DIR/cargo" --version "$DENY_VERSION" cargo-deny
fi
cargo deny check licenses bans sources
