#!/usr/bin/env bash
# Benchmarks the release api and worker against a bare Poem hello-world (`bench-hello`) run in
# the same session, then the job queue (`queue-bench`) against `redis-benchmark`, and writes a
# markdown report to target/bench/report.md. Method and results: docs/BENCHMARKS.md.
# `make bench` runs it.
#
# Absolute numbers depend on the machine and on whatever else runs on it; the ratio to the
# ceiling measured minutes earlier on the same machine is what compares across machines. The
# ceiling is measured first and last, so drift during the session shows up in the report.
#
# Settings: BENCH_SECONDS (10) per wrk run, WRK_THREADS (2), WRK_CONNECTIONS (64),
# BENCH_READY_SECONDS (60) to wait for start-up, PG_PORT/REDIS_PORT (local services), and
# for running two benches side by side: BENCH_HELLO_ADDR, BENCH_API_ADDR, BENCH_WORKER_ADDR,
# BENCH_DB, BENCH_REDIS_DB (defaults below). BENCH_ONLY=http, queue, alerts or streams runs one
# section (the rate-limit table's memory, a few seconds, always runs); BENCH_ONLY=portfolios runs
# only the portfolio benchmarks (valuation, performance, a 100,000-row import and its export). The queue section: REDIS_BENCH_REQUESTS (100000) per redis-benchmark run, and
# QUEUE_BENCH_* (see bench/src/bin/queue-bench.rs) for jobs per run, samples, concurrency.
#
# To add a benchmark: write a bench_* function that records rows with `record_row` (or
# writes its own lines with `report`), and call it from main after the HTTP section.
set -euo pipefail

cd "$(dirname "$0")/.."

BENCH_SECONDS="${BENCH_SECONDS:-10}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNECTIONS="${WRK_CONNECTIONS:-64}"
READY_SECONDS="${BENCH_READY_SECONDS:-60}"
BENCH_ONLY="${BENCH_ONLY:-}"
REDIS_BENCH_REQUESTS="${REDIS_BENCH_REQUESTS:-100000}"
PG_PORT="${PG_PORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"

# Addresses away from the development defaults, so `make run` can stay up meanwhile.
HELLO_ADDR="${BENCH_HELLO_ADDR:-127.0.0.1:18090}"
API_ADDR="${BENCH_API_ADDR:-127.0.0.1:18080}"
WORKER_ADDR="${BENCH_WORKER_ADDR:-127.0.0.1:19091}"
# A database of its own (created fresh, dropped at exit) and a Redis database index of its
# own (flushed first): every run starts empty and the development data is left alone.
BENCH_DB="${BENCH_DB:-coinpulse_bench}"
BENCH_REDIS_DB="${BENCH_REDIS_DB:-1}"
PG_ADMIN_URL="postgres://coinpulse:coinpulse@127.0.0.1:$PG_PORT/coinpulse"
BENCH_DATABASE_URL="postgres://coinpulse:coinpulse@127.0.0.1:$PG_PORT/$BENCH_DB"
BENCH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/$BENCH_REDIS_DB"

# The queue's tracked drain runs once more against a throwaway Postgres that waits for its WAL
# on disk, as production does (the development cluster runs without fsync).
DURABLE_PG_PORT="${BENCH_DURABLE_PG_PORT:-$((PG_PORT + 2))}"
DURABLE_PG_DIR=""
DURABLE_DATABASE_URL="postgres://coinpulse:coinpulse@127.0.0.1:$DURABLE_PG_PORT/$BENCH_DB"

OUT=target/bench
# Where cargo puts the release binaries (CARGO_TARGET_DIR, as cargo itself reads it).
BIN="${CARGO_TARGET_DIR:-target}/release"
REPORT="$OUT/report.md"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run '$*' (not root, and sudo is not installed)"
    fi
}

# Installs, with apt, the packages named like the commands that are missing.
ensure_commands() {
    local cmd
    local -a missing=()
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]} with apt"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# psql on the development database as its owner, quiet about notices such as "database ...
# does not exist, skipping" (PGOPTIONS only here: sqlx reads it too).
psql_admin() {
    PGOPTIONS="-c client_min_messages=warning" psql "$PG_ADMIN_URL" -qX -v ON_ERROR_STOP=1 "$@"
}

# ---- processes ---------------------------------------------------------------------------

declare -A PIDS=()

# start NAME COMMAND...: runs COMMAND in the background, output to target/bench/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$OUT/$name.log" 2>&1 &
    PIDS[$name]=$!
}

