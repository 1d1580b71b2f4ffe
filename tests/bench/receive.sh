#!/bin/sh
# receive.sh — WAL receiver benchmark: pgark receive against pg_receivewal, side by side.
#
# One throwaway PostgreSQL cluster, a pgbench database, and per round these variants in
# an order that rotates from round to round:
#   none          no receiver: the TPS baseline
#   pg_receivewal pg_receivewal --synchronous --slot, into a directory
#   pgark         pgark receive, synchronous: true, two posix repositories, zstd level 3
#   pgark_obs     the same with what a service runs with on: notify (every event, to a
#                 webhook on loopback that answers 200, rpo_target 1s) and metrics_listen,
#                 scraped every second (Prometheus scrapes every 15 s by default); its
#                 figures against pgark's show what alerts and metrics cost
#                 (BENCH_OBS=0 leaves it out)
#   pgark_off     pgark with synchronous: false: fsyncs and flush reports batched every
#                 flush_interval (default 200 ms; BENCH_FLUSH_INTERVAL); its figures
#                 against pgark's show what batching saves. Run in mode async only
#                 (BENCH_OFF=0: never; BENCH_OFF=all: in every mode): with
#                 synchronous_standby_names waiting on it every commit waits for a batch,
#                 the set-up the receiver warns about
#   pgark_old     (only with BENCH_PGARK_OLD, the path of another pgark binary) pgark's
#                 set-up with that binary: a before/after pair measured in one run
# Every receiver connects over TCP to 127.0.0.1, as a backup host elsewhere does: those
# are the headline figures. With "unix" in BENCH_TRANSPORTS ("tcp unix", the default;
# "tcp" alone skips them) pg_receivewal and pgark also run over the Unix socket, as
# pg_receivewal_unix and pgark_unix. pgbench and the samplers always use the socket.
# Each receiver runs in every mode of BENCH_MODES:
#   sync    its application_name is synchronous_standby_names (commits wait on it)
#   async   it is not (commits do not wait; it still fsyncs before reporting a flush)
# Measured per run: receiver CPU (utime+stime of the process, from the start of the load
# until it has flushed — and pgark shipped to both repositories — the last complete
# segment) per GiB of WAL (pg_current_wal_lsn() over the load), flush lag (the server's
# pg_stat_replication.flush_lag, sampled every 100 ms), pgbench TPS, receiver RSS (every
# second: first, last, max), and the CPU of the receiver's main thread alone (loop_cpu_s:
# pgark's receive loop — socket reads, spool writes, fsyncs, status messages — without its
# shippers; all of pg_receivewal, which has one thread), per GiB too, in the table as
# loop_s/GiB. Prints medians over rounds and pgark/pg_receivewal ratios;
# writes every run and the medians to $RESULTS_DIR/receive-<timestamp>.json.
#
# Environment: PGARK (the binary, required), WORK (scratch directory, removed at exit),
# RESULTS_DIR; BENCH_SECONDS (300), BENCH_ROUNDS (3), BENCH_MODES ("sync async"),
# BENCH_SCALE (20), BENCH_CLIENTS (4), BENCH_JOBS (2), BENCH_PORT (54391; the webhook and
# the metrics of pgark_obs listen on the next two ports), BENCH_OBS (1), BENCH_OFF (1),
# BENCH_FLUSH_INTERVAL (unset: pgark's default), BENCH_TRANSPORTS ("tcp unix"),
# BENCH_PGARK_OLD (unset).
# BENCH_PERF=1: after the rounds, one more pgark run (first mode of BENCH_MODES, not in
# the medians) under `perf record -g`; its report goes to receive-<timestamp>-perf.txt.
# Unprivileged, perf sees user space only (perf_event_paranoid 2): time spent inside
# system calls shows as the libc wrapper that made them.
# BENCH_STRACE=1: after the rounds, one more run of pgark (and of pgark_old with
# BENCH_PGARK_OLD, then pg_receivewal; first mode of BENCH_MODES, not in the medians)
# under `strace -f -c`;
# the counts, per second of load and per GiB of WAL, go to
# receive-<timestamp>-strace-<tool>.txt. strace slows every system call: the WAL rate of
# that run is lower, so counts driven by a timer weigh more per GiB than without it.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
SECONDS_RUN=${BENCH_SECONDS:-300}
ROUNDS=${BENCH_ROUNDS:-3}
MODES=${BENCH_MODES:-sync async}
SCALE=${BENCH_SCALE:-20}
CLIENTS=${BENCH_CLIENTS:-4}
JOBS=${BENCH_JOBS:-2}
PORT=${BENCH_PORT:-54391}
PERF=${BENCH_PERF:-0}
STRACE=${BENCH_STRACE:-0}
OBS=${BENCH_OBS:-1}
OFF=${BENCH_OFF:-1}
FLUSH_INTERVAL=${BENCH_FLUSH_INTERVAL:-}
TRANSPORTS=${BENCH_TRANSPORTS:-tcp unix}
PGARK_OLD=${BENCH_PGARK_OLD:-}
HOOK_PORT=$((PORT + 1))
METRICS_PORT=$((PORT + 2))
PROFILE=0
APP=bench_rx
SLOT=bench_slot
SEG=16777216

