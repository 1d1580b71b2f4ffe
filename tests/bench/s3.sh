#!/bin/sh
# s3.sh — S3 transfer benchmark: pgark's S3 driver against curl, on a local s3rver.
#
# BENCH_S3_MIB (1024) MiB moved as objects of BENCH_S3_OBJECT_KIB (1024) KiB to a local
# s3rver (its store on /dev/shm when there is one), per round in rotating order:
#   pgark cN        tests/tools/s3bench: storage_s3_put_many with N requests in flight,
#                   then N threads reading the objects back through one storage handle
#                   (SigV4, Content-MD5, SHA-256 of every body, ETag checked), for
#                   every N of BENCH_S3_CONCURRENCY ("1 4 16")
#   curl_objects cN one curl process, the same objects (unsigned: s3rver does not check
#                   signatures), sequential on one connection for N = 1, else
#                   --parallel --parallel-max N; every N of BENCH_S3_CURL_CONCURRENCY
#                   ("1 4 16")
#   curl_stream     one curl PUT of a single object of all the bytes, then one GET
# Each into a fresh bucket, removed afterwards. Measured per upload and download: wall
# time, client CPU (user+sys), client peak RSS, s3rver's CPU (node is the bottleneck
# here, so client CPU per GiB is the figure that repeats).
#
# Environment: S3BENCH (the s3bench tool) and S3RVER_JS (s3rver's bin/s3rver.js), both
# required; WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3), BENCH_S3_PORT (54396),
# BENCH_STEP_TIMEOUT (1800).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${WORK:?set WORK to a scratch directory}"
: "${S3BENCH:?set S3BENCH to the tests/tools/s3bench binary}"
: "${S3RVER_JS:?set S3RVER_JS to s3rver/bin/s3rver.js}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
MIB=${BENCH_S3_MIB:-1024}
OBJ_KIB=${BENCH_S3_OBJECT_KIB:-1024}
CONCS=${BENCH_S3_CONCURRENCY:-1 4 16}
CURL_CONCS=${BENCH_S3_CURL_CONCURRENCY:-1 4 16}
PORT=${BENCH_S3_PORT:-54396}
STEP=${BENCH_STEP_TIMEOUT:-1800}

[ -x "$S3BENCH" ] || bench_die "no s3bench at \"$S3BENCH\" (make tools)"
[ -f "$S3RVER_JS" ] || bench_die "no s3rver at \"$S3RVER_JS\" (make deps)"
command -v node >/dev/null || bench_die "no node to run s3rver"
command -v curl >/dev/null || bench_die "no curl"

OBJ_BYTES=$((OBJ_KIB * 1024))
COUNT=$((MIB * 1024 / OBJ_KIB))
TOTAL=$((COUNT * OBJ_BYTES))

S3DATA=""
# shellcheck disable=SC2016 # evaluated at exit
BENCH_AT_EXIT='[ -z "$S3DATA" ] || rm -rf "$S3DATA"'
bench_setup

# s3rver's store and the files curl sends, on tmpfs when there is one: the disk is
# shared with other jobs, and what is measured is the transfer, not the disk.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    S3DATA=$(mktemp -d /dev/shm/pgark-bench-s3-XXXXXX)
else
    S3DATA=$WORK/s3
    mkdir -p "$S3DATA"
fi
mkdir -p "$S3DATA/store" "$S3DATA/files"

bench_log "s3rver on 127.0.0.1:$PORT, store in $S3DATA; $COUNT objects of $OBJ_KIB KiB, $ROUNDS rounds; load $(load1)"
s3rver_start "$S3DATA/store" "$PORT" "$WORK/s3rver.log" --silent
ENDPOINT=http://127.0.0.1:$PORT

# What curl sends: one object's bytes, and all of them as one file.
head -c "$OBJ_BYTES" /dev/urandom >"$S3DATA/files/object"
i=0
while [ $i -lt "$COUNT" ]; do
    cat "$S3DATA/files/object"
    i=$((i + 1))
done >"$S3DATA/files/all"

bucket_n=0
new_bucket() {
    bucket_n=$((bucket_n + 1))
    BUCKET=pgark-bench-$bucket_n
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT "$ENDPOINT/$BUCKET") || code=000
    [ "$code" = 200 ] || bench_die "cannot create bucket \"$BUCKET\" (HTTP $code)"
}