# Stops everything `start` started: SIGTERM, then SIGKILL for what is left after 10 s.
stop_all() {
    local pid deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    PIDS=()
}

as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Starts the throwaway durable Postgres (fsync, synchronous commit and full-page writes on, a
# production server's settings) with the bench role and database.
start_durable_postgres() {
    local initdb bin
    initdb=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1) ||
        die "no /usr/lib/postgresql/*/bin/initdb (scripts/services.sh up installs it)"
    bin=${initdb%/initdb}
    port_free "127.0.0.1:$DURABLE_PG_PORT" || die "127.0.0.1:$DURABLE_PG_PORT is in use (BENCH_DURABLE_PG_PORT)"
    DURABLE_PG_DIR=$(mktemp -d /var/tmp/coinpulse-bench-pg.XXXXXX)
    chmod 0755 "$DURABLE_PG_DIR"
    mkdir -m 0700 "$DURABLE_PG_DIR/data"
    [[ $EUID -ne 0 ]] || chown postgres:postgres "$DURABLE_PG_DIR/data"
    log "postgres with fsync=on on 127.0.0.1:$DURABLE_PG_PORT"
    as_postgres "$bin/initdb" -D "$DURABLE_PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_postgres "$bin/pg_ctl" -D "$DURABLE_PG_DIR/data" -l "$DURABLE_PG_DIR/data/postgres.log" -w -t 60 \
        -o "-p $DURABLE_PG_PORT -k $DURABLE_PG_DIR/data -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c full_page_writes=on" \
        start >/dev/null || die "the durable postgres did not start; see $DURABLE_PG_DIR/data/postgres.log"
    "$bin/psql" -h 127.0.0.1 -p "$DURABLE_PG_PORT" -U postgres -d postgres -qX -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE coinpulse LOGIN PASSWORD 'coinpulse'" \
        -c "CREATE DATABASE $BENCH_DB OWNER coinpulse" >/dev/null
}

