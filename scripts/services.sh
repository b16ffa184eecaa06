#!/usr/bin/env bash
# Throwaway local Postgres and Redis for development, tests, CI and benchmarks.
#
#   scripts/services.sh up       install if needed, start both, create role + database
#   scripts/services.sh down     stop what `up` started and delete its data
#   scripts/services.sh status   say whether each service answers (exit 1 if one does not)
#   scripts/services.sh env      print the export lines for DATABASE_URL and REDIS_URL
#   scripts/services.sh tools    install the outside tools tests use as judges when missing:
#                                promtool and prometheus (Debian's `prometheus` package) check
#                                /metrics, the alert rules and the dashboards' queries;
#                                openapi-spec-validator, openapi-python-client and schemathesis
#                                (PyPI, in a venv) and openapi-typescript (npm) check the
#                                OpenAPI document; check-jsonschema and kubernetes-validate
#                                (PyPI) and @kubernetes-models/keda (npm) check deployments/
#
# Settings (environment): PG_PORT (5432), REDIS_PORT (6379), SERVICES_WAIT_SECONDS (30),
# COINPULSE_SERVICES_DIR (/var/tmp/coinpulse-services). The data lives outside the repo on
# purpose: Postgres runs as the `postgres` user, which cannot traverse a checkout under /root.
#
# `up` is idempotent: a server already answering on a port is reused (this script does not
# care who started it), and the role and database are only created when missing.
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
SERVICES_DIR="${COINPULSE_SERVICES_DIR:-/var/tmp/coinpulse-services}"
WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-30}"
# Where `tools` installs the PyPI and npm tools (api/tests/api/clients.rs reads the same).
TOOLS_DIR="${COINPULSE_TOOLS_DIR:-/var/tmp/coinpulse-tools}"

PG_DATA="$SERVICES_DIR/postgres"
REDIS_DIR="$SERVICES_DIR/redis"
# `down` deletes SERVICES_DIR recursively only when this marker proves `up` created it, so a
# mistaken COINPULSE_SERVICES_DIR (say, $HOME) is never wiped.
MARKER="$SERVICES_DIR/.coinpulse-services"

DB_NAME=coinpulse
DB_USER=coinpulse
DB_PASSWORD=coinpulse

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command with root privileges: directly as root, else through sudo when available.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

# Runs a command as the owner of the Postgres data directory. Postgres refuses to run as
# root, so root hands over to the `postgres` user (created by the Debian package); any other
# user simply owns the cluster itself.
as_pg_owner() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Newest installed Postgres server binaries (Debian layout: /usr/lib/postgresql/<major>/bin).
pg_bindir() {
    local dirs
    dirs=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V) || return 1
    dirname "$(tail -n 1 <<<"$dirs")"
}