for m in $MODES; do
    case "$m" in
    sync | async) ;;
    *) bench_die "unknown mode \"$m\" in BENCH_MODES (sync or async)" ;;
    esac
done
[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -z "$PGARK_OLD" ] || [ -x "$PGARK_OLD" ] || bench_die "no pgark binary at \"$PGARK_OLD\" (BENCH_PGARK_OLD)"
for t in $TRANSPORTS; do
    case "$t" in
    tcp | unix) ;;
    *) bench_die "BENCH_TRANSPORTS: \"$t\" is not tcp or unix" ;;
    esac
done
case " $TRANSPORTS " in
*" tcp "*) ;;
*) bench_die "BENCH_TRANSPORTS must include tcp (the headline figures)" ;;
esac

RX_PID=""
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$PGDATA_BENCH" ] && [ -f "$PGDATA_BENCH/postmaster.pid" ]; then
        # Never leave commits waiting on a receiver that is going away.
        q "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null 2>&1 || true
        q "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    fi
    [ -z "$RX_PID" ] || kill "$RX_PID" 2>/dev/null || true
    bench_cleanup
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw=$WORK/runs.jsonl
: >"$raw"

bench_log "cluster on port $PORT in $WORK; pgbench scale $SCALE, $CLIENTS clients, $SECONDS_RUN s x $ROUNDS rounds, modes: $MODES"
pg_init "$WORK/pg" "$PORT" \
    "shared_buffers = 256MB" \
    "synchronous_commit = on" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "wal_sender_timeout = 60s"
pg_start
t0=$(date +%s)
# Long commands run in the background and are waited for, so that a signal is acted on
# at once (sh runs a trap only once its foreground command has finished).
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
bench_log "pgbench -i -s $SCALE took $(($(date +%s) - t0)) s"

# The lag sampler: one psql session reading the receiver's row every 100 ms.
lag_script=$WORK/lag.sql
awk -v n=$((SECONDS_RUN * 10 + 1200)) -v app="$APP" 'BEGIN {
    for (i = 0; i < n; i++) {
        printf "SELECT coalesce(round((extract(epoch FROM flush_lag) * 1000)::numeric, 3), -1), "
        printf "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), flush_lsn) "
        printf "FROM pg_stat_replication WHERE application_name = '\''%s'\'';\n", app
        print "SELECT pg_sleep(0.1);"
    }
}' >"$lag_script"

# The transport of a tool: its _unix variants use the socket, every other one TCP.
transport_of() { # tool
    case "$1" in
    *_unix) echo unix ;;
    *) echo tcp ;;
    esac
}

