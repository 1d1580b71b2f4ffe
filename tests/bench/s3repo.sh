#!/bin/sh
# s3repo.sh — backup and restore through an S3 repository beside a posix one, with the
# S3 requests counted by kind, and a projection to 1 TB.
#
# One throwaway cluster (data checksums on), pgbench -i at BENCH_S3REPO_SCALE (100), an
# s3rver on loopback with its store on /dev/shm when there is one (what is measured is
# pgark's side, not the disk under the S3 server). Per round, in rotating order, into a
# fresh repository each, every kind of BENCH_S3REPO_KINDS ("posix s3"):
#   posix   pgark backup into a posix repository, then pgark restore --target immediate
#   s3      the same through s3rver, concurrency BENCH_S3REPO_CONCURRENCY (8)
#   swift   the same through OpenStack Swift's S3 API (tests/harness/swift-s3.py, over
#           HTTPS, verifying every signature, Content-MD5 and payload hash; store on disk
#           under WORK), started once when the kinds name it; needs python3-swift
# zstd level 3 everywhere. Measured: wall time, client CPU (user and sys), peak RSS,
# bytes stored, and the S3 requests by kind: pgark runs with --log-level debug, which
# logs one "http: METHOD URL -> STATUS" line per attempt (retries included), and each is
# counted as chunk_put, chunk_get, chunk_head, wal_*, backup_* (manifests and running
# markers), other_* (repo.json, configs, expire marker) or list (one per page of a
# listing); "retries" counts the attempts that were retried. For s3rver its own count of
# the requests it answered is kept beside (server_requests). s3rver (one Node process) is
# the bottleneck here: its CPU is reported, and the wall time is a floor for what a real
# store costs; CPU and request counts are what load does not distort.
# The projection for 1 TB scales the requests and stored bytes per GB of database
# linearly (one request per chunk of at most 1 MiB of a file, listings one request per
# 1000 keys), and gives the transfer time of the stored bytes over 100 MB/s and 1 GB/s
# links (what the link alone costs, not a prediction of the store's speed), the same for
# a database that does not compress (stored = database bytes), and the request rate
# the store must sustain for the link to be the limit.
#
# Environment: PGARK and S3RVER_JS (required), WORK (removed at exit), RESULTS_DIR;
# BENCH_ROUNDS (3), BENCH_S3REPO_SCALE (100), BENCH_S3REPO_CONCURRENCY (8),
# BENCH_S3REPO_KINDS ("posix s3"; add swift), BENCH_S3REPO_PORT (54397, the cluster
# 54398, Swift 54399), BENCH_STEP_TIMEOUT (1800), SWIFT_S3_PY (swift-s3.py: beside this
# script or in tests/harness).
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
KINDS=${BENCH_S3REPO_KINDS:-posix s3}
S3PORT=${BENCH_S3REPO_PORT:-54397}
PORT=$((S3PORT + 1))
SWPORT=$((S3PORT + 2))
STEP=${BENCH_STEP_TIMEOUT:-1800}

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -f "$S3RVER_JS" ] || bench_die "no s3rver at \"$S3RVER_JS\" (make deps)"
command -v node >/dev/null || bench_die "no node to run s3rver"
for k in $KINDS; do
    case "$k" in
    posix | s3 | swift) ;;
    *) bench_die "unknown kind \"$k\" in BENCH_S3REPO_KINDS (posix, s3, swift)" ;;
    esac
done
case " $KINDS " in
*" swift "*)
    if [ -z "${SWIFT_S3_PY:-}" ]; then
        for f in "$here/swift-s3.py" "$here/../harness/swift-s3.py"; do
            [ -f "$f" ] && SWIFT_S3_PY=$f && break
        done
    fi
    [ -f "${SWIFT_S3_PY:-}" ] || bench_die "no swift-s3.py (set SWIFT_S3_PY)"
    ;;
esac

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

# Not --silent: its request log (one "NNN Nms" line per request) is counted beside.
S3LOG=$WORK/s3rver.log
s3rver_start "$S3DATA" "$S3PORT" "$S3LOG"
s3_requests() {
    grep -c ' [0-9][0-9][0-9] [0-9][0-9]*ms ' "$S3LOG" || true
}