drop_bucket() {
    rm -rf "${S3DATA:?}/store/$BUCKET"
}

# curl config files: every object of the bucket, up or down.
curl_config() { # put|get file
    awk -v n="$COUNT" -v ep="$ENDPOINT" -v b="$BUCKET" -v f="$S3DATA/files/object" -v op="$1" 'BEGIN {
        for (i = 0; i < n; i++) {
            if (op == "put") printf "upload-file = \"%s\"\n", f
            else print "output = \"/dev/null\""
            printf "url = \"%s/%s/o/%06d\"\n", ep, b, i
        }
    }' >"$2"
}

record() { # tool concurrency op wall user sys rss server-ticks
    jq -cn --arg tool "$1" --argjson conc "$2" --arg op "$3" --argjson wall "$4" --argjson usr "$5" \
        --argjson sys "$6" --argjson rss "$7" --argjson srv "$(ticks_to_s "$8")" \
        --argjson round "$round" --argjson bytes "$TOTAL" --argjson load "$(load1)" \
        '{tool: $tool, concurrency: $conc, op: $op, round: $round, bytes: $bytes, wall_s: $wall,
          cpu_user_s: $usr, cpu_sys_s: $sys, cpu_s: ($usr + $sys), rss_kib: $rss, s3rver_cpu_s: $srv,
          mib_per_s: ($bytes / 1048576 / $wall * 10 | round / 10),
          cpu_s_per_gib: (($usr + $sys) / ($bytes / 1073741824) * 1000 | round / 1000), load1: $load}' >>"$raw"
    bench_log "  $1 c$2 $3: $4 s ($(awk -v b="$TOTAL" -v w="$4" 'BEGIN { printf "%.1f", b / 1048576 / w }') MiB/s), CPU $5+$6 s, RSS $(($7 / 1024)) MiB, s3rver CPU $(ticks_to_s "$8") s"
}

run_pgark() { # concurrency
    new_bucket
    for op in put get; do
        c0=$(proc_cpu_ticks "$S3RVER_PID")
        timeout "$STEP" "$S3BENCH" "$op" "$ENDPOINT" "$BUCKET" o "$COUNT" "$OBJ_BYTES" "$1" \
            >"$WORK/s3bench.json" 2>"$WORK/s3bench.log" &
        bench_register_pid $!
        wait $! || bench_die "s3bench $op failed: $(tail -5 "$WORK/s3bench.log")"
        c1=$(proc_cpu_ticks "$S3RVER_PID")
        record pgark "$1" "$op" "$(jq .wall_s "$WORK/s3bench.json")" "$(jq .cpu_user_s "$WORK/s3bench.json")" \
            "$(jq .cpu_sys_s "$WORK/s3bench.json")" "$(jq .rss_kib "$WORK/s3bench.json")" $((c1 - c0))
    done
    drop_bucket
}

run_curl() { # objects|stream concurrency
    new_bucket
    for op in put get; do
        if [ "$1" = stream ]; then
            if [ $op = put ]; then
                set -- "$1" "$2" -T "$S3DATA/files/all" "$ENDPOINT/$BUCKET/all"
            else
                set -- "$1" "$2" -o /dev/null "$ENDPOINT/$BUCKET/all"
            fi
        else
            curl_config $op "$WORK/curl.conf"
            if [ "$2" -gt 1 ]; then
                set -- "$1" "$2" --parallel --parallel-max "$2" -K "$WORK/curl.conf"
            else
                set -- "$1" "$2" -K "$WORK/curl.conf"
            fi
        fi
        kind=$1 conc=$2
        shift 2
        c0=$(proc_cpu_ticks "$S3RVER_PID")
        # Expect: off, as pgark sends no "Expect: 100-continue" either
        timed "$WORK/time" timeout "$STEP" curl -sS --fail -H 'Expect:' "$@" >"$WORK/curl.log" 2>&1 ||
            bench_die "curl $op failed: $(tail -5 "$WORK/curl.log")"
        c1=$(proc_cpu_ticks "$S3RVER_PID")
        set -- "$kind" "$conc"
        record "curl_$kind" "$conc" "$op" "$(timed_field "$WORK/time" 1)" "$(timed_field "$WORK/time" 2)" \
            "$(timed_field "$WORK/time" 3)" "$(timed_field "$WORK/time" 4)" $((c1 - c0))
    done
    if [ "$1" = stream ]; then
        stored=$(du_bytes "$S3DATA/store/$BUCKET")
        [ "$stored" -ge "$TOTAL" ] || bench_die "curl stored only $stored bytes"
    fi
    drop_bucket
}