write_pgark_config() { # file dir [obs|off|unix|old] transport
    if [ "${3:-}" = obs ]; then
        cat >"$1" <<EOF
metrics_listen: 127.0.0.1:$METRICS_PORT
notify:
  - url: http://127.0.0.1:$HOOK_PORT/hook
    format: json
    events: ["*"]
EOF
    else
        : >"$1"
    fi
    cat >>"$1" <<EOF
spool: $2/spool
log:
  level: info
repos:
  r1:
    type: posix
    path: $2/repo1
  r2:
    type: posix
    path: $2/repo2
compression:
  algorithm: zstd
  level: 3
clusters:
  bench:
    conninfo: "$(pg_conninfo "$4")"
    slot: $SLOT
    create_slot: false
    repos: [r1, r2]
    application_name: $APP
EOF
    [ "${3:-}" != obs ] || echo "    rpo_target: 1s" >>"$1"
    if [ "${3:-}" = off ]; then
        echo "    synchronous: false" >>"$1"
        [ -z "$FLUSH_INTERVAL" ] || echo "    flush_interval: $FLUSH_INTERVAL" >>"$1"
    else
        echo "    synchronous: true" >>"$1"
    fi
}

# pgark_obs's webhook: answers 200 to every POST, as a chat service would.
start_webhook() {
    python3 -c '
import http.server, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
' "$HOOK_PORT" &
    bench_register_pid $!
}

# pgark_obs's scraper: GET /metrics every second while the receiver runs.
start_scraper() {
    while kill -0 "$RX_PID" 2>/dev/null; do
        curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null || true
        sleep 1
    done &
    bench_register_pid $!
}

start_receiver() { # tool dir
    case "$1" in
    pg_receivewal | pg_receivewal_unix)
        mkdir -p "$2/wal"
        "$PGBIN/pg_receivewal" -D "$2/wal" --slot "$SLOT" --synchronous -n --no-password \
            -d "$(pg_conninfo "$(transport_of "$1")") application_name=$APP" >"$2/rx.log" 2>&1 &
        ;;
    pgark | pgark_obs | pgark_off | pgark_unix | pgark_old)
        mkdir -p "$2/spool" "$2/repo1" "$2/repo2"
        write_pgark_config "$2/pgark.yaml" "$2" "${1#pgark_}" "$(transport_of "$1")"
        bin=$PGARK
        [ "$1" != pgark_old ] || bin=$PGARK_OLD
        "$bin" --config "$2/pgark.yaml" receive >"$2/rx.log" 2>&1 &
        ;;
    esac
    RX_PID=$!
    bench_register_pid "$RX_PID"
    [ "$1" != pgark_obs ] || start_scraper
}

stop_receiver() { # tool dir
    [ -n "$RX_PID" ] || return 0
    if [ "${1%_unix}" = pg_receivewal ]; then
        kill -INT "$RX_PID" 2>/dev/null || true
    else
        kill -TERM "$RX_PID" 2>/dev/null || true
    fi
    i=0
    while kill -0 "$RX_PID" 2>/dev/null && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$RX_PID" 2>/dev/null; then
        bench_log "receiver $1 did not stop within 30 s; killing it"
        kill -KILL "$RX_PID" 2>/dev/null || true
    fi
    wait "$RX_PID" 2>/dev/null || true
    RX_PID=""
}

# pgark only: has every repository shipped each complete segment up to LSN?
pgark_shipped_sql() { # dir boundary-lsn
    lsns=$(jq -r '[.repos[].shipped_lsn // "0/0"] | join(",")' "$1/spool/bench/status.json" 2>/dev/null) ||
        lsns=""
    [ -n "$lsns" ] || lsns=0/0
    echo "SELECT bool_and(l::pg_lsn >= '$2') FROM unnest(string_to_array('$lsns', ',')) l"
}

# utime+stime of a process's main thread (its task of the same id), in ticks.
main_thread_cpu_ticks() { # pid
    sed 's/^.*) //' "/proc/$1/task/$1/stat" | awk '{ print $12 + $13 }'
}

json_num() { # a number, or null when empty
    if [ -n "$1" ]; then echo "$1"; else echo null; fi
}

