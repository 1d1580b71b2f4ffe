#!/bin/sh
# s3repo.sh — backup and restore through an S3 repository beside a posix one, with the
# number of S3 requests, and a projection to 1 TB.
#
# One throwaway cluster (data checksums on), pgbench -i at BENCH_S3REPO_SCALE (100), an
# s3rver on loopback with its store on /dev/shm when there is one (what is measured is
# pgark's side, not the disk under the S3 server). Per round, in rotating order, into a
# fresh repository each:
#   posix   pgark backup into a posix repository, then pgark restore --target immediate
#   s3      the same through the S3 repository, concurrency BENCH_S3REPO_CONCURRENCY (8)
# zstd level 3 both. Measured: wall time, client CPU (user and sys), peak RSS, bytes
# stored, and for S3 the requests s3rver answered (one line of its request log each:
# PUT, GET, HEAD, List and DELETE alike). s3rver (one Node process) is the bottleneck
# here: its CPU is reported, and the wall time is a floor for what a real store costs.
# The projection for 1 TB scales the requests and stored bytes per GB of database
# linearly (chunks are 1 MiB of each file), and gives the transfer time of the stored
# bytes over 100 MB/s and 1 GB/s links: what the link alone costs, not a prediction of
# the store's speed.
#
# Environment: PGARK and S3RVER_JS (required), WORK (removed at exit), RESULTS_DIR;
# BENCH_ROUNDS (3), BENCH_S3REPO_SCALE (100), BENCH_S3REPO_CONCURRENCY (8),
# BENCH_S3REPO_PORT (54397, the cluster 54398), BENCH_STEP_TIMEOUT (1800).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
: "${S3RVER_JS:?set S3RVER_JS to s3rver/bin/s3rver.js}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_S3REPO_SCALE:-100}
CONC=${BENCH_S3REPO_CONCURRENCY:-8}
S3PORT=${BENCH_S3REPO_PORT:-54397}
PORT=$((S3PORT + 1))
STEP=${BENCH_STEP_TIMEOUT:-1800}

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -f "$S3RVER_JS" ] || bench_die "no s3rver at \"$S3RVER_JS\" (make deps)"
command -v node >/dev/null || bench_die "no node to run s3rver"

S3DATA=""
# shellcheck disable=SC2016 # evaluated at exit
BENCH_AT_EXIT='[ -z "$S3DATA" ] || rm -rf "$S3DATA"'
bench_setup
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    S3DATA=$(mktemp -d /dev/shm/pgark-bench-s3repo-XXXXXX)
else
    S3DATA=$WORK/s3
    mkdir -p "$S3DATA"
fi

# Not --silent: its request log (one "NNN Nms" line per request) is what is counted.
S3LOG=$WORK/s3rver.log
s3rver_start "$S3DATA" "$S3PORT" "$S3LOG"
s3_requests() {
    grep -c ' [0-9][0-9][0-9] [0-9][0-9]*ms ' "$S3LOG" || true
}

bench_log "cluster on port $PORT, s3rver on $S3PORT (store in $S3DATA); pgbench scale $SCALE, $ROUNDS rounds; load $(load1)"
pg_init "$WORK/pg" "$PORT" "shared_buffers = 256MB" "autovacuum = off" "checkpoint_timeout = 30min" \
    "max_wal_size = 8GB"
pg_start
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
DB_BYTES=$(q "SELECT sum(pg_database_size(datname))::bigint FROM pg_database")
bench_log "databases: $((DB_BYTES / 1048576)) MiB"

write_config() { # file kind round
    {
        echo "spool: $WORK/spool"
        echo "repos:"
        case "$2" in
        posix) echo "  r: { type: posix, path: $WORK/posix-$3 }" ;;
        s3)
            curl -sf -X PUT "http://127.0.0.1:$S3PORT/bench-$3" >/dev/null ||
                bench_die "could not create bucket bench-$3"
            echo "  r: { type: s3, endpoint: \"http://127.0.0.1:$S3PORT\", allow_http: true, bucket: bench-$3,"
            echo "       access_key_id: S3RVER, secret_access_key: S3RVER, concurrency: $CONC }"
            ;;
        esac
        echo "compression: { algorithm: zstd, level: 3 }"
        echo "clusters:"
        echo "  bench:"
        echo "    conninfo: \"$(pg_conninfo tcp)\""
        echo "    repos: [r]"
    } >"$1"
}

stored_bytes() { # kind round
    case "$1" in
    posix) du_bytes "$WORK/posix-$2/bench/chunks" "$WORK/posix-$2/bench/backups" ;;
    s3) du_bytes "$S3DATA/bench-$2/bench/chunks" "$S3DATA/bench-$2/bench/backups" ;;
    esac
}

record() { # op kind round timefile requests stored
    tf=$4
    jq -cn --arg op "$1" --arg kind "$2" --argjson round "$3" \
        --argjson wall "$(timed_field "$tf" 1)" --argjson usr "$(timed_field "$tf" 2)" \
        --argjson sys "$(timed_field "$tf" 3)" --argjson rss "$(timed_field "$tf" 4)" \
        --argjson req "$5" --argjson stored "$6" --argjson srv "$7" --argjson load "$(load1)" \
        '{op: $op, kind: $kind, round: $round, wall_s: $wall, cpu_user_s: $usr, cpu_sys_s: $sys,
          cpu_s: ($usr + $sys), rss_kib: $rss, requests: $req, stored_bytes: $stored,
          s3rver_cpu_s: $srv, load1: $load}' >>"$raw"
    bench_log "  $2 $1: wall $(timed_field "$tf" 1) s, CPU $(timed_field "$tf" 2)+$(timed_field "$tf" 3) s, $5 requests, load $(load1)"
}

