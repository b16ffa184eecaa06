#!/usr/bin/env bash
# Installs the outside tools the tests use as judges, when missing: `promtool` (Debian's
# `prometheus` package) checks both binaries' /metrics. `make test` runs it; idempotent.
set -euo pipefail

log() { printf 'test-tools: %s\n' "$*" >&2; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        log "need root to run '$*' (not root, and sudo is not installed)"
        exit 1
    fi
}

if ! command -v promtool >/dev/null; then
    log "installing promtool (package prometheus) with apt"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # --no-install-recommends: promtool alone, not the node exporter and web assets' extras.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null
fi
command -v promtool >/dev/null || { log "promtool is still missing after apt"; exit 1; }