run_variant() { # mode tool round
    mode=$1 tool=$2 round=$3
    dir=$WORK/run
    rm -rf "$dir"
    mkdir -p "$dir"
    bench_log "round $round: $tool${mode:+ ($mode)}"
    q "VACUUM pgbench_history, pgbench_accounts, pgbench_branches, pgbench_tellers" >/dev/null
    q "CHECKPOINT" >/dev/null

    if [ "$tool" != none ]; then
        q "SELECT pg_create_physical_replication_slot('$SLOT', true)" >/dev/null
        start_receiver "$tool" "$dir"
        wait_until 30 "SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '$APP' AND state = 'streaming'" ||
            bench_die "$tool is not streaming after 30 s: $(tail -5 "$dir/rx.log")"
        if [ "$mode" = sync ]; then
            q "ALTER SYSTEM SET synchronous_standby_names = '$APP'" >/dev/null
            q "SELECT pg_reload_conf()" >/dev/null
            wait_until 30 "SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '$APP' AND sync_state = 'sync'" ||
                bench_die "$tool did not become the synchronous standby"
        fi
        rss_sampler_start "$RX_PID" "$dir/rss"
        rss_pid=$SAMPLER_PID
        "$PGBIN/psql" -XAtq -F ' ' -h "$PGSOCK_BENCH" -p "$PORT" -U postgres -d postgres \
            -f "$lag_script" >"$dir/lag" 2>/dev/null &
        lag_pid=$!
        bench_register_pid "$lag_pid"
        cpu0=$(proc_cpu_ticks "$RX_PID")
        loop0=$(main_thread_cpu_ticks "$RX_PID")
        perf_pid=""
        if [ "$PROFILE" = strace ]; then
            strace -f -c -q -p "$RX_PID" -o "$WORK/strace.txt" >"$WORK/strace.log" 2>&1 &
            perf_pid=$!
            bench_register_pid "$perf_pid"
            t_load0=$(date +%s.%N)
        elif [ "$PROFILE" = 1 ]; then
            perf record -g -F 499 -p "$RX_PID" -o "$WORK/perf.data" >"$WORK/perf.log" 2>&1 &
            perf_pid=$!
            bench_register_pid "$perf_pid"
        fi
    fi

    lsn0=$(q "SELECT pg_current_wal_lsn()")
    timeout $((SECONDS_RUN + 120)) "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$JOBS" -T "$SECONDS_RUN" \
        -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres >"$dir/pgbench.log" 2>&1 &
    bench_register_pid $!
    wait $! || bench_die "pgbench failed: $(tail -5 "$dir/pgbench.log")"
    lsn1=$(q "SELECT pg_current_wal_lsn()")
    t_load1=$(date +%s.%N)
    tps=$(awk '/^tps = / { print $3; exit }' "$dir/pgbench.log")
    wal=$(q "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")

    cpu_s="" loop_s="" rss_mid="" lag50="" lag99="" lagmax="" blag50="" blag99="" rss_first="" rss_last="" rss_max=""
    catchup=""
    if [ "$tool" != none ]; then
        sampler_stop "$lag_pid"
        t1=$(date +%s.%N)
        wait_until 120 "SELECT coalesce((SELECT flush_lsn >= '$lsn1' FROM pg_stat_replication WHERE application_name = '$APP'), false)" ||
            bench_die "$tool did not flush $lsn1 within 120 s of the end of the load"
        if [ "${tool%_unix}" != pg_receivewal ]; then
            boundary=$(q "SELECT pg_lsn '0/0' + (pg_wal_lsn_diff('$lsn1', '0/0') - pg_wal_lsn_diff('$lsn1', '0/0') % $SEG)")
            deadline=$(($(date +%s) + 180))
            until [ "$(q "$(pgark_shipped_sql "$dir" "$boundary")")" = t ]; do
                [ "$(date +%s)" -lt "$deadline" ] ||
                    bench_die "pgark did not ship up to $boundary within 180 s: $(tail -5 "$dir/rx.log")"
                kill -0 "$RX_PID" 2>/dev/null || bench_die "pgark exited: $(tail -5 "$dir/rx.log")"
                sleep 0.5
            done
        fi
        catchup=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
        kill -0 "$RX_PID" 2>/dev/null || bench_die "$tool exited during the run: $(tail -5 "$dir/rx.log")"
        cpu1=$(proc_cpu_ticks "$RX_PID")
        loop1=$(main_thread_cpu_ticks "$RX_PID")
        cpu_s=$(ticks_to_s $((cpu1 - cpu0)))
        loop_s=$(ticks_to_s $((loop1 - loop0)))
        if [ -n "$perf_pid" ] && [ "$PROFILE" = strace ]; then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            # Counted from the start of the load until every repository holds the last
            # complete segment (as the CPU figure); the rates use the load's seconds.
            secs=$(awk -v a="$t_load0" -v b="$t_load1" 'BEGIN { printf "%.1f", b - a }')
            {
                echo "$tool: $secs s of load, $(awk -v b="$wal" 'BEGIN { printf "%.3f", b / 2^30 }') GiB WAL, $cpu_s s CPU (under strace)"
                printf '%-20s %10s %10s %10s\n' syscall calls per_s per_GiB
                awk -v s="$secs" -v b="$wal" '
                    $1 ~ /^[0-9.]+$/ && NF >= 5 {
                        n = $4; name = $NF
                        printf "%-20s %10d %10.1f %10.0f\n", name, n, n / s, n / (b / 2^30)
                    }' "$WORK/strace.txt" | sort -k2,2nr
            } >"$RESULTS_DIR/receive-$stamp-strace-$tool.txt" ||
                bench_log "strace report failed: $(tail -3 "$WORK/strace.log")"
        elif [ -n "$perf_pid" ]; then
            kill -INT "$perf_pid" 2>/dev/null || true
            wait "$perf_pid" 2>/dev/null || true
            # Flat: libzstd and libc have no frame pointers, so call chains break there.
            {
                for keys in pid dso dso,sym; do
                    echo "== self time by $keys"
                    perf report -i "$WORK/perf.data" --stdio --no-children -g none \
                        --sort "$keys" --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$'
                done
            } >"$RESULTS_DIR/receive-$stamp-perf.txt" ||
                bench_log "perf report failed: $(tail -3 "$WORK/perf.log")"
        fi
        sampler_stop "$rss_pid"
        if [ "$mode" = sync ]; then
            q "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
            q "SELECT pg_reload_conf()" >/dev/null
        fi
        stop_receiver "$tool"
        q "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null

        awk 'NF == 2 && $1 >= 0 { print $1 }' "$dir/lag" >"$dir/lag.ms"
        awk 'NF == 2 { print $2 }' "$dir/lag" >"$dir/lag.bytes"
        [ -s "$dir/lag.ms" ] || bench_die "no flush_lag samples for $tool"
        lag50=$(percentile 50 <"$dir/lag.ms")
        lag99=$(percentile 99 <"$dir/lag.ms")
        lagmax=$(percentile 100 <"$dir/lag.ms")
        blag50=$(percentile 50 <"$dir/lag.bytes")
        blag99=$(percentile 99 <"$dir/lag.bytes")
        rss_first=$(sed -n 1p "$dir/rss")
        rss_last=$(awk 'NF { v = $1 } END { print v }' "$dir/rss")
        rss_mid=$(awk 'NF { v[++n] = $1 } END { if (n) print v[int((n + 1) / 2)] }' "$dir/rss")
        rss_max=$(percentile 100 <"$dir/rss")
        nlag=$(wc -l <"$dir/lag.ms")
        if [ "${tool%_unix}" != pg_receivewal ]; then
            cp "$dir/rx.log" "$WORK/last-pgark.log"
        fi
        bench_log "  $tool: $tps tps, $(awk -v b="$wal" 'BEGIN { printf "%.3f", b / 2^30 }') GiB WAL, $cpu_s s CPU ($loop_s s main thread), flush lag p50 $lag50 ms p99 $lag99 ms ($nlag samples), RSS max $rss_max KiB, catch-up $catchup s"
    else
        bench_log "  none: $tps tps, $(awk -v b="$wal" 'BEGIN { printf "%.3f", b / 2^30 }') GiB WAL"
    fi

    jq -cn --arg mode "${mode:-none}" --arg tool "$tool" --argjson round "$round" \
        --arg transport "$(transport_of "$tool")" \
        --argjson profiled "$([ "$PROFILE" != 0 ] && echo true || echo false)" \
        --argjson tps "$(json_num "$tps")" --argjson wal "$wal" \
        --argjson cpu "$(json_num "$cpu_s")" --argjson loop "$(json_num "$loop_s")" \
        --argjson lag50 "$(json_num "$lag50")" --argjson lag99 "$(json_num "$lag99")" \
        --argjson lagmax "$(json_num "$lagmax")" \
        --argjson blag50 "$(json_num "$blag50")" --argjson blag99 "$(json_num "$blag99")" \
        --argjson rss_first "$(json_num "$rss_first")" --argjson rss_last "$(json_num "$rss_last")" --argjson rss_mid "$(json_num "$rss_mid")" \
        --argjson rss_max "$(json_num "$rss_max")" --argjson catchup "$(json_num "$catchup")" \
        '{mode: $mode, tool: $tool, transport: $transport, round: $round, tps: $tps, wal_bytes: $wal,
          cpu_s: $cpu, cpu_s_per_gib: (if $cpu == null then null else ($cpu / ($wal / 1073741824) * 1000 | round / 1000) end),
          loop_cpu_s: $loop, loop_cpu_s_per_gib: (if $loop == null then null else ($loop / ($wal / 1073741824) * 1000 | round / 1000) end),
          flush_lag_ms: {p50: $lag50, p99: $lag99, max: $lagmax},
          flush_lag_bytes: {p50: $blag50, p99: $blag99},
          rss_kib: {first: $rss_first, mid: $rss_mid, last: $rss_last, max: $rss_max},
          catchup_s: $catchup, profiled: $profiled}' >>"$raw"
    rm -rf "$dir"
}