run_kind() { # kind round
    kind=$1 round=$2
    cfg=$WORK/$kind-$round.yaml
    write_config "$cfg" "$kind" "$round"
    bench_log "round $round: $kind"
    q "CHECKPOINT" >/dev/null
    sync
    r0=$(s3_requests) c0=$(proc_cpu_ticks "$S3RVER_PID")
    timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$cfg" backup --no-progress \
        >"$WORK/backup.log" 2>&1 || bench_die "$kind backup failed: $(tail -5 "$WORK/backup.log")"
    r1=$(s3_requests) c1=$(proc_cpu_ticks "$S3RVER_PID")
    req=null
    [ "$kind" = posix ] || req=$((r1 - r0))
    record backup "$kind" "$round" "$WORK/time" "$req" "$(stored_bytes "$kind" "$round")" "$(ticks_to_s $((c1 - c0)))"
    target=$WORK/restored-$kind-$round
    mkdir -m 0700 "$target"
    timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$cfg" restore --pgdata "$target" \
        --target immediate >"$WORK/restore.log" 2>&1 ||
        bench_die "$kind restore failed: $(tail -5 "$WORK/restore.log")"
    r2=$(s3_requests) c2=$(proc_cpu_ticks "$S3RVER_PID")
    [ "$kind" = posix ] || req=$((r2 - r1))
    record restore "$kind" "$round" "$WORK/time" "$req" null "$(ticks_to_s $((c2 - c1)))"
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    if [ $((round % 2)) -eq 1 ]; then
        run_kind posix "$round"
        run_kind s3 "$round"
    else
        run_kind s3 "$round"
        run_kind posix "$round"
    fi
    round=$((round + 1))
done

out=$RESULTS_DIR/s3repo-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" \
    --argjson conc "$CONC" --argjson db "$DB_BYTES" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" '
'"$JQ_STATS"'
    . as $runs |
    {benchmark: "s3repo", started_utc: $stamp, host: $host, cpus: $cpus, pgark: $pgark,
     settings: {rounds: $rounds, pgbench_scale: $scale, database_bytes: $db, s3_concurrency: $conc,
                store: "s3rver on loopback, store on tmpfs; posix repository on the local disk"},
     runs: $runs,
     medians: [ ["backup", "posix"], ["backup", "s3"], ["restore", "posix"], ["restore", "s3"] ] |
        map(. as $k | ($runs | map(select(.op == $k[0] and .kind == $k[1]))) as $r |
            {op: $k[0], kind: $k[1], wall_s: ($r | med(.wall_s)), cpu_user_s: ($r | med(.cpu_user_s)),
             cpu_sys_s: ($r | med(.cpu_sys_s)), rss_kib: ($r | med(.rss_kib)),
             requests: ($r | med(.requests)), stored_bytes: ($r | med(.stored_bytes)),
             s3rver_cpu_s: ($r | med(.s3rver_cpu_s))})} |
    (.medians | map({key: "\(.op)/\(.kind)", value: .}) | from_entries) as $m |
    ($db / 1e9) as $gb |
    .ratios = {backup_wall_s3_vs_posix: ratio($m["backup/s3"].wall_s; $m["backup/posix"].wall_s),
               restore_wall_s3_vs_posix: ratio($m["restore/s3"].wall_s; $m["restore/posix"].wall_s)} |
    .projection_1tb = {
        assumes: "requests and stored bytes grow linearly with the database (1 MiB chunks per file); link time is stored bytes over the link, nothing else",
        backup_requests: (($m["backup/s3"].requests // 0) / $gb * 1000 | round),
        restore_requests: (($m["restore/s3"].requests // 0) / $gb * 1000 | round),
        stored_bytes: (($m["backup/s3"].stored_bytes // 0) / $gb * 1000 | round),
        link_100MBps_s: (($m["backup/s3"].stored_bytes // 0) / $gb * 1000 / 1e8 | r3),
        link_1GBps_s: (($m["backup/s3"].stored_bytes // 0) / $gb * 1000 / 1e9 | r3),
        at_measured_rate_s: (($m["backup/s3"].wall_s // 0) / $gb * 1000 | r3)}
    ' "$raw" >"$out"

{
    echo
    echo "S3 repository benchmark: pgbench scale $SCALE ($((DB_BYTES / 1048576)) MiB), concurrency $CONC, medians of $ROUNDS rounds"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["op", "repository", "wall_s", "user_s", "sys_s", "RSS_MiB", "requests", "stored_MiB", "s3rver_CPU_s"] | @tsv),
        (.medians[] | [.op, .kind, (.wall_s | f(2)), (.cpu_user_s | f(2)), (.cpu_sys_s | f(2)),
            (.rss_kib / 1024 | f(1)), (.requests | f(0)),
            (if .stored_bytes == null then null else .stored_bytes / 1048576 end | f(1)),
            (.s3rver_cpu_s | f(2))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "projection for 1 TB:"
    print_ratios "$out" projection_1tb
    echo
    echo "results: $(basename "$out")"
} >&2