stop_durable_postgres() {
    [[ -n $DURABLE_PG_DIR ]] || return 0
    local pg_ctl
    pg_ctl=$(compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' | sort -V | tail -n 1) || true
    [[ -z $pg_ctl ]] || as_postgres "$pg_ctl" -D "$DURABLE_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DURABLE_PG_DIR"
    DURABLE_PG_DIR=""
}

# The EXIT trap: stops the servers and drops the benchmark database.
cleanup() {
    # A second Ctrl-C must not cut the clean-up short and leave servers running.
    trap '' INT TERM
    stop_all
    stop_durable_postgres
    psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
}

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# wait_ready NAME URL: polls URL until it answers 2xx, failing early if NAME has exited.
wait_ready() {
    local name=$1 url=$2 deadline=$((SECONDS + READY_SECONDS))
    until curl -fs -o /dev/null --max-time 2 "$url"; do
        if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            tail -n 20 "$OUT/$name.log" >&2 || true
            die "$name exited before $url answered (log: $OUT/$name.log)"
        fi
        ((SECONDS < deadline)) || die "$url did not answer within ${READY_SECONDS}s (log: $OUT/$name.log)"
        sleep 0.2
    done
}

# Resident memory of a process in MB.
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# ---- report ------------------------------------------------------------------------------

# report LINE...: prints the lines and appends them to the report.
report() { printf '%s\n' "$@" | tee -a "$REPORT"; }

ROW_NAMES=() ROW_RPS=() ROW_P50=() ROW_P99=() ROW_ERRORS=() ROW_CPU=() CEILING_ROWS=()

record_row() {
    ROW_NAMES+=("$1") ROW_RPS+=("$2") ROW_P50+=("$3") ROW_P99+=("$4") ROW_ERRORS+=("$5") ROW_CPU+=("$6")
}

# report_row ROW CEILING_RPS CEILING_CPU: one markdown row, with its shares of the ceiling in
# throughput and in server CPU per request.
report_row() {
    local i=$1 share cpu_share
    share=$(awk -v r="${ROW_RPS[i]}" -v c="$2" 'BEGIN { printf "%.2f", r / c }')
    cpu_share=$(awk -v r="${ROW_CPU[i]}" -v c="$3" 'BEGIN { printf "%.2f", c / r }')
    report "$(printf '| %s | %s | %s | %s | %s | %s | %s | %s |' "${ROW_NAMES[i]}" "${ROW_RPS[i]}" \
        "${ROW_P50[i]}" "${ROW_P99[i]}" "${ROW_ERRORS[i]}" "$share" "${ROW_CPU[i]}" "$cpu_share")"
}

# ceiling_mean ARRAY: the mean of the ceiling rows' values in ARRAY (ROW_RPS or ROW_CPU).
ceiling_mean() {
    local -n values=$1
    local i
    for i in "${CEILING_ROWS[@]}"; do
        echo "${values[i]}"
    done | awk '{ sum += $1 } END { printf "%.1f", sum / NR }'
}

report_http_table() {
    local i ceiling ceiling_cpu
    ceiling=$(ceiling_mean ROW_RPS)
    ceiling_cpu=$(ceiling_mean ROW_CPU)
    report "" "## HTTP (wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d${BENCH_SECONDS}s)" ""
    report "| target | req/s | p50 ms | p99 ms | non-2xx + socket errors | vs ceiling | server CPU µs/request | CPU vs ceiling |"
    report "|---|---:|---:|---:|---:|---:|---:|---:|"
    for i in "${!ROW_NAMES[@]}"; do
        report_row "$i" "$ceiling" "$ceiling_cpu"
    done
    report "" "Ceiling: mean of the bench-hello runs, ${ceiling%.*} req/s and $ceiling_cpu µs of CPU per request; last vs first: $(ceiling_drift)."
}

# cpu_ticks PID: the clock ticks of user and system time the process has used, all threads.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# Change of the last ceiling run against the first, in percent: the machine's drift.
ceiling_drift() {
    local first=${CEILING_ROWS[0]} last=${CEILING_ROWS[-1]}
    awk -v a="${ROW_RPS[first]}" -v b="${ROW_RPS[last]}" 'BEGIN { printf "%+.1f %%", (b - a) * 100 / a }'
}

# ---- benchmarks --------------------------------------------------------------------------

# bench_http NAME PROCESS URL [WRK ARGS...]: one wrk run against the started PROCESS, kept in
# target/bench/wrk-N.txt and recorded as a row (req/s, p50 and p99 in ms, count of non-2xx
# responses and socket errors, and the process's CPU time per request in µs). CPU per request
# moves far less than req/s when the host is busy, so it is the steadier comparison.
bench_http() {
    local name=$1 process=$2 url=$3 raw="$OUT/wrk-${#ROW_NAMES[@]}.txt" rps p50 p99 errors
    local ticks requests cpu
    shift 3
    log "wrk: $name"
    ticks=$(cpu_ticks "${PIDS[$process]}")
    wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"${BENCH_SECONDS}s" --latency "$@" "$url" >"$raw"
    ticks=$(($(cpu_ticks "${PIDS[$process]}") - ticks))
    read -r rps p50 p99 errors < <(wrk_summary "$raw")
    rps=$(printf '%.0f' "$rps") # the HTTP table shows whole requests per second
    ((rps > 0)) || die "wrk measured nothing for $name; see $raw"
    ((errors == 0)) || log "warning: $name had $errors non-2xx responses or socket errors; see $raw"
    requests=$(awk '/ requests in / { print $1 }' "$raw")
    cpu=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
    record_row "$name" "$rps" "$p50" "$p99" "$errors" "$cpu"
}

bench_ceiling() {
    CEILING_ROWS+=("${#ROW_NAMES[@]}")
    bench_http "bench-hello GET / (ceiling, $1)" hello "http://$HELLO_ADDR/"
}

# redis_rps ARGS...: one redis-benchmark run on the bench Redis database; prints a line
# "TEST<tab>REQUESTS PER SECOND" per test.
redis_rps() {
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" --dbnum "$BENCH_REDIS_DB" -q \
        -n "$REDIS_BENCH_REQUESTS" "$@" 2>&1 |
        tr '\r' '\n' |
        awk -F': ' '/requests per second/ { split($2, v, " "); printf "%s\t%.0f\n", $1, v[1] }'
}

# redis_cpu: the Redis server's CPU seconds so far (user + system, from INFO).
redis_cpu() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(sys|user):/ { total += $2 } END { printf "%.6f\n", total }'
}

