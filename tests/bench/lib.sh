# lib.sh — helpers shared by the benchmark scripts (sourced, POSIX sh).
#
# A benchmark script sets WORK (its scratch directory, removed at exit) and then uses:
#   bench_log MSG...                 a timestamped line on stderr
#   bench_die MSG...                 log and exit 1 (the EXIT trap cleans up)
#   pg_init DIR PORT [SETTING...]    initdb -k and a postgresql.conf: a Unix socket in DIR
#                                    and TCP on 127.0.0.1 (trust: the cluster is throwaway)
#   pg_start / pg_stop               start (waits until ready) / stop the cluster of pg_init
#   pg_conninfo [tcp|unix]           libpq connection string (default unix)
#   q SQL                            one value from psql on that cluster (-XAt, stops on error)
#   wait_until SECONDS SQL           poll SQL every 0.2 s until it returns "t"; 1 on timeout
#   proc_cpu_ticks PID               utime+stime of a process (all its threads), in ticks
#   rss_sampler_start PID FILE       VmRSS (KiB) of PID every second into FILE, in background
#   sampler_stop PID                 stop a sampler started here
#   percentile Q < numbers           nearest-rank percentile (Q in 0..100) of stdin, one a line
#   bench_register_pid PID           killed by bench_cleanup if still running
#   bench_cleanup                    kill registered processes, stop the cluster
#   timed OUT CMD...                 run CMD (in the background, waited for) under
#                                    /usr/bin/time: OUT gets "wall user sys maxrss_kib"
#   timed_field OUT N                field N of that line (1 wall, 2 user, 3 sys, 4 RSS)
#   server_cpu_ticks                 CPU of the whole cluster so far: the postmaster, its
#                                    living children and every child it has reaped
#   du_bytes PATH...                 bytes stored under the paths (sizes of the files)
#   load1                            the 1-minute load average
#   pgbr_write_config FILE DIR STANZA   a pgBackRest config for the cluster of pg_init
#                                    (repo, lock, log, spool under DIR; zst 3, 2 processes)
#   file_count PATH...               regular files under the paths (objects created)
#   bench_setup                      the EXIT trap (bench_cleanup, BENCH_AT_EXIT's command,
#                                    WORK removed), a fresh WORK and RESULTS_DIR, $stamp and
#                                    $raw (WORK/runs.jsonl, empty)
#   JQ_STATS                         jq definitions: median, med(f), ratio(a; b), r3
#   print_ratios FILE KEY / print_targets FILE   a result's .KEY or .targets, one a line
#   s3rver_start DIR PORT LOG [ARG...]   s3rver on 127.0.0.1:PORT storing in DIR; waits
#                                    until it answers; sets S3RVER_PID
# Conventions: every wait is bounded; a cluster uses its own port, a Unix socket in WORK
# and TCP on loopback only; everything a script starts is registered so the EXIT trap can end it.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
# initdb, pg_ctl and postgres of another major (a bundle of the test suite's); the client
# programs (psql, pgbench, pg_basebackup) stay PGBIN's.
PGBIN_SERVER=${PGBIN_SERVER:-$PGBIN}
CLK_TCK=$(getconf CLK_TCK)
BENCH_PIDS=""
PGDATA_BENCH=""
PGSOCK_BENCH=""
PGPORT_BENCH=""

bench_log() {
    printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

bench_die() {
    bench_log "error: $*"
    exit 1
}

bench_register_pid() {
    BENCH_PIDS="$BENCH_PIDS $1"
}

# pg_init DIR PORT [SETTING...]: a fresh cluster in DIR/data, socket in DIR/sock.
pg_init() {
    PGDATA_BENCH=$1/data
    PGSOCK_BENCH=$1/sock
    PGPORT_BENCH=$2
    shift 2
    mkdir -p "$PGSOCK_BENCH"
    "$PGBIN_SERVER/initdb" -k -A trust -U postgres -E UTF8 --locale=C -D "$PGDATA_BENCH" \
        >"$WORK/initdb.log" 2>&1 ||
        bench_die "initdb failed: $(tail -5 "$WORK/initdb.log")"
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PGPORT_BENCH"
        echo "unix_socket_directories = '$PGSOCK_BENCH'"
        echo "wal_level = replica"
        echo "max_wal_senders = 10"
        echo "max_replication_slots = 10"
        echo "logging_collector = off"
        for setting in "$@"; do
            echo "$setting"
        done
    } >>"$PGDATA_BENCH/postgresql.conf"
}

pg_start() {
    "$PGBIN_SERVER/pg_ctl" -D "$PGDATA_BENCH" -l "$WORK/postgres.log" -w -t 60 start >/dev/null ||
        bench_die "the server did not start: $(tail -5 "$WORK/postgres.log")"
}

pg_stop() {
    if [ -n "$PGDATA_BENCH" ] && [ -f "$PGDATA_BENCH/postmaster.pid" ]; then
        "$PGBIN_SERVER/pg_ctl" -D "$PGDATA_BENCH" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            "$PGBIN_SERVER/pg_ctl" -D "$PGDATA_BENCH" -m immediate -w -t 30 stop >/dev/null 2>&1 ||
            true
    fi
}

# The libpq connection string of the cluster: over its Unix socket, or over TCP to
# 127.0.0.1 as a backup host elsewhere connects (what the peers are compared on).
pg_conninfo() {
    case "${1:-unix}" in
    tcp) echo "host=127.0.0.1 port=$PGPORT_BENCH user=postgres dbname=postgres" ;;
    unix) echo "host=$PGSOCK_BENCH port=$PGPORT_BENCH user=postgres dbname=postgres" ;;
    *) bench_die "pg_conninfo: transport \"$1\" is not tcp or unix" ;;
    esac
}