SWIFT_PID="" SWIFT_INFO=""
case " $KINDS " in
*" swift "*)
    buckets=""
    r=1
    while [ "$r" -le "$ROUNDS" ]; do
        buckets="$buckets --bucket bench-$r"
        r=$((r + 1))
    done
    SWIFT_INFO=$WORK/swift.json
    # shellcheck disable=SC2086 # one word per option
    /usr/bin/python3 "$SWIFT_S3_PY" "$WORK/swift" --port "$SWPORT" $buckets \
        >"$SWIFT_INFO" 2>"$WORK/swift.log" &
    SWIFT_PID=$!
    bench_register_pid "$SWIFT_PID"
    i=0
    until grep -q endpoint "$SWIFT_INFO" 2>/dev/null; do
        kill -0 "$SWIFT_PID" 2>/dev/null || bench_die "swift exited: $(tail -5 "$WORK/swift.log")"
        [ $i -lt 900 ] || bench_die "swift did not start in 180 s"
        sleep 0.2
        i=$((i + 1))
    done
    SWIFT_PID=$(jq -r .pid "$SWIFT_INFO")
    ;;
esac

bench_log "cluster on port $PORT, s3rver on $S3PORT (store in $S3DATA); kinds: $KINDS; pgbench scale $SCALE, $ROUNDS rounds; load $(load1)"
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
        swift)
            jq -r --arg b "bench-$3" --argjson c "$CONC" '"  r: { type: s3, endpoint: \"\(.endpoint)\", ca_file: \"\(.ca_file)\", region: \(.region),",
                "       bucket: \($b), access_key_id: \"\(.access_key)\", secret_access_key: \"\(.secret_key)\", concurrency: \($c) }"' "$SWIFT_INFO"
            ;;
        esac
        echo "compression: { algorithm: zstd, level: 3 }"
        echo "clusters:"
        echo "  bench:"
        echo "    conninfo: \"$(pg_conninfo tcp)\""
        echo "    repos: [r]"
    } >"$1"
    chmod 600 "$1"
}

stored_bytes() { # kind round
    case "$1" in
    posix) du_bytes "$WORK/posix-$2/bench/chunks" "$WORK/posix-$2/bench/backups" ;;
    s3) du_bytes "$S3DATA/bench-$2/bench/chunks" "$S3DATA/bench-$2/bench/backups" ;;
    swift) echo null ;; # Swift's object files hold metadata too: s3rver's figure is the one
    esac
}

# The requests of one pgark run, by kind, from its debug log: a JSON object.
request_kinds() { # log
    awk '
        $4 == "http:" {
            m = tolower($5); url = $6
            if (url ~ /[?&]list-type=2/) k = "list"
            else if (url ~ /\/chunks\//) k = "chunk_" m
            else if (url ~ /\/wal\//) k = "wal_" m
            else if (url ~ /\/backups\//) k = "backup_" m
            else k = "other_" m
            n[k]++
        }
        / retrying s3 / { n["retries"]++ }
        END { for (k in n) print k, n[k] }' "$1" |
        jq -Rn '[inputs | split(" ") | {(.[0]): (.[1] | tonumber)}] | add // {}'
}

server_cpu_of() { # kind
    case "$1" in
    s3) proc_cpu_ticks "$S3RVER_PID" ;;
    swift) proc_cpu_ticks "$SWIFT_PID" ;;
    *) echo 0 ;;
    esac
}