# The queue: no-op jobs through the queue alone and through the worker's whole stack (rows
# in Postgres), and pickup latency, by `queue-bench` in one process; beside the ceiling of
# the Redis operations it uses, measured by redis-benchmark first and last. The servers are
# stopped first so that only the benchmark and the two services use the machine.
bench_queue() {
    local raw="$OUT/redis-benchmark.txt" first last clients pipeline name rps cpu_before eval_us
    stop_all
    log "redis-benchmark: the raw ceiling"
    # Redis's CPU per trivial script call too: a job's Redis CPU against it is the ratio that
    # holds when the machine's speed drifts during the run (the rates do not).
    cpu_before=$(redis_cpu)
    first=$(redis_rps eval "return 1" 0 | cut -f2)
    eval_us=$(awk -v a="$cpu_before" -v b="$(redis_cpu)" -v n="$REDIS_BENCH_REQUESTS" \
        'BEGIN { printf "%.2f", (b - a) * 1e6 / n }')
    {
        redis_rps -t lpush,rpop,lpop | sed 's/^/50\t1\t/'
        redis_rps -P 16 -t lpush,rpop,lpop | sed 's/^/50\t16\t/'
        redis_rps -c 1 eval "return 1" 0 | sed 's/^/1\t1\t/'
    } >"$raw"
    [[ -n $first && -s $raw ]] || die "redis-benchmark measured nothing"
    start_durable_postgres
    log "queue-bench (about two minutes)"
    if ! env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" \
        QUEUE_BENCH_DURABLE_DATABASE_URL="$DURABLE_DATABASE_URL" \
        QUEUE_BENCH_CEILING="$first" QUEUE_BENCH_EVAL_REDIS_US="$eval_us" "$BIN"/queue-bench >"$OUT/queue.md" 2>"$OUT/queue.log"; then
        tail -n 20 "$OUT/queue.log" >&2 || true
        die "queue-bench failed (log: $OUT/queue.log)"
    fi
    stop_durable_postgres
    last=$(redis_rps eval "return 1" 0 | cut -f2)
    report ""
    tee -a "$REPORT" <"$OUT/queue.md"
    report "" "Raw ceiling: redis-benchmark -n $REDIS_BENCH_REQUESTS on the same Redis, in the same session." ""
    report "| operation | clients | pipeline | ops/s |" "|---|---:|---:|---:|"
    report "| EVAL \"return 1\" 0 (ceiling, first) | 50 | 1 | $first |"
    while IFS=$'\t' read -r clients pipeline name rps; do
        report "| $name | $clients | $pipeline | $rps |"
    done <"$raw"
    report "| EVAL \"return 1\" 0 (ceiling, last) | 50 | 1 | $last |"
    report "" "The ratios divide by the first EVAL run ($first ops/s); last vs first: $(awk -v a="$first" -v b="$last" 'BEGIN { printf "%+.1f %%", (b - a) * 100 / a }')."
}

# Price alerts: evaluation throughput against the bare row work in the same process, and the
# time from a price tick to the notification rows, by `alerts-bench` (about a minute).
bench_alerts() {
    stop_all
    log "alerts-bench (about a minute)"
    if ! env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" RUST_LOG=warn \
        "$BIN"/alerts-bench >"$OUT/alerts.md" 2>"$OUT/alerts.log"; then
        tail -n 20 "$OUT/alerts.log" >&2 || true
        die "alerts-bench failed (log: $OUT/alerts.log)"
    fi
    report ""
    tee -a "$REPORT" <"$OUT/alerts.md"
}

# Price-tick fan-out from one publish to 1,000 and 10,000 SSE clients of one api process:
# delivery latency and the api's memory per connection, by `stream-bench` (about a minute).
bench_streams() {
    stop_all
    log "stream-bench (about a minute)"
    # Twice the clients in descriptors (both ends live in this machine), plus headroom.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    if ! env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" RUST_LOG=warn \
        STREAM_BENCH_API="$BIN/api" STREAM_BENCH_BASELINE="$BIN/bench-hello" "$BIN"/stream-bench >"$OUT/streams.md" 2>"$OUT/streams.log"; then
        tail -n 20 "$OUT/streams.log" >&2 || true
        die "stream-bench failed (log: $OUT/streams.log)"
    fi
    report ""
    tee -a "$REPORT" <"$OUT/streams.md"
}

# The rate-limit table's memory per caller, against the String-keyed table it replaced, each
# filled in a fresh process by `limiter-memory`. A few seconds; needs no services.
bench_limiter() {
    log "limiter-memory"
    report ""
    "$BIN"/limiter-memory | tee -a "$REPORT"
}

# Registers a throwaway user and prints its access token.
register_user() {
    local suffix
    suffix=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    curl -sS --fail-with-body --max-time 10 -H 'Content-Type: application/json' \
        -d "{\"email\":\"bench-$suffix@example.com\",\"username\":\"bench$suffix\",\"password\":\"bench-password-123\"}" \
        "http://$API_ADDR/api/v1/auth/register" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# wrk_summary FILE: "requests/s p50_ms p99_ms errors" of one `wrk --latency` report.
wrk_summary() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { for (i = 4; i <= NF; i += 2) errors += $i }
        END { printf "%.1f %.2f %.2f %d\n", rps, p50, p99, errors }
    ' "$1"
}