run_variant() { # name
    case "$1" in
    pgark:*) run_pgark "${1#pgark:}" ;;
    curl_objects:*) run_curl objects "${1#curl_objects:}" ;;
    curl_stream) run_curl stream 1 ;;
    esac
}

variants=""
for c in $CONCS; do variants="$variants pgark:$c"; done
for c in $CURL_CONCS; do variants="$variants curl_objects:$c"; done
variants="$variants curl_stream"
nvar=$(echo "$variants" | wc -w)

round=1
while [ "$round" -le "$ROUNDS" ]; do
    bench_log "round $round"
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
        run_variant "$v"
    done
    round=$((round + 1))
done

out=$RESULTS_DIR/s3-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson count "$COUNT" \
    --argjson obj "$OBJ_BYTES" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg curl "$(curl --version | head -1)" --arg node "$(node --version)" '
'"$JQ_STATS"'
    . as $runs |
    {benchmark: "s3", started_utc: $stamp, host: $host, cpus: $cpus, curl: $curl,
     s3rver: "s3rver 3.7.1 on node \($node)",
     settings: {rounds: $rounds, objects: $count, object_bytes: $obj},
     runs: $runs,
     load1: {min: ($runs | map(.load1) | min), median: ($runs | med(.load1)), max: ($runs | map(.load1) | max)},
     medians: [ ($runs | map([.tool, .concurrency, .op]) | unique)[] as $k |
        ($runs | map(select(.tool == $k[0] and .concurrency == $k[1] and .op == $k[2]))) as $r |
        {tool: $k[0], concurrency: $k[1], op: $k[2], wall_s: ($r | med(.wall_s)),
         mib_per_s: ($r | med(.mib_per_s)), cpu_s: ($r | med(.cpu_s)),
         cpu_s_per_gib: ($r | med(.cpu_s_per_gib)), rss_kib: ($r | med(.rss_kib)),
         s3rver_cpu_s: ($r | med(.s3rver_cpu_s))} ] } |
    .medians as $m |
    def pick(t; c; o): ($m | map(select(.tool == t and .concurrency == c and .op == o)) | .[0]);
    .ratios = [ $m[] | select(.tool == "pgark") | . as $p |
        pick("curl_objects"; $p.concurrency; $p.op) as $co | pick("curl_stream"; 1; $p.op) as $cs |
        {concurrency: $p.concurrency, op: $p.op,
         wall_vs_curl_objects: ratio($p.wall_s; $co.wall_s),
         cpu_vs_curl_objects: ratio($p.cpu_s; $co.cpu_s),
         wall_vs_curl_stream: ratio($p.wall_s; $cs.wall_s),
         cpu_vs_curl_stream: ratio($p.cpu_s; $cs.cpu_s)} ]
    ' "$raw" >"$out"

{
    echo
    echo "s3 benchmark: $COUNT objects of $OBJ_KIB KiB to a local s3rver, medians of $ROUNDS rounds, load $(jq -r '"\(.load1.min)..\(.load1.max)"' "$out")"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["tool", "conc", "op", "wall_s", "MiB/s", "CPU_s", "CPU_s/GiB", "RSS_MiB", "s3rver_CPU_s"] | @tsv),
        (.medians | sort_by(.op, .tool, .concurrency)[] | [.tool, .concurrency, .op, (.wall_s | f(2)), (.mib_per_s | f(1)),
            (.cpu_s | f(2)), (.cpu_s_per_gib | f(2)), (.rss_kib / 1024 | f(1)), (.s3rver_cpu_s | f(2))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "pgark / curl:"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        .ratios[] | "  c\(.concurrency) \(.op): wall \(.wall_vs_curl_objects | f(2))x curl objects, \(.wall_vs_curl_stream | f(2))x curl stream; CPU \(.cpu_vs_curl_objects | f(2))x curl objects, \(.cpu_vs_curl_stream | f(2))x curl stream"
    ' "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