record() { # op kind round timefile log stored server_cpu_s server_requests
    tf=$4
    kinds=null
    [ "$2" = posix ] || kinds=$(request_kinds "$5")
    jq -cn --arg op "$1" --arg kind "$2" --argjson round "$3" \
        --argjson wall "$(timed_field "$tf" 1)" --argjson usr "$(timed_field "$tf" 2)" \
        --argjson sys "$(timed_field "$tf" 3)" --argjson rss "$(timed_field "$tf" 4)" \
        --argjson kinds "$kinds" --argjson stored "$6" --argjson srv "$7" \
        --argjson sreq "$8" --argjson load "$(load1)" \
        '{op: $op, kind: $kind, round: $round, wall_s: $wall, cpu_user_s: $usr, cpu_sys_s: $sys,
          cpu_s: ($usr + $sys), rss_kib: $rss,
          requests: (if $kinds == null then null else ($kinds | del(.retries) | add // 0) end),
          requests_by_kind: $kinds, server_requests: $sreq, stored_bytes: $stored,
          server_cpu_s: $srv, load1: $load}' >>"$raw"
    bench_log "  $2 $1: wall $(timed_field "$tf" 1) s, CPU $(timed_field "$tf" 2)+$(timed_field "$tf" 3) s, requests $(echo "$kinds" | jq -c .), load $(load1)"
}

run_kind() { # kind round
    kind=$1 round=$2
    cfg=$WORK/$kind-$round.yaml
    write_config "$cfg" "$kind" "$round"
    bench_log "round $round: $kind"
    q "CHECKPOINT" >/dev/null
    sync
    blog=$WORK/$kind-$round-backup.log rlog=$WORK/$kind-$round-restore.log
    r0=$(s3_requests) c0=$(server_cpu_of "$kind")
    timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$cfg" --log-level debug backup \
        --no-progress >"$blog" 2>&1 || bench_die "$kind backup failed: $(tail -5 "$blog")"
    r1=$(s3_requests) c1=$(server_cpu_of "$kind")
    sreq=null
    [ "$kind" != s3 ] || sreq=$((r1 - r0))
    record backup "$kind" "$round" "$WORK/time" "$blog" "$(stored_bytes "$kind" "$round")" \
        "$(ticks_to_s $((c1 - c0)))" "$sreq"
    target=$WORK/restored-$kind-$round
    mkdir -m 0700 "$target"
    timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$cfg" --log-level debug restore \
        --pgdata "$target" --target immediate >"$rlog" 2>&1 ||
        bench_die "$kind restore failed: $(tail -5 "$rlog")"
    r2=$(s3_requests) c2=$(server_cpu_of "$kind")
    [ "$kind" != s3 ] || sreq=$((r2 - r1))
    record restore "$kind" "$round" "$WORK/time" "$rlog" null "$(ticks_to_s $((c2 - c1)))" "$sreq"
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    # the kinds in rotating order: round 2 starts with the second, and so on
    order=$(echo "$KINDS" | awk -v r="$round" '{ s = (r - 1) % NF; for (i = 0; i < NF; i++) printf "%s ", $((s + i) % NF + 1) }')
    for k in $order; do
        run_kind "$k" "$round"
    done
    round=$((round + 1))
done

out=$RESULTS_DIR/s3repo-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" \
    --argjson conc "$CONC" --argjson db "$DB_BYTES" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg kinds "$KINDS" --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" '
'"$JQ_STATS"'
    def kmed: (map(.requests_by_kind // {} | keys) | add // [] | unique) as $ks | . as $r |
        if ($r | map(.requests_by_kind) | map(select(. != null)) | length) == 0 then null
        else reduce $ks[] as $k ({}; .[$k] = ($r | med(.requests_by_kind[$k] // 0))) end;
    . as $runs |
    ($kinds | split(" ") | map(select(. != ""))) as $ks |
    {benchmark: "s3repo", started_utc: $stamp, host: $host, cpus: $cpus, pgark: $pgark,
     settings: {rounds: $rounds, pgbench_scale: $scale, database_bytes: $db, s3_concurrency: $conc,
                kinds: $ks,
                store: "s3: s3rver on loopback, store on tmpfs; swift: OpenStack Swift s3api over HTTPS on loopback, store on the local disk; posix repository on the local disk"},
     runs: $runs,
     medians: [ ["backup", "restore"][] as $op | $ks[] | [$op, .] ] |
        map(. as $k | ($runs | map(select(.op == $k[0] and .kind == $k[1]))) as $r |
            {op: $k[0], kind: $k[1], wall_s: ($r | med(.wall_s)), cpu_user_s: ($r | med(.cpu_user_s)),
             cpu_sys_s: ($r | med(.cpu_sys_s)), rss_kib: ($r | med(.rss_kib)),
             requests: ($r | med(.requests)), requests_by_kind: ($r | kmed),
             server_requests: ($r | med(.server_requests)), stored_bytes: ($r | med(.stored_bytes)),
             server_cpu_s: ($r | med(.server_cpu_s))})} |
    (.medians | map({key: "\(.op)/\(.kind)", value: .}) | from_entries) as $m |
    ($db / 1e9) as $gb |
    (($m["backup/s3"].stored_bytes // 0) / $gb * 1000) as $stored_tb |
    .ratios = ([ $ks[] | select(. != "posix") as $k |
                ({key: "backup_wall_\($k)_vs_posix", value: ratio($m["backup/\($k)"].wall_s; $m["backup/posix"].wall_s)},
                 {key: "restore_wall_\($k)_vs_posix", value: ratio($m["restore/\($k)"].wall_s; $m["restore/posix"].wall_s)},
                 {key: "backup_cpu_\($k)_vs_posix", value: ratio(($m["backup/\($k)"] | .cpu_user_s + .cpu_sys_s); ($m["backup/posix"] | .cpu_user_s + .cpu_sys_s))},
                 {key: "restore_cpu_\($k)_vs_posix", value: ratio(($m["restore/\($k)"] | .cpu_user_s + .cpu_sys_s); ($m["restore/posix"] | .cpu_user_s + .cpu_sys_s))}) ] | from_entries) |
    .projection_1tb = {
        assumes: "requests grow linearly with the database (one request per chunk of at most 1 MiB of a file, a listing one request per 1000 keys of the repository), as do stored bytes (at this database'\''s compression ratio); link time is the stored bytes over the link, nothing else; a first full backup into an empty repository, restored from it",
        database_bytes_measured: $db,
        stored_to_database: (if $db > 0 then ($stored_tb / 1e12 | r3) else null end),
        backup_requests: (($m["backup/s3"].requests // 0) / $gb * 1000 | round),
        backup_chunk_puts: (($m["backup/s3"].requests_by_kind.chunk_put // 0) / $gb * 1000 | round),
        restore_requests: (($m["restore/s3"].requests // 0) / $gb * 1000 | round),
        restore_chunk_gets: (($m["restore/s3"].requests_by_kind.chunk_get // 0) / $gb * 1000 | round),
        stored_bytes: ($stored_tb | round),
        link_100MBps_s: ($stored_tb / 1e8 | r3),
        link_1GBps_s: ($stored_tb / 1e9 | r3),
        uncompressed_link_100MBps_s: (1e12 / 1e8 | r3),
        uncompressed_link_1GBps_s: (1e12 / 1e9 | r3),
        backup_requests_per_s_for_1GBps: (if $stored_tb > 0 then (($m["backup/s3"].requests // 0) / $gb * 1000 / ($stored_tb / 1e9) | round) else null end),
        backup_requests_per_s_for_1GBps_uncompressed: (($m["backup/s3"].requests // 0) / $gb * 1000 / 1000 | round),
        backup_at_measured_rate_s: (($m["backup/s3"].wall_s // 0) / $gb * 1000 | r3),
        restore_at_measured_rate_s: (($m["restore/s3"].wall_s // 0) / $gb * 1000 | r3)}
    ' "$raw" >"$out"

{
    echo
    echo "S3 repository benchmark: pgbench scale $SCALE ($((DB_BYTES / 1048576)) MiB), concurrency $CONC, medians of $ROUNDS rounds"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["op", "repository", "wall_s", "user_s", "sys_s", "RSS_MiB", "requests", "stored_MiB", "server_CPU_s"] | @tsv),
        (.medians[] | [.op, .kind, (.wall_s | f(2)), (.cpu_user_s | f(2)), (.cpu_sys_s | f(2)),
            (.rss_kib / 1024 | f(1)), (.requests | f(0)),
            (if .stored_bytes == null then null else .stored_bytes / 1048576 end | f(1)),
            (.server_cpu_s | f(2))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "requests by kind (medians):"
    jq -r '.medians[] | select(.requests_by_kind != null) |
        "  \(.op) \(.kind): \(.requests_by_kind | to_entries | map("\(.key) \(.value)") | join(", "))"' "$out"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "projection for 1 TB:"
    print_ratios "$out" projection_1tb
    echo
    echo "results: $(basename "$out")"
} >&2