# ---- portfolio valuation -----------------------------------------------------------------

# bench_valuation TOKEN: seeds one portfolio per cost-basis method with 10,000 transactions
# across 100 coins (straight into Postgres: buys of 1.5 and sells of 1 alternating, so every
# sell is covered, with fees and a stored price per coin), then measures
# GET /portfolios/{id}/valuation with one connection, so the percentiles are the latency of a
# single valuation rather than queueing behind 64 others. Target: p50 <= 20 ms.
bench_valuation() {
    local token=$1 method portfolio raw total rps p50 p99 errors
    local -a rows=()
    for method in average fifo; do
        portfolio=$(curl -sS --fail-with-body --max-time 10 -H 'Content-Type: application/json' \
            -H "Authorization: Bearer $token" -d "{\"name\":\"bench $method\",\"cost_basis_method\":\"$method\"}" \
            "http://$API_ADDR/api/v1/portfolios" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
        PGOPTIONS="-c client_min_messages=warning" psql "$BENCH_DATABASE_URL" -qX \
            -v ON_ERROR_STOP=1 -v portfolio="$portfolio" >/dev/null <<'SQL'
INSERT INTO coins (id, symbol, name)
SELECT 'bench-coin-' || c, 'bc' || c, 'Bench coin ' || c FROM generate_series(1, 100) AS c
ON CONFLICT DO NOTHING;
INSERT INTO latest_prices (coin_id, vs_currency, price, change_24h_pct, source, quoted_at)
SELECT 'bench-coin-' || c, 'usd', round(c * 1.2345678, 8), 1.25, 'simulated', now()
FROM generate_series(1, 100) AS c
ON CONFLICT DO NOTHING;
INSERT INTO portfolio_transactions (id, portfolio_id, coin_id, side, quantity, price, fee, executed_at)
SELECT gen_random_uuid(), :'portfolio', 'bench-coin-' || c,
       CASE WHEN i % 2 = 1 THEN 'buy' ELSE 'sell' END,
       CASE WHEN i % 2 = 1 THEN 1.5 ELSE 1 END,
       round(c * (1 + i * 0.01), 8), 0.01,
       now() - interval '1 hour' * (200 - i)
FROM generate_series(1, 100) AS c, generate_series(1, 100) AS i;
ANALYZE portfolio_transactions;
SQL
        total=$(curl -sS --fail-with-body --max-time 10 -H "Authorization: Bearer $token" \
            "http://$API_ADDR/api/v1/portfolios/$portfolio/transactions?per_page=1" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])')
        ((total == 10000)) || die "seeded $total transactions instead of 10000"
        raw="$OUT/wrk-valuation-$method.txt"
        log "wrk: valuation ($method, 10,000 transactions, 100 coins)"
        wrk -t1 -c1 -d"${BENCH_SECONDS}s" --latency -H "Authorization: Bearer $token" \
            "http://$API_ADDR/api/v1/portfolios/$portfolio/valuation" >"$raw"
        read -r rps p50 p99 errors < <(wrk_summary "$raw")
        ((errors == 0)) || log "warning: valuation ($method) had $errors errors; see $raw"
        rows+=("| $method | $rps | $p50 | $p99 | $errors |")
    done
    report "" "## Portfolio valuation (10,000 transactions, 100 coins; wrk -t1 -c1 -d${BENCH_SECONDS}s)" ""
    report "| cost basis | valuations/s | p50 ms | p99 ms | errors |" "|---|---:|---:|---:|---:|"
    report "${rows[@]}"
    report "" "Target: p50 <= 20 ms."
}

# ---- portfolio performance over time -----------------------------------------------------

