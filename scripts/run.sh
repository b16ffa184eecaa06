#!/usr/bin/env bash
# Runs the debug `api` and `worker` side by side in the foreground (`make run` builds them and
# starts the local services first).
#
# Settings come from, in order of precedence: the environment, then `.env` at the repo root,
# then the defaults of the local services (scripts/services.sh). Ctrl-C or SIGTERM stops both
# gracefully (a second one kills them); when either exits on its own, the other is stopped
# and the script exits with the first one's code.
set -euo pipefail

cd "$(dirname "$0")/.."

# Exports KEY=VALUE lines from a dotenv file, skipping keys the environment already sets.
# Handles comments, blank lines, an `export ` prefix and one pair of surrounding quotes.
load_dotenv() {
    local line key value
    [[ -f $1 ]] || return 0
    while IFS= read -r line || [[ -n $line ]]; do
        line="${line#"${line%%[![:space:]]*}"}"
        [[ -z $line || $line == '#'* ]] && continue
        line="${line#export }"
        [[ $line == *=* ]] || continue
        key="${line%%=*}"
        value="${line#*=}"
        [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
            value="${BASH_REMATCH[1]}"
        fi
        [[ -v $key ]] || export "$key=$value"
    done <"$1"
}

load_dotenv .env
export DATABASE_URL="${DATABASE_URL:-postgres://coinpulse:coinpulse@127.0.0.1:${PG_PORT:-5432}/coinpulse}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:${REDIS_PORT:-6379}}"

for bin in api worker; do
    [[ -x target/debug/$bin ]] || { echo "run: target/debug/$bin is missing; run 'make run' or 'cargo build -p api -p worker'" >&2; exit 1; }
done

target/debug/api &
api_pid=$!
target/debug/worker &
worker_pid=$!

api_addr="${API_ADDR:-127.0.0.1:8080}"
worker_addr="${WORKER_METRICS_ADDR:-127.0.0.1:9091}"
cat >&2 <<EOF
run: api (pid $api_pid) and worker (pid $worker_pid) are starting
  API docs        http://$api_addr/docs
  OpenAPI         http://$api_addr/openapi.json
  api metrics     http://$api_addr/metrics
  worker metrics  http://$worker_addr/metrics
  Ctrl-C stops both.
EOF

stopping=false
# shellcheck disable=SC2317 # invoked by the trap below
on_signal() {
    if $stopping; then
        echo "run: second signal, killing api and worker" >&2
        kill -KILL "$api_pid" "$worker_pid" 2>/dev/null || true
    else
        stopping=true
        echo "run: stopping api and worker (signal again to kill them)" >&2
        kill -TERM "$api_pid" "$worker_pid" 2>/dev/null || true
    fi
}
trap on_signal INT TERM

# A trapped signal interrupts `wait` without reaping a child (`first` stays unset): go round.
first=
while [[ -z ${first:-} ]]; do
    code=0
    wait -n -p first "$api_pid" "$worker_pid" || code=$?
done

if [[ $first == "$api_pid" ]]; then
    exited=api other=worker other_pid=$worker_pid
else
    exited=worker other=api other_pid=$api_pid
fi
if ! $stopping; then
    stopping=true
    echo "run: $exited exited with code $code; stopping $other" >&2
    kill -TERM "$other_pid" 2>/dev/null || true
fi
while kill -0 "$other_pid" 2>/dev/null; do
    wait "$other_pid" || true
done
exit "$code"