# The variants of one round, rotated by the round number so that no variant always
# runs first (or right after the same neighbour).
variants=none
for m in $MODES; do
    variants="$variants $m:pg_receivewal $m:pgark"
    case " $TRANSPORTS " in
    *" unix "*) variants="$variants $m:pg_receivewal_unix $m:pgark_unix" ;;
    esac
    [ -z "$PGARK_OLD" ] || variants="$variants $m:pgark_old"
    [ "$OBS" = 0 ] || variants="$variants $m:pgark_obs"
    if [ "$OFF" = all ] || { [ "$OFF" = 1 ] && [ "$m" = async ]; }; then
        variants="$variants $m:pgark_off"
    fi
done
[ "$OBS" = 0 ] || start_webhook
nvar=$(echo "$variants" | wc -w)

round=1
while [ "$round" -le "$ROUNDS" ]; do
    shift_by=$(((round - 1) % nvar))
    # shellcheck disable=SC2086 # word splitting of the list is intended
    set -- $variants
    i=0
    while [ $i -lt "$shift_by" ]; do
        first=$1
        shift
        set -- "$@" "$first"
        i=$((i + 1))
    done
    for v in "$@"; do
        case "$v" in
        none) run_variant "" none "$round" ;;
        *) run_variant "${v%%:*}" "${v#*:}" "$round" ;;
        esac
    done
    round=$((round + 1))