install_if_missing() {
    if pg_bindir >/dev/null && command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    log "installing postgresql and redis-server with apt"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server >/dev/null
    pg_bindir >/dev/null || die "apt installed postgresql but no /usr/lib/postgresql/*/bin/initdb exists"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

# wait_until DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds or
# WAIT_SECONDS pass.
wait_until() {
    local what=$1 deadline=$((SECONDS + WAIT_SECONDS))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || die "$what did not answer within ${WAIT_SECONDS}s"
        sleep 0.2
    done
}

make_services_dir() {
    # 0755: the postgres user must be able to traverse into its data directory below.
    mkdir -p "$SERVICES_DIR"
    chmod 0755 "$SERVICES_DIR"
    touch "$MARKER"
}

start_postgres() {
    if pg_ready; then
        log "postgres: reusing the server already answering on 127.0.0.1:$PG_PORT"
        return
    fi
    make_services_dir
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        mkdir -p "$PG_DATA"
        chmod 0700 "$PG_DATA"
        if [[ $EUID -eq 0 ]]; then
            chown postgres:postgres "$PG_DATA"
        fi
        as_pg_owner test -w "$PG_DATA" ||
            die "the postgres user cannot write $PG_DATA; pick a COINPULSE_SERVICES_DIR it can reach"
        log "postgres: initialising a cluster in $PG_DATA"
        as_pg_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    # This cluster is disposable (tests, benchmarks, local runs) and is deleted by `down`, so
    # durability is traded for speed: without fsync, synchronous commit and full-page writes
    # a crash can corrupt it, which costs nothing here and makes the test suite much faster.
    # Never copy these settings to a database whose data matters.
    # max_connections: every test gets its own pool, and test binaries run in parallel.
    log "postgres: starting on 127.0.0.1:$PG_PORT"
    as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/postgres.log" -w -t "$WAIT_SECONDS" \
        -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null {LOCK_FD}>&- || die "postgres did not start; see $PG_DATA/postgres.log"
    wait_until "postgres on 127.0.0.1:$PG_PORT" pg_ready
}

# Runs psql as the superuser: over TCP first (our own cluster trusts every local
# connection), else over the default unix socket with peer authentication, which is how a
# cluster started by the Debian package admits the postgres user.
psql_superuser() {
    if "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'select 1' >/dev/null 2>&1; then
        "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -w "$@"
    elif [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$PG_BIN/psql" -p "$PG_PORT" -d postgres "$@"
    else
        die "cannot connect to postgres on port $PG_PORT as superuser to create role '$DB_USER'"
    fi
}

ensure_database() {
    if PGPASSWORD=$DB_PASSWORD "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" \
        -w -Atqc 'select 1' >/dev/null 2>&1; then
        return
    fi
    log "postgres: creating role and database '$DB_NAME'"
    # CREATE DATABASE cannot run inside a DO block, hence \gexec for the conditional create.
    psql_superuser -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    ELSE
        ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
    END IF;
END
\$\$;
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING ''UTF8'''
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

start_redis() {
    if redis_ready; then
        log "redis: reusing the server already answering on 127.0.0.1:$REDIS_PORT"
        return
    fi
    make_services_dir
    mkdir -p "$REDIS_DIR"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    # The settings every shipped configuration uses (deployments/redis.conf): an append-only
    # file synced every second, so a restart keeps the queues, and no eviction, so a full
    # Redis refuses writes rather than dropping queue keys.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$REDIS_DIR" \
        --save "" --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
        {LOCK_FD}>&- ||
        die "redis did not start; see $REDIS_DIR/redis.log"
    wait_until "redis on 127.0.0.1:$REDIS_PORT" redis_ready
}

# Stops only the Redis that `up` started (its pid file lives in REDIS_DIR), never a reused one.
stop_redis() {
    local pid
    [[ -f $REDIS_DIR/redis.pid ]] || return 0
    pid=$(<"$REDIS_DIR/redis.pid")
    kill -0 "$pid" 2>/dev/null || return 0
    log "redis: stopping"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait_until "redis shutdown" process_gone "$pid"
}

process_gone() { ! kill -0 "$1" 2>/dev/null; }

# Stops only the cluster that lives in PG_DATA, never a reused one.
stop_postgres() {
    [[ -f $PG_DATA/PG_VERSION ]] || return 0
    # `pg_ctl status` also tells a stale pid file (after a crash or reboot) from a live server.
    as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null || return 0
    log "postgres: stopping"
    as_pg_owner "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null
}

# Serialises concurrent runs (say `make run` and `make test` started in two terminals). The
# lock file sits beside SERVICES_DIR because `down` deletes the directory itself. The servers
# are started with LOCK_FD closed (`{LOCK_FD}>&-`): a daemon inheriting it would hold the
# lock for its whole life and block every later run.
LOCK_FD=
take_lock() {
    mkdir -p "$(dirname "$SERVICES_DIR")"
    exec {LOCK_FD}>"$SERVICES_DIR.lock"
    flock "$LOCK_FD"
}

cmd_up() {
    take_lock
    install_if_missing
    PG_BIN=$(pg_bindir)
    start_postgres
    ensure_database
    start_redis
    log "ready: postgres 127.0.0.1:$PG_PORT, redis 127.0.0.1:$REDIS_PORT" \
        "(eval \"\$(scripts/services.sh env)\" to use them from a shell)"
}

cmd_down() {
    take_lock
    if PG_BIN=$(pg_bindir); then
        stop_postgres
    fi
    stop_redis
    if [[ -f $MARKER ]]; then
        rm -rf -- "$SERVICES_DIR"
    elif [[ -e $SERVICES_DIR ]]; then
        log "not deleting $SERVICES_DIR: it was not created by this script"
    fi
    log "stopped"
}

cmd_status() {
    local rc=0
    if PG_BIN=$(pg_bindir) && pg_ready; then
        echo "postgres: up (127.0.0.1:$PG_PORT)"
    else
        echo "postgres: down (127.0.0.1:$PG_PORT)"
        rc=1
    fi
    if command -v redis-cli >/dev/null && redis_ready; then
        echo "redis: up (127.0.0.1:$REDIS_PORT)"
    else
        echo "redis: down (127.0.0.1:$REDIS_PORT)"
        rc=1
    fi
    return "$rc"
}

cmd_env() {
    echo "export DATABASE_URL=postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"
    echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

cmd_tools() {
    if ! command -v promtool >/dev/null; then
        log "installing promtool (package prometheus) with apt"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        # Without recommends: promtool and the server binary, not the exporters.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends prometheus >/dev/null
    fi
    command -v promtool >/dev/null || die "apt installed prometheus but promtool is missing"

    local venv="$TOOLS_DIR/venv"
    if [[ ! -x $venv/bin/openapi-python-client || ! -x $venv/bin/openapi-spec-validator ||
          ! -x $venv/bin/schemathesis || ! -x $venv/bin/check-jsonschema ||
          ! -x $venv/bin/kubernetes-validate ]]; then
        log "installing openapi-python-client, openapi-spec-validator, schemathesis, check-jsonschema and kubernetes-validate (PyPI) into $venv"
        mkdir -p "$TOOLS_DIR"
        python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        # python-dateutil: the generated client imports it to read timestamps. schemathesis is
        # pinned to a major version: its checks and config format are what the tests rely on.
        # check-jsonschema carries the compose specification's schema and kubernetes-validate
        # the Kubernetes ones, so validating deployments/ needs no network.
        "$venv/bin/pip" install -q openapi-python-client openapi-spec-validator python-dateutil \
            'schemathesis>=4.32,<5' check-jsonschema kubernetes-validate ||
            die "pip could not install the OpenAPI and schema tools"
    fi
    local node="$TOOLS_DIR/node"
    if [[ ! -x $node/node_modules/.bin/openapi-typescript ||
          ! -d $node/node_modules/@kubernetes-models/keda || ! -d $node/node_modules/yaml ]]; then
        command -v npm >/dev/null || die "npm is missing (Debian: apt-get install npm)"
        log "installing openapi-typescript, @kubernetes-models/keda and yaml (npm) into $node"
        mkdir -p "$node"
        npm install --silent --no-audit --no-fund --prefix "$node" openapi-typescript \
            @kubernetes-models/keda yaml >/dev/null ||
            die "npm could not install the npm tools"
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    tools) cmd_tools ;;
    *)
        echo "usage: $0 {up|down|status|env|tools}" >&2
        exit 2
        ;;
esac
