#!/usr/bin/env bash
# Regenerates `.sqlx/` (the offline query data the sqlx macros compile against) without
# sqlx-cli. `make sqlx-prepare` starts the local services first.
#
# The macros need a database that already has the schema, and the usual way to get one
# (run the binaries, which migrate at start-up) needs the binaries to compile, which needs
# up-to-date `.sqlx` data: a new query can never be prepared that way. So this script applies
# `migrations/` with psql to a scratch database, compiles every target online against it,
# and lets the macros write one query-*.json per query (they do so whenever
# SQLX_OFFLINE_DIR is set on an online build). The scratch database is dropped at the end
# and the development database is never touched.
#
# Settings: DATABASE_URL (a role allowed to create databases; default: the local services),
# MIGRATIONS_DIR (migrations), SQLX_PREPARE_DB (the scratch database, coinpulse_sqlx_prepare).
set -euo pipefail

cd "$(dirname "$0")/.."

base_url="${DATABASE_URL:-postgres://coinpulse:coinpulse@127.0.0.1:${PG_PORT:-5432}/coinpulse}"
migrations_dir="${MIGRATIONS_DIR:-migrations}"
scratch_db="${SQLX_PREPARE_DB:-coinpulse_sqlx_prepare}"
scratch_url="${base_url%/*}/$scratch_db"
out_dir="$PWD/target/sqlx-prepare"

log() { printf 'sqlx-prepare: %s\n' "$*" >&2; }

# psql that stops at the first error and keeps quiet about notices such as "database ...
# does not exist, skipping" (PGOPTIONS only here: sqlx reads it too).
run_psql() {
    PGOPTIONS="-c client_min_messages=warning" psql -qX -v ON_ERROR_STOP=1 "$@"
}

drop_scratch_db() {
    run_psql "$base_url" -c "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)"
}

# Applies the up-migrations in version order, each in its own transaction unless it opts out
# with `-- no-transaction`, as sqlx's migrator does. sqlx's bookkeeping table is not written:
# the scratch database only has to carry the schema.
apply_migrations() {
    local file
    local -a files
    mapfile -t files < <(compgen -G "$migrations_dir/[0-9]*_*.sql" | grep -v '\.down\.sql$' | sort -t/ -k2,2n)
    ((${#files[@]} > 0)) || { log "no migrations in $migrations_dir"; return; }
    for file in "${files[@]}"; do
        log "applying $file"
        if [[ $(head -c 17 "$file") == "-- no-transaction" ]]; then
            run_psql "$scratch_url" -f "$file" >/dev/null
        else
            run_psql "$scratch_url" --single-transaction -f "$file" >/dev/null
        fi
    done
}

drop_scratch_db
run_psql "$base_url" -c "CREATE DATABASE $scratch_db"
trap drop_scratch_db EXIT
apply_migrations

# Generate into a fresh directory and replace .sqlx only on success, so a failed compile never
# leaves a half-written .sqlx behind. Touching the sources makes cargo re-run every macro.
rm -rf "$out_dir"
mkdir -p "$out_dir"
find . -path ./target -prune -o -name '*.rs' -exec touch {} +
log "compiling all targets against $scratch_db"
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out_dir" DATABASE_URL="$scratch_url" \
    cargo check --workspace --all-targets

rm -rf .sqlx
mv "$out_dir" .sqlx
log "wrote $(compgen -G '.sqlx/query-*.json' | wc -l) query files to .sqlx/"