done
if [ "$PERF" = 1 ]; then
    PROFILE=1
    set -- $MODES
    run_variant "$1" pgark "$round"
    PROFILE=0
fi
if [ "$STRACE" = 1 ]; then
    PROFILE=strace
    set -- $MODES
    run_variant "$1" pgark "$round"
    [ -z "$PGARK_OLD" ] || run_variant "$1" pgark_old "$round"
    run_variant "$1" pg_receivewal "$round"
    PROFILE=0
fi

# Medians over rounds, ratios, the table.
out=$RESULTS_DIR/receive-$stamp.json
jq -s --arg stamp "$stamp" --argjson seconds "$SECONDS_RUN" --argjson rounds "$ROUNDS" \
    --argjson scale "$SCALE" --argjson clients "$CLIENTS" --argjson jobs "$JOBS" \
    --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" \
    --arg pg "$("$PGBIN/postgres" --version)" '
    def median: map(select(. != null)) | sort |
        if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def med(f): map(f) | median;
    def ratio(a; b): if a == null or b == null or b == 0 then null else (a / b * 1000 | round / 1000) end;
    map(select(.profiled | not)) as $runs |
    ($runs | map(select(.tool == "none")) | med(.tps)) as $base_tps |
    ([$runs[] | select(.tool != "none") | .mode] | unique) as $modes |
    {benchmark: "receive", started_utc: $stamp, host: $host, cpus: $cpus,
     postgres: $pg, pgark: $pgark,
     settings: {seconds: $seconds, rounds: $rounds, pgbench_scale: $scale,
                clients: $clients, jobs: $jobs,
                pgark: "synchronous: true, 2 posix repositories, zstd level 3",
                pgark_off: "the same with synchronous: false",
                pg_receivewal: "--synchronous --slot",
                transports: "every receiver over TCP to 127.0.0.1; *_unix over the Unix socket"},
     runs: $runs,
     baseline_tps: $base_tps,
     medians: [ $modes[] as $m | ["pg_receivewal", "pgark", "pgark_off", "pgark_obs", "pgark_old",
                                  "pg_receivewal_unix", "pgark_unix"][] as $t |
        select(any($runs[]; .mode == $m and .tool == $t)) |
        ($runs | map(select(.mode == $m and .tool == $t))) as $r |
        {mode: $m, tool: $t, transport: $r[0].transport, tps: ($r | med(.tps)),
         tps_vs_baseline: ratio($r | med(.tps); $base_tps),
         wal_bytes: ($r | med(.wal_bytes)), cpu_s: ($r | med(.cpu_s)),
         cpu_s_per_gib: ($r | med(.cpu_s_per_gib)),
         loop_cpu_s_per_gib: ($r | med(.loop_cpu_s_per_gib)),
         flush_lag_ms: {p50: ($r | med(.flush_lag_ms.p50)), p99: ($r | med(.flush_lag_ms.p99)),
                        max: ($r | med(.flush_lag_ms.max))},
         flush_lag_bytes: {p50: ($r | med(.flush_lag_bytes.p50)), p99: ($r | med(.flush_lag_bytes.p99))},
         rss_kib: {first: ($r | med(.rss_kib.first)), mid: ($r | med(.rss_kib.mid)), last: ($r | med(.rss_kib.last)),
                   max: ($r | map(.rss_kib.max) | max)},
         catchup_s: ($r | med(.catchup_s))} ] } |
    .ratios = [ $modes[] as $m | ("pgark", "pgark_off", "pgark_old", "pgark_unix") as $t |
        (.medians | map(select(.mode == $m and .tool == $t))[0]) as $a |
        (.medians | map(select(.mode == $m and .tool == (if $t == "pgark_unix" then "pg_receivewal_unix" else "pg_receivewal" end)))[0]) as $b |
        select($a != null) |
        {mode: $m, tool: $t, cpu_s_per_gib: ratio($a.cpu_s_per_gib; $b.cpu_s_per_gib),
         flush_lag_p50: ratio($a.flush_lag_ms.p50; $b.flush_lag_ms.p50),
         flush_lag_p99: ratio($a.flush_lag_ms.p99; $b.flush_lag_ms.p99),
         tps: ratio($a.tps; $b.tps)} ] |
    .off_ratios = [ $modes[] as $m |
        (.medians | map(select(.mode == $m and .tool == "pgark_off"))[0]) as $a |
        (.medians | map(select(.mode == $m and .tool == "pgark"))[0]) as $b |
        select($a != null) |
        {mode: $m, cpu_s_per_gib: ratio($a.cpu_s_per_gib; $b.cpu_s_per_gib),
         flush_lag_p50: ratio($a.flush_lag_ms.p50; $b.flush_lag_ms.p50),
         flush_lag_p99: ratio($a.flush_lag_ms.p99; $b.flush_lag_ms.p99),
         tps: ratio($a.tps; $b.tps)} ] |
    .new_old_ratios = [ $modes[] as $m |
        (.medians | map(select(.mode == $m and .tool == "pgark"))[0]) as $a |
        (.medians | map(select(.mode == $m and .tool == "pgark_old"))[0]) as $b |
        select($a != null and $b != null) |
        {mode: $m, cpu_s_per_gib: ratio($a.cpu_s_per_gib; $b.cpu_s_per_gib),
         flush_lag_p50: ratio($a.flush_lag_ms.p50; $b.flush_lag_ms.p50),
         flush_lag_p99: ratio($a.flush_lag_ms.p99; $b.flush_lag_ms.p99),
         tps: ratio($a.tps; $b.tps)} ] |
    .obs_ratios = [ $modes[] as $m |
        (.medians | map(select(.mode == $m and .tool == "pgark_obs"))[0]) as $a |
        (.medians | map(select(.mode == $m and .tool == "pgark"))[0]) as $b |
        select($a != null) |
        {mode: $m, cpu_s_per_gib: ratio($a.cpu_s_per_gib; $b.cpu_s_per_gib),
         flush_lag_p50: ratio($a.flush_lag_ms.p50; $b.flush_lag_ms.p50),
         flush_lag_p99: ratio($a.flush_lag_ms.p99; $b.flush_lag_ms.p99),
         tps: ratio($a.tps; $b.tps)} ]
    ' "$raw" >"$out"