# bench_performance TOKEN: one portfolio of 10,000 transactions across 100 coins spread over
# the past year, with a daily stored price per coin for the whole year (36,600 rows, straight
# into Postgres, so no gap is filled from the provider), then GET /portfolios/{id}/performance
# for that year at a daily interval (366 points) with one connection. Target: p50 <= 50 ms.
bench_performance() {
    local token=$1 portfolio raw rps p50 p99 errors from
    portfolio=$(curl -sS --fail-with-body --max-time 10 -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $token" -d '{"name":"bench performance"}' \
        "http://$API_ADDR/api/v1/portfolios" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    PGOPTIONS="-c client_min_messages=warning" psql "$BENCH_DATABASE_URL" -qX \
        -v ON_ERROR_STOP=1 -v portfolio="$portfolio" >/dev/null <<'SQL'
INSERT INTO coins (id, symbol, name)
SELECT 'perf-coin-' || c, 'pc' || c, 'Performance coin ' || c FROM generate_series(1, 100) AS c
ON CONFLICT DO NOTHING;
INSERT INTO price_history (coin_id, vs_currency, at, price, source)
SELECT 'perf-coin-' || c, 'usd', date_trunc('day', now()) - interval '1 day' * d,
       round((c * (1 + 0.2 * sin(d / 20.0)))::numeric, 8), 'simulated'
FROM generate_series(1, 100) AS c, generate_series(0, 366) AS d
ON CONFLICT DO NOTHING;
INSERT INTO portfolio_transactions (id, portfolio_id, coin_id, side, quantity, price, fee, executed_at)
SELECT gen_random_uuid(), :'portfolio', 'perf-coin-' || c,
       CASE WHEN i % 2 = 1 THEN 'buy' ELSE 'sell' END,
       CASE WHEN i % 2 = 1 THEN 1.5 ELSE 1 END,
       round(c * (1 + i * 0.01), 8), 0.01,
       now() - interval '1 hour' * (8700 - i * 85)
FROM generate_series(1, 100) AS c, generate_series(1, 100) AS i;
ANALYZE portfolio_transactions;
ANALYZE price_history;
SQL
    from=$(date -u -d '365 days ago' +%Y-%m-%dT%H:%M:%SZ)
    raw="$OUT/wrk-performance.txt"
    log "wrk: performance (one year daily, 10,000 transactions, 100 coins)"
    wrk -t1 -c1 -d"${BENCH_SECONDS}s" --latency -H "Authorization: Bearer $token" \
        "http://$API_ADDR/api/v1/portfolios/$portfolio/performance?from=$from&interval=day" >"$raw"
    read -r rps p50 p99 errors < <(wrk_summary "$raw")
    ((errors == 0)) || log "warning: performance had $errors errors; see $raw"
    report "" "## Portfolio performance (one year daily, 10,000 transactions, 100 coins; wrk -t1 -c1 -d${BENCH_SECONDS}s)" ""
    report "| series/s | p50 ms | p99 ms | errors |" "|---:|---:|---:|---:|"
    report "| $rps | $p50 | $p99 | $errors |"
    report "" "Target: p50 <= 50 ms."
}

# bench_import TOKEN: a CSV of 100,000 transactions across the 100 coins of
# bench_performance, uploaded to a new portfolio and timed until its job succeeded (the
# upload answers at once; the worker checks every row, then adds them in one transaction),
# then exported again (CSV) and downloaded. Baseline, same session: the same 100,000 rows
# added by one INSERT … SELECT in psql.
bench_import() {
    local token=$1 portfolio baseline csv job t0 accepted done_ms export_ms baseline_ms state
    portfolio=$(curl -sS --fail-with-body --max-time 10 -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $token" -d '{"name":"bench import"}' \
        "http://$API_ADDR/api/v1/portfolios" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    baseline=$(curl -sS --fail-with-body --max-time 10 -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $token" -d '{"name":"bench import baseline"}' \
        "http://$API_ADDR/api/v1/portfolios" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    csv="$OUT/import-100k.csv"
    python3 - "$csv" <<'PY'
import datetime, sys
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
with open(sys.argv[1], "w") as out:
    out.write("executed_at,coin_id,side,quantity,price,fee,note\n")
    for i in range(100_000):
        coin, turn = i % 100 + 1, i // 100
        side, quantity = ("buy", "1.5") if turn % 2 == 0 else ("sell", "1")
        at = start + datetime.timedelta(minutes=i)
        out.write(f"{at:%Y-%m-%dT%H:%M:%SZ},perf-coin-{coin},{side},{quantity},{coin}.25,0.01,row {i}\n")
PY
    log "import: 100,000 rows ($(($(stat -c %s "$csv") / 1024)) KiB of CSV)"
    t0=$(date +%s%N)
    job=$(curl -sS --fail-with-body --max-time 60 -H 'Content-Type: text/csv' \
        -H "Authorization: Bearer $token" --data-binary @"$csv" \
        "http://$API_ADDR/api/v1/portfolios/$portfolio/imports" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    accepted=$((($(date +%s%N) - t0) / 1000000))
    state=$(wait_for_job "$token" "$job")
    done_ms=$((($(date +%s%N) - t0) / 1000000))
    [[ $state == applied ]] || log "warning: the import ended $state; see GET /api/v1/jobs/$job"
    t0=$(date +%s%N)
    job=$(curl -sS --fail-with-body --max-time 10 -X POST -H "Authorization: Bearer $token" \
        "http://$API_ADDR/api/v1/portfolios/$portfolio/exports?format=csv" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
    wait_for_job "$token" "$job" >/dev/null
    curl -sS --fail --max-time 60 -H "Authorization: Bearer $token" -o "$OUT/export-100k.csv" \
        "http://$API_ADDR/api/v1/jobs/$job/download"
    export_ms=$((($(date +%s%N) - t0) / 1000000))
    t0=$(date +%s%N)
    PGOPTIONS="-c client_min_messages=warning" psql "$BENCH_DATABASE_URL" -qX \
        -v ON_ERROR_STOP=1 -v portfolio="$baseline" >/dev/null <<'SQL'
INSERT INTO portfolio_transactions (id, portfolio_id, coin_id, side, quantity, price, fee, executed_at, note)
SELECT gen_random_uuid(), :'portfolio', 'perf-coin-' || (i % 100 + 1),
       CASE WHEN (i / 100) % 2 = 0 THEN 'buy' ELSE 'sell' END,
       CASE WHEN (i / 100) % 2 = 0 THEN 1.5 ELSE 1 END,
       (i % 100 + 1) + 0.25, 0.01, timestamptz '2025-01-01 00:00:00Z' + interval '1 minute' * i,
       'row ' || i
FROM generate_series(0, 99999) AS i;
SQL
    baseline_ms=$((($(date +%s%N) - t0) / 1000000))
    report "" "## Portfolio import and export (100,000 CSV rows, 100 coins)" ""
    report "| step | ms | × the baseline |" "|---|---:|---:|"
    report "| baseline: one INSERT … SELECT of the same rows (psql) | $baseline_ms | 1.0 |"
    report "| import: upload answered (202) | $accepted | $(ratio "$accepted" "$baseline_ms") |"
    report "| import: upload → job succeeded, rows added | $done_ms | $(ratio "$done_ms" "$baseline_ms") |"
    report "| export: request → file downloaded | $export_ms | $(ratio "$export_ms" "$baseline_ms") |"
}

# wait_for_job TOKEN ID: polls the job until it is final; prints an import's outcome, or the
# job's status.
wait_for_job() {
    local token=$1 job=$2 state
    for _ in $(seq 6000); do
        state=$(curl -sS --fail --max-time 10 -H "Authorization: Bearer $token" \
            "http://$API_ADDR/api/v1/jobs/$job" |
            python3 -c 'import json, sys
job = json.load(sys.stdin)
final = job["status"] in ("succeeded", "dead", "cancelled")
print((job["result"] or {}).get("outcome", job["status"]) if final else "")')
        [[ -n $state ]] && { echo "$state"; return; }
        sleep 0.1
    done
    echo timeout
}

ratio() {
    python3 -c "import sys; print(f'{int(sys.argv[1]) / max(int(sys.argv[2]), 1):.1f}')" "$1" "$2"
}

# start_api LEVEL: the api at RUST_LOG=LEVEL (JSON logs into target/bench/api.log), with
# rate limits far above what wrk can send: this measures the request path, not the limiter.
start_api() {
    start api env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" \
        API_ADDR="$API_ADDR" RATE_LIMIT_PER_MINUTE=100000000 RATE_LIMIT_BURST=100000000 \
        AUTH_RATE_LIMIT_PER_MINUTE=100000000 LOG_FORMAT=json RUST_LOG="$1" "$BIN"/api
    wait_ready api "http://$API_ADDR/health/ready"
}

# stop_api: SIGTERM to the api, and wait for it to exit.
stop_api() {
    kill -TERM "${PIDS[api]}" 2>/dev/null || true
    wait "${PIDS[api]}" 2>/dev/null || true
}

# The api and worker over HTTP against bench-hello, and their memory.
bench_http_section() {
    local token api_idle worker_idle api_after
    start hello env BENCH_HELLO_ADDR="$HELLO_ADDR" "$BIN"/bench-hello
    start worker env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" \
        WORKER_METRICS_ADDR="$WORKER_ADDR" LOG_FORMAT=json RUST_LOG=warn "$BIN"/worker
    start_api warn
    wait_ready hello "http://$HELLO_ADDR/"
    wait_ready worker "http://$WORKER_ADDR/health/ready"
    api_idle=$(rss_mb "${PIDS[api]}")
    worker_idle=$(rss_mb "${PIDS[worker]}")
    token=$(register_user)

    bench_ceiling first
    bench_http "api GET /health/live" api "http://$API_ADDR/health/live"
    bench_http "api GET /api/v1/users/me (JWT)" api "http://$API_ADDR/api/v1/users/me" \
        -H "Authorization: Bearer $token"
    api_after=$(rss_mb "${PIDS[api]}")
    # The level production runs at: a JSON line per request.
    stop_api
    start_api info
    bench_http "api GET /health/live (RUST_LOG=info)" api "http://$API_ADDR/health/live"
    bench_http "api GET /api/v1/users/me (JWT, RUST_LOG=info)" api "http://$API_ADDR/api/v1/users/me" \
        -H "Authorization: Bearer $token"
    stop_api
    start_api warn
    bench_ceiling last

    report_http_table
    report "" "## Memory (VmRSS)" ""
    report "| process | idle MB | after the HTTP runs MB |" "|---|---:|---:|"
    report "| api | $api_idle | $api_after |"
    report "| worker | $worker_idle | $(rss_mb "${PIDS[worker]}") |"
    bench_portfolios "$token"
}

# Portfolio reads (valuation, performance over a year) and the import/export jobs.
bench_portfolios() {
    bench_valuation "$1"
    bench_performance "$1"
    bench_import "$1"
}

# BENCH_ONLY=portfolios: the api and a worker, then bench_portfolios alone.
bench_portfolios_section() {
    start worker env DATABASE_URL="$BENCH_DATABASE_URL" REDIS_URL="$BENCH_REDIS_URL" \
        WORKER_METRICS_ADDR="$WORKER_ADDR" LOG_FORMAT=json RUST_LOG=warn "$BIN"/worker
    start_api warn
    wait_ready worker "http://$WORKER_ADDR/health/ready"
    bench_portfolios "$(register_user)"
}

main() {
    local addr
    [[ -z $BENCH_ONLY || $BENCH_ONLY =~ ^(http|queue|alerts|streams|portfolios)$ ]] ||
        die "BENCH_ONLY must be http, queue, alerts, streams or portfolios (or unset for all)"
    ensure_commands wrk curl python3
    command -v redis-benchmark >/dev/null || die "redis-benchmark is missing (it comes with redis-server: scripts/services.sh up)"
    mkdir -p "$OUT"
    rm -f "$OUT"/*.log "$OUT"/wrk-*.txt "$OUT"/queue.md "$OUT"/redis-benchmark.txt "$REPORT"
    for addr in "$HELLO_ADDR" "$API_ADDR" "$WORKER_ADDR"; do
        port_free "$addr" || die "$addr is already in use (a previous bench still running?)"
    done

    scripts/services.sh up
    log "building release binaries"
    if [[ $BENCH_ONLY == queue || $BENCH_ONLY == alerts ]]; then
        SQLX_OFFLINE="${SQLX_OFFLINE:-true}" cargo build --release -p bench
    elif [[ $BENCH_ONLY == streams ]]; then
        SQLX_OFFLINE="${SQLX_OFFLINE:-true}" cargo build --release -p api -p bench
    else
        SQLX_OFFLINE="${SQLX_OFFLINE:-true}" cargo build --release -p api -p worker -p bench
    fi

    trap cleanup EXIT
    trap 'exit 130' INT TERM
    psql_admin -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB" >/dev/null
    redis-cli -u "$BENCH_REDIS_URL" flushdb >/dev/null

    report "# Coinpulse benchmark" ""
    report "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), commit $(git rev-parse --short HEAD 2>/dev/null || echo none)."
    if [[ -z $BENCH_ONLY || $BENCH_ONLY == http ]]; then
        bench_http_section
    fi
    if [[ $BENCH_ONLY == portfolios ]]; then
        bench_portfolios_section
    fi
    if [[ -z $BENCH_ONLY || $BENCH_ONLY == queue ]]; then
        bench_queue
    fi
    if [[ -z $BENCH_ONLY || $BENCH_ONLY == alerts ]]; then
        bench_alerts
    fi
    if [[ -z $BENCH_ONLY || $BENCH_ONLY == streams ]]; then
        bench_streams
    fi
    [[ $BENCH_ONLY == portfolios ]] || bench_limiter
    log "report written to $REPORT"
}

main "$@"