# The -h value for PostgreSQL's own client programs, by transport.
pg_host() {
    case "${1:-unix}" in
    tcp) echo 127.0.0.1 ;;
    *) echo "$PGSOCK_BENCH" ;;
    esac
}

q() {
    "$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PGSOCK_BENCH" -p "$PGPORT_BENCH" -U postgres \
        -d postgres -c "$1"
}

# wait_until SECONDS SQL: 0 once SQL says "t", 1 if it never did within SECONDS.
wait_until() {
    deadline=$(($(date +%s) + $1))
    while [ "$(date +%s)" -le "$deadline" ]; do
        if [ "$(q "$2" 2>/dev/null)" = t ]; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

proc_cpu_ticks() {
    # Fields after the ")" that ends the command name: utime and stime are 12 and 13.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# Ticks to seconds, three decimals.
ticks_to_s() {
    awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", t / hz }'
}

rss_sampler_start() {
    (
        while [ -r "/proc/$1/status" ]; do
            awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || break
            sleep 1
        done
    ) >"$2" &
    SAMPLER_PID=$!
    bench_register_pid "$SAMPLER_PID"
}

sampler_stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

percentile() {
    sort -n | awk -v p="$1" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "null"; exit }
            k = int(p / 100 * NR); if (k < p / 100 * NR) k++; if (k < 1) k = 1
            print v[k]
        }'
}

# timed OUT CMD...: CMD's wall time, user and system CPU (its own and that of every child
# it waited for) and its peak RSS (the largest single process), into OUT.
timed() {
    timed_out=$1
    shift
    /usr/bin/time -f '%e %U %S %M' -o "$timed_out" "$@" &
    bench_register_pid $!
    wait $!
}

timed_field() {
    awk -v n="$2" 'NF == 4 { v = $n } END { print v }' "$1"
}

server_cpu_ticks() {
    pm=$(head -1 "$PGDATA_BENCH/postmaster.pid")
    {
        # utime stime cutime cstime: fields 14-17, 12-15 after the command name
        sed 's/^.*) //' "/proc/$pm/stat" | awk '{ print $12 + $13 + $14 + $15 }'
        for c in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
            sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }'
        done
    } | awk '{ t += $1 } END { print t + 0 }'
}

du_bytes() { # the files' own sizes: directories are not counted (a chunk store's 256
    # fan-out directories alone are 1 MiB on ext4)
    find "$@" -type f -printf '%s\n' 2>/dev/null | awk '{ t += $1 } END { printf "%.0f\n", t }'
}

file_count() {
    find "$@" -type f 2>/dev/null | wc -l
}

load1() {
    cut -d' ' -f1 /proc/loadavg
}

# pgbr_write_config FILE DIR STANZA: everything pgBackRest writes stays under DIR.
pgbr_write_config() {
    mkdir -p "$2/repo" "$2/lock" "$2/log" "$2/spool"
    cat >"$1" <<EOF
[global]
repo1-path=$2/repo
repo1-retention-full=9999
lock-path=$2/lock
log-path=$2/log
spool-path=$2/spool
log-level-console=warn
log-level-file=info
compress-type=zst
compress-level=3
process-max=2
start-fast=y

[$3]
pg1-path=$PGDATA_BENCH
pg1-socket-path=$PGSOCK_BENCH
pg1-port=$PGPORT_BENCH
pg1-user=postgres
EOF
}

bench_setup() {
    trap bench_exit EXIT
    trap 'exit 130' INT TERM
    rm -rf "$WORK"
    mkdir -p "$WORK" "$RESULTS_DIR"
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    raw=$WORK/runs.jsonl
    : >"$raw"
}

bench_exit() {
    status=$?
    trap - EXIT INT TERM
    bench_cleanup
    [ -z "${BENCH_AT_EXIT:-}" ] || eval "$BENCH_AT_EXIT" || true
    rm -rf "$WORK" 2>/dev/null || { sleep 2 && rm -rf "$WORK"; } || true
    exit "$status"
}

# shellcheck disable=SC2016 # jq, not shell
JQ_STATS='
    def median: map(select(. != null)) | sort |
        if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def med(f): map(f) | median;
    def ratio(a; b): if a == null or b == null or b == 0 then null else (a / b * 1000 | round / 1000) end;
    def r3: if . == null then null else (. * 1000 | round / 1000) end;
'

print_ratios() { # file key
    jq -r --arg k "$2" '.[$k] | to_entries[] | "  \(.key): \(.value // "-")"' "$1"
}

print_targets() { # file
    jq -r '.targets | to_entries[] | "  \(.key): \(if .value == null then "-" elif .value then "met" else "MISSED" end)"' "$1"
}

s3rver_start() { # dir port log [arg...]
    s3_dir=$1 s3_port=$2 s3_log=$3
    shift 3
    node --openssl-legacy-provider "$S3RVER_JS" -d "$s3_dir" -a 127.0.0.1 -p "$s3_port" "$@" >"$s3_log" 2>&1 &
    S3RVER_PID=$!
    bench_register_pid "$S3RVER_PID"
    i=0
    until curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; do
        kill -0 "$S3RVER_PID" 2>/dev/null || bench_die "s3rver exited: $(tail -5 "$s3_log")"
        [ $i -lt 100 ] || bench_die "s3rver does not answer after 20 s"
        sleep 0.2
        i=$((i + 1))
    done
}

bench_cleanup() {
    for pid in $BENCH_PIDS; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $BENCH_PIDS; do
        wait "$pid" 2>/dev/null || true
    done
    BENCH_PIDS=""
    pg_stop
}