{
    echo
    echo "receive benchmark: pgbench -c $CLIENTS -j $JOBS -T $SECONDS_RUN, scale $SCALE, medians of $ROUNDS rounds"
    jq -r '"baseline (no receiver): \(if .baseline_tps == null then "-" else (.baseline_tps * 10 | round / 10) end) tps"' "$out"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["mode", "tool", "via", "tps", "x_base", "GiB_WAL", "CPU_s", "CPU_s/GiB", "loop_s/GiB", "lag_p50_ms", "lag_p99_ms",
          "lag_max_ms", "RSS_MiB_first/mid/last/max", "catch-up_s"] | @tsv),
        (.medians[] | [.mode, .tool, .transport, (.tps | f(1)), (.tps_vs_baseline | f(2)),
            (.wal_bytes / 1073741824 | f(3)), (.cpu_s | f(2)), (.cpu_s_per_gib | f(2)), (.loop_cpu_s_per_gib | f(2)),
            (.flush_lag_ms.p50 | f(2)), (.flush_lag_ms.p99 | f(2)), (.flush_lag_ms.max | f(1)),
            "\(.rss_kib.first / 1024 | f(1))/\(.rss_kib.mid / 1024 | f(1))/\(.rss_kib.last / 1024 | f(1))/\(.rss_kib.max / 1024 | f(1))",
            (.catchup_s | f(2))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "pgark (synchronous: true as pgark, false as pgark_off) / pg_receivewal, over the same transport:"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        .ratios[] | "  \(.mode) \(.tool): CPU per GiB \(.cpu_s_per_gib | f(2))x, flush lag p50 \(.flush_lag_p50 | f(2))x, p99 \(.flush_lag_p99 | f(2))x, TPS \(.tps | f(2))x"
    ' "$out"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        if (.off_ratios | length) > 0 then "pgark synchronous: false / true:",
        (.off_ratios[] | "  \(.mode): CPU per GiB \(.cpu_s_per_gib | f(2))x, flush lag p50 \(.flush_lag_p50 | f(2))x, p99 \(.flush_lag_p99 | f(2))x, TPS \(.tps | f(2))x")
        else empty end
    ' "$out"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        if (.new_old_ratios | length) > 0 then "pgark / pgark_old (BENCH_PGARK_OLD), paired in this run:",
        (.new_old_ratios[] | "  \(.mode): CPU per GiB \(.cpu_s_per_gib | f(2))x, flush lag p50 \(.flush_lag_p50 | f(2))x, p99 \(.flush_lag_p99 | f(2))x, TPS \(.tps | f(2))x")
        else empty end
    ' "$out"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        if (.obs_ratios | length) > 0 then "pgark with notify and metrics on / off:",
        (.obs_ratios[] | "  \(.mode): CPU per GiB \(.cpu_s_per_gib | f(2))x, flush lag p50 \(.flush_lag_p50 | f(2))x, p99 \(.flush_lag_p99 | f(2))x, TPS \(.tps | f(2))x")
        else empty end
    ' "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
