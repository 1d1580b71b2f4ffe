#!/bin/sh
# restore.sh — restore benchmark: pgark restore against pgBackRest restore, and WAL
# replay through pgark wal-fetch against replay of the same WAL already in pg_wal.
#
# One throwaway cluster (data checksums on; archive_command pushes every segment to
# pgBackRest and to pgark wal-push), pgbench -i at BENCH_RESTORE_SCALE, one pgark backup
# and one pgBackRest full backup of it. Then:
#   restore  per round, in rotating order, into an empty directory, both fsyncing:
#              pgark       pgark restore --target immediate (no start)
#              pgbackrest  pgbackrest restore --type=immediate, process-max 2
#              untar       tar -x of pg_basebackup's -Ft client-zstd:3 output (taken once,
#                          over TCP), then sync -f: the floor of a plain tar restore
#              pgark_base  (not by default) pgark restore with the binary BENCH_PGARK_OLD
#                          (an older build, from the same repository): old against new
#                          in the same run
#            measured: wall time, client CPU (user and sys), peak RSS, bytes laid down.
#            Each run's tree stays until the end (BENCH_RESTORE_KEEP=0: removed after
#            each run instead; see run_restore for what each choice costs here).
#   replay   pgbench until BENCH_RESTORE_WAL_MIB of WAL is archived, the cluster stopped;
#            per round, in rotating order, the backup restored (untimed) and the server
#            started on it (recovery to the end of the archive, then promotion):
#              walfetch        pgark restore --target latest: restore_command is pgark
#                              wal-fetch (with its read-ahead)
#              local           the same, but every segment is in pg_wal beforehand
#                              (restore_command = 'false')
#              pgbackrest_async  pgBackRest's restore, restore_command archive-get with
#                              archive-async (process-max 2)
#              mv              (not by default) the floor of any restore_command: each
#                              segment, already written out on the same file system, is
#                              handed over by `mv` (the server still fsyncs and renames it)
#              walfetch_old    (not by default; needs BENCH_PGARK_OLD) the walfetch
#                              variant with that binary's wal-fetch as restore_command:
#                              old against new read-ahead in the same run
#            measured: wall time from pg_ctl start to pg_is_in_recovery() false (polled
#            every 0.2 s), the server's own "redo done ... elapsed" figure, and the CPU
#            of the cluster's processes with their waited-for children (the startup
#            process and the restore_command it runs; NOT the detached read-ahead
#            processes of pgark and pgBackRest async, which no one waits for).
# Targets: restore wall at most 0.7x pgBackRest's and 0.6x untar's; replay through
# wal-fetch at most 1.05x the local replay (issue 25 item 5).
#
# Environment: PGARK (required), WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3),
# BENCH_RESTORE_SCALE (100), BENCH_RESTORE_WAL_MIB (1024), BENCH_RESTORE_PORT (54394),
# BENCH_RESTORE_VARIANTS ("walfetch local pgbackrest_async"; also "mv" and "walfetch_old";
# empty: no replay phase),
# BENCH_RESTORE_TOOLS ("pgark pgbackrest untar"; empty: no restore phase), BENCH_STEP_TIMEOUT (1800),
# BENCH_RESTORE_KEEP (1), BENCH_PGARK_OLD (the binary of pgark_base and walfetch_old),
# BENCH_PERF=1: one more pgark restore under perf record -g (restore-<stamp>-perf.txt).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_RESTORE_SCALE:-100}
WAL_MIB=${BENCH_RESTORE_WAL_MIB:-1024}
PORT=${BENCH_RESTORE_PORT:-54394}
REPLAY_VARIANTS=${BENCH_RESTORE_VARIANTS-walfetch local pgbackrest_async}
RESTORE_TOOLS=${BENCH_RESTORE_TOOLS-pgark pgbackrest untar}
KEEP=${BENCH_RESTORE_KEEP:-1}
STEP=${BENCH_STEP_TIMEOUT:-1800}
PERF=${BENCH_PERF:-0}
PGBACKREST=${PGBACKREST:-/usr/bin/pgbackrest}
BASE=${BENCH_PGARK_OLD:-}
STANZA=bench

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -x "$PGBACKREST" ] || bench_die "no pgbackrest at \"$PGBACKREST\""
case " $RESTORE_TOOLS " in
*" pgark_base "*) [ -x "$BASE" ] || bench_die "pgark_base needs BENCH_PGARK_OLD, a pgark binary" ;;
esac
for v in $REPLAY_VARIANTS; do
    case "$v" in
    walfetch | local | pgbackrest_async | mv) ;;
    walfetch_old) [ -x "$BASE" ] || bench_die "walfetch_old needs BENCH_PGARK_OLD, a pgark binary" ;;
    *) bench_die "unknown replay variant \"$v\" (walfetch, local, pgbackrest_async, mv, walfetch_old)" ;;
    esac
done

cleanup() {
    status=$?
    trap - EXIT INT TERM
    bench_cleanup
    # read-ahead workers of wal-fetch and archive-get async that may still run
    for d in "$WORK"/target "$WORK"/restored-*; do
        [ -d "$d" ] || continue
        "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        rm_tree "$d" || true
    done
    rm -rf "$WORK" 2>/dev/null || { sleep 2 && rm -rf "$WORK"; } || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw=$WORK/runs.jsonl
: >"$raw"
PGBR_CONF=$WORK/pgbackrest.conf
PGARK_CONF=$WORK/pgark.yaml
TARGET=$WORK/target

bench_log "cluster on port $PORT in $WORK; pgbench scale $SCALE, $WAL_MIB MiB of WAL to replay, $ROUNDS rounds; load $(load1)"
pg_init "$WORK/pg" "$PORT" \
    "shared_buffers = 256MB" \
    "max_wal_size = 4GB" \
    "checkpoint_timeout = 30min" \
    "autovacuum = off" \
    "archive_mode = on" \
    "archive_command = '$PGBACKREST --config=$PGBR_CONF --stanza=$STANZA archive-push %p && $PGARK --config $PGARK_CONF wal-push %p'"
SRC_DATA=$PGDATA_BENCH
pgbr_write_config "$PGBR_CONF" "$WORK/pgbr" "$STANZA"
cat >"$PGARK_CONF" <<EOF
spool: $WORK/spool
repos:
  r1:
    type: posix
    path: $WORK/pgark-repo
compression:
  algorithm: zstd
  level: 3
clusters:
  $STANZA:
    conninfo: "$(pg_conninfo tcp)"
    repos: [r1]
EOF
pg_start
"$PGBACKREST" --config="$PGBR_CONF" --stanza="$STANZA" stanza-create >"$WORK/stanza.log" 2>&1 ||
    bench_die "pgbackrest stanza-create failed: $(tail -5 "$WORK/stanza.log")"

t0=$(date +%s)
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
bench_log "pgbench -i -s $SCALE took $(($(date +%s) - t0)) s; database $(q "SELECT pg_size_pretty(pg_database_size('postgres'))")"

# Every segment so far archived by both tools, so that none is pushed during a run.
wait_archived() {
    q "CHECKPOINT" >/dev/null
    seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q "SELECT pg_switch_wal()" >/dev/null
    wait_until "$STEP" "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver" ||
        bench_die "segment $seg was not archived in time: $(tail -3 "$WORK/postgres.log")"
}
wait_archived

bench_log "pgark backup and pgbackrest full backup of it"
timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$PGARK_CONF" backup --no-progress \
    >"$WORK/pgark-backup.log" 2>&1 || bench_die "pgark backup failed: $(tail -5 "$WORK/pgark-backup.log")"
bench_log "  pgark backup: $(cat "$WORK/time")"
timed "$WORK/time" timeout "$STEP" "$PGBACKREST" --config="$PGBR_CONF" --stanza="$STANZA" --type=full \
    backup >"$WORK/pgbr-backup.log" 2>&1 || bench_die "pgbackrest backup failed: $(tail -5 "$WORK/pgbr-backup.log")"
bench_log "  pgbackrest backup: $(cat "$WORK/time")"
case " $RESTORE_TOOLS " in
*" untar "*)
    timeout "$STEP" "$PGBIN/pg_basebackup" -D "$WORK/basebackup" -Ft -X none -c fast \
        --compress=client-zstd:3 -h 127.0.0.1 -p "$PORT" -U postgres >"$WORK/pg_basebackup.log" 2>&1 ||
        bench_die "pg_basebackup failed: $(tail -5 "$WORK/pg_basebackup.log")"
    bench_log "  pg_basebackup for untar: $(du_bytes "$WORK/basebackup") bytes"
    ;;
esac
wait_archived

json_num() {
    if [ -n "$1" ]; then echo "$1"; else echo null; fi
}

# rm_tree DIR: DIR may hold a read-ahead cache (pg_wal/.pgark-prefetch) that pgark's
# detached read-ahead process still writes into: wait for its lock, then retry.
rm_tree() {
    [ -e "$1" ] || return 0
    for lock in "$1"/.pgark-prefetch/.lock "$1"/pg_wal/.pgark-prefetch/.lock; do
        [ ! -f "$lock" ] || flock -w 60 "$lock" true 2>/dev/null || true
    done
    i=0
    until rm -rf "$1" 2>/dev/null; do
        [ $i -lt 50 ] || bench_die "cannot remove \"$1\""
        sleep 0.2
        i=$((i + 1))
    done
}

fresh_target() {
    rm_tree "$TARGET"
    mkdir -m 0700 "$TARGET"
    sync
}

restore_pgark() { # target-args... (into $TARGET, untimed unless wrapped)
    "$PGARK" --config "$PGARK_CONF" restore --pgdata "$TARGET" "$@"
}

pgbr_restore_args() { # extra args for pgbackrest restore into $TARGET
    echo "--config=$PGBR_CONF --stanza=$STANZA --pg1-path=$TARGET"
}

# --- restore ------------------------------------------------------------------------------

run_restore() { # tool round
    tool=$1 round=$2
    bench_log "round $round: restore with $tool"
    saved_target=$TARGET
    [ "$KEEP" = 0 ] || TARGET=$WORK/restored-$tool-$round
    fresh_target
    case "$tool" in
    pgark | pgark_base)
        bin=$PGARK
        [ "$tool" = pgark ] || bin=$BASE
        timed "$WORK/time" timeout "$STEP" "$bin" --config "$PGARK_CONF" restore \
            --pgdata "$TARGET" --target immediate >"$WORK/restore.log" 2>&1
        ;;
    pgbackrest)
        # shellcheck disable=SC2046 # whole words
        timed "$WORK/time" timeout "$STEP" "$PGBACKREST" $(pgbr_restore_args) --type=immediate \
            restore >"$WORK/restore.log" 2>&1
        ;;
    untar)
        timed "$WORK/time" timeout "$STEP" sh -c 'tar --zstd -xf "$1/base.tar.zst" -C "$2" && sync -f "$2"' \
            untar "$WORK/basebackup" "$TARGET" >"$WORK/restore.log" 2>&1
        ;;
    esac || bench_die "$tool restore failed: $(tail -5 "$WORK/restore.log")"
    tf=$WORK/time
    wall=$(timed_field "$tf" 1) usr=$(timed_field "$tf" 2) sys=$(timed_field "$tf" 3) rss=$(timed_field "$tf" 4)
    bytes=$(du_bytes "$TARGET")
    walb=$(du_bytes "$TARGET/pg_wal")
    jq -cn --arg tool "$tool" --argjson round "$round" --argjson wall "$wall" --argjson usr "$usr" \
        --argjson sys "$sys" --argjson rss "$rss" --argjson bytes "$bytes" --argjson walb "$walb" --argjson load "$(load1)" \
        '{phase: "restore", tool: $tool, round: $round, wall_s: $wall, cpu_user_s: $usr,
          cpu_sys_s: $sys, cpu_s: ($usr + $sys), rss_kib: $rss, restored_bytes: $bytes,
          pg_wal_bytes: $walb, load1: $load}' >>"$raw"
    bench_log "  $tool: wall $wall s, CPU $usr+$sys s, RSS $((rss / 1024)) MiB, $((bytes / 1048576)) MiB laid down, load $(load1)"
    # Kept by default: on ext4 without a journal, files created within a minute of
    # deleting many cost an inode-table scan each (recently_deleted()), so deleting
    # between runs taxes whichever runs next. On 2026-12-02 keeping them made both tools
    # slower instead (more system time, pgark 2.7 -> 5.0 s: dirty pages of earlier runs
    # still being written back); BENCH_RESTORE_KEEP=0 measures that way.
    [ "$KEEP" != 0 ] || rm_tree "$TARGET"
    TARGET=$saved_target
}

rotate_run() { # function variants...: one round of them, rotated by $round
    fn=$1
    shift
    n=$#
    shift_by=$(((round - 1) % n))
    i=0
    while [ $i -lt "$shift_by" ]; do
        first=$1
        shift
        set -- "$@" "$first"
        i=$((i + 1))
    done
    for v in "$@"; do
        "$fn" "$v" "$round"
    done
}

round=1
while [ -n "$RESTORE_TOOLS" ] && [ "$round" -le "$ROUNDS" ]; do
    # shellcheck disable=SC2086 # word splitting of the list is intended
    rotate_run run_restore $RESTORE_TOOLS
    round=$((round + 1))
done

if [ "$PERF" = 1 ]; then
    bench_log "profiling: pgark restore under perf record"
    fresh_target
    perf record -g -F 499 -o "$WORK/perf.data" -- "$PGARK" --config "$PGARK_CONF" restore \
        --pgdata "$TARGET" --target immediate >"$WORK/perf.log" 2>&1 &
    bench_register_pid $!
    wait $! || bench_log "perf record of pgark restore failed: $(tail -3 "$WORK/perf.log")"
    {
        for keys in dso dso,sym; do
            echo "== self time by $keys"
            perf report -i "$WORK/perf.data" --stdio --no-children -g none \
                --sort "$keys" --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' |
                    grep -v '\[\.\] 0x' # libraries without symbols: their time shows by dso
        done
    } >"$RESULTS_DIR/restore-$stamp-perf.txt" || bench_log "perf report failed"
    rm_tree "$TARGET"
fi

wal_bytes=0
if [ -n "$REPLAY_VARIANTS" ]; then
    # --- WAL to replay ------------------------------------------------------------------------

    bench_log "pgbench until $WAL_MIB MiB of WAL"
    lsn0=$(q "SELECT pg_current_wal_lsn()")
    # synchronous_commit off: the WAL, not commit latency on a shared disk, is what is wanted
    PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 4 -j 2 -T "$STEP" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
        >"$WORK/pgbench.log" 2>&1 &
    pgbench_pid=$!
    bench_register_pid "$pgbench_pid"
    deadline=$(($(date +%s) + STEP))
    while [ "$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') >= $WAL_MIB * 1048576.0")" != t ]; do
        [ "$(date +%s)" -lt "$deadline" ] || bench_die "not $WAL_MIB MiB of WAL within $STEP s"
        kill -0 "$pgbench_pid" 2>/dev/null || bench_die "pgbench exited: $(tail -5 "$WORK/pgbench.log")"
        sleep 1
    done
    # TERM: a background job of a non-interactive shell ignores SIGINT
    kill -TERM "$pgbench_pid" 2>/dev/null || true
    wait "$pgbench_pid" 2>/dev/null || true
    wal_bytes=$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")
    bench_log "  $((wal_bytes / 1048576)) MiB of WAL; waiting for the archive"
    wait_archived
    last_seg=$(q "SELECT last_archived_wal FROM pg_stat_archiver")
    pg_stop
    bench_log "  archived up to $last_seg; source cluster stopped"

    # The plain segments for the local variant, fetched once (untimed) from pgark's archive.
    WALCACHE=$WORK/walcache
    mkdir -p "$WALCACHE"
    fresh_target
    restore_pgark --target immediate >"$WORK/restore.log" 2>&1 || bench_die "pgark restore failed: $(tail -5 "$WORK/restore.log")"
    first_seg=$(sed -n 's/^START WAL LOCATION: .*(file \([0-9A-F]*\)).*/\1/p' "$TARGET/backup_label")
    [ -n "$first_seg" ] || bench_die "no start segment in backup_label"
    seg=$first_seg
    n=0
    while "$PGARK" --config "$PGARK_CONF" wal-fetch "$seg" "$WALCACHE/$seg" >"$WORK/walfetch.log" 2>&1; do
        n=$((n + 1))
        [ "$seg" != "$last_seg" ] || break
        # next segment name: timeline, then (log, seg) with 256 segments of 16 MiB per log
        hi=$((0x$(echo "$seg" | cut -c9-16)))
        lo=$((0x$(echo "$seg" | cut -c17-24) + 1))
        if [ "$lo" -eq 256 ]; then
            lo=0
            hi=$((hi + 1))
        fi
        seg=$(printf '%s%08X%08X' "$(echo "$seg" | cut -c1-8)" "$hi" "$lo")
    done
    [ "$seg" = "$last_seg" ] || bench_die "pgark wal-fetch stopped at $seg, not $last_seg: $(tail -3 "$WORK/walfetch.log")"
    rm_tree "$WALCACHE/.pgark-prefetch"
    bench_log "  $n segments $first_seg..$last_seg in $WALCACHE"
    rm_tree "$TARGET"

    # --- replay -------------------------------------------------------------------------------

    RPORT=$((PORT + 1))
    run_replay() { # variant round
        variant=$1 round=$2
        bench_log "round $round: replay, $variant"
        fresh_target
        case "$variant" in
        walfetch | local | mv | walfetch_old)
            restore_pgark --target latest >"$WORK/restore.log" 2>&1 ||
                bench_die "pgark restore failed: $(tail -5 "$WORK/restore.log")"
            if [ "$variant" = walfetch_old ]; then
                # the last restore_command in the file wins
                echo "restore_command = '\"$BASE\" --config \"$PGARK_CONF\" --cluster $STANZA wal-fetch \"%f\" \"%p\"'" \
                    >>"$TARGET/postgresql.auto.conf"
            elif [ "$variant" = local ]; then
                echo "restore_command = 'false'" >>"$TARGET/postgresql.auto.conf"
                cp "$WALCACHE"/0* "$TARGET/pg_wal/"
            elif [ "$variant" = mv ]; then
                rm -rf "$WORK/walmv"
                mkdir "$WORK/walmv"
                cp "$WALCACHE"/0* "$WORK/walmv/"
                echo "restore_command = 'mv \"$WORK/walmv/%f\" \"%p\"'" >>"$TARGET/postgresql.auto.conf"
            fi
            ;;
        pgbackrest_async)
            rc="$PGBACKREST --config=$PGBR_CONF --stanza=$STANZA --pg1-path=$TARGET --archive-async archive-get %f \"%p\""
            # shellcheck disable=SC2046 # whole words
            "$PGBACKREST" $(pgbr_restore_args) --recovery-option="restore_command=$rc" restore \
                >"$WORK/restore.log" 2>&1 || bench_die "pgbackrest restore failed: $(tail -5 "$WORK/restore.log")"
            ;;
        esac
        {
            echo "port = $RPORT"
            echo "archive_mode = off"
        } >>"$TARGET/postgresql.conf"
        sync
        PGDATA_BENCH=$TARGET
        PGPORT_BENCH=$RPORT
        log=$WORK/replay.log
        rm -f "$log"
        t0=$(date +%s.%N)
        "$PGBIN/pg_ctl" -D "$TARGET" -l "$log" -W start >/dev/null || bench_die "pg_ctl start failed"
        wait_until "$STEP" "SELECT NOT pg_is_in_recovery()" ||
            bench_die "$variant: recovery did not end within $STEP s: $(tail -5 "$log")"
        t1=$(date +%s.%N)
        cpu=$(ticks_to_s "$(server_cpu_ticks)")
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        redo=$(sed -n 's/.*redo done at .*elapsed: \([0-9.]*\) s.*/\1/p' "$log" | tail -1)
        start_lsn=$(sed -n 's/.*redo starts at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$log" | tail -1)
        done_lsn=$(sed -n 's/.*redo done at \([0-9A-F]*\/[0-9A-F]*\).*/\1/p' "$log" | tail -1)
        replayed=""
        if [ -n "$start_lsn" ] && [ -n "$done_lsn" ]; then
            replayed=$(q "SELECT pg_wal_lsn_diff('$done_lsn', '$start_lsn')::bigint")
        fi
        "$PGBIN/pg_ctl" -D "$TARGET" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
        PGDATA_BENCH=""
        jq -cn --arg tool "$variant" --argjson round "$round" --argjson wall "$wall" \
            --argjson redo "$(json_num "$redo")" --argjson cpu "$cpu" \
            --argjson replayed "$(json_num "$replayed")" --argjson load "$(load1)" \
            '{phase: "replay", tool: $tool, round: $round, wall_s: $wall, redo_elapsed_s: $redo,
              server_cpu_s: $cpu, replayed_bytes: $replayed, load1: $load}' >>"$raw"
        bench_log "  $variant: wall $wall s (redo ${redo:-?} s), server CPU $cpu s, $((${replayed:-0} / 1048576)) MiB replayed, load $(load1)"
        cp "$log" "$WORK/replay-$variant.log"
        rm_tree "$TARGET"
    }

    round=1
    while [ "$round" -le "$ROUNDS" ]; do
        # shellcheck disable=SC2086 # word splitting of the list is intended
        rotate_run run_replay $REPLAY_VARIANTS
        round=$((round + 1))
    done
fi

out=$RESULTS_DIR/restore-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" \
    --argjson wal "$wal_bytes" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" \
    --arg pgbackrest "$("$PGBACKREST" version)" \
    --arg pg "$("$PGBIN/postgres" --version)" '
'"$JQ_STATS"'
    . as $runs |
    {benchmark: "restore", started_utc: $stamp, host: $host, cpus: $cpus, postgres: $pg,
     pgark: $pgark, pgbackrest: $pgbackrest,
     settings: {rounds: $rounds, pgbench_scale: $scale, wal_generated_bytes: $wal,
                pgark_restore: "--target immediate, no start (threads: two per core)",
                pgbackrest_restore: "--type=immediate, process-max 2",
                replay: "walfetch: restore_command pgark wal-fetch; walfetch_old: the same with BENCH_PGARK_OLD; local: segments in pg_wal, restore_command false; pgbackrest_async: archive-get --archive-async, process-max 2; mv: restore_command mv of segments already written out on the same file system"},
     runs: $runs,
     load1: {min: ($runs | map(.load1) | min), median: ($runs | med(.load1)), max: ($runs | map(.load1) | max)},
     medians: [ ($runs | map([.phase, .tool]) | unique)[] as $k |
        ($runs | map(select(.phase == $k[0] and .tool == $k[1]))) as $r |
        {phase: $k[0], tool: $k[1], wall_s: ($r | med(.wall_s)), cpu_s: ($r | med(.cpu_s)),
         cpu_user_s: ($r | med(.cpu_user_s)), cpu_sys_s: ($r | med(.cpu_sys_s)),
         rss_kib: ($r | med(.rss_kib)), restored_bytes: ($r | med(.restored_bytes)),
         redo_elapsed_s: ($r | med(.redo_elapsed_s)), server_cpu_s: ($r | med(.server_cpu_s)),
         replayed_bytes: ($r | med(.replayed_bytes))} ] } |
    (.medians | map({key: "\(.phase)/\(.tool)", value: .}) | from_entries) as $m |
    .ratios = {
        restore_wall_pgark_vs_pgbackrest: ratio($m["restore/pgark"].wall_s; $m["restore/pgbackrest"].wall_s),
        restore_wall_pgark_vs_untar: ratio($m["restore/pgark"].wall_s; $m["restore/untar"].wall_s),
        restore_cpu_pgark_vs_pgbackrest: ratio($m["restore/pgark"].cpu_s; $m["restore/pgbackrest"].cpu_s),
        restore_wall_pgark_vs_base: ratio($m["restore/pgark"].wall_s; $m["restore/pgark_base"].wall_s),
        restore_cpu_pgark_vs_base: ratio($m["restore/pgark"].cpu_s; $m["restore/pgark_base"].cpu_s),
        replay_wall_walfetch_vs_local: ratio($m["replay/walfetch"].wall_s; $m["replay/local"].wall_s),
        replay_redo_walfetch_vs_local: ratio($m["replay/walfetch"].redo_elapsed_s; $m["replay/local"].redo_elapsed_s),
        replay_wall_pgbackrest_async_vs_local: ratio($m["replay/pgbackrest_async"].wall_s; $m["replay/local"].wall_s),
        replay_wall_mv_vs_local: ratio($m["replay/mv"].wall_s; $m["replay/local"].wall_s),
        replay_wall_walfetch_old_vs_local: ratio($m["replay/walfetch_old"].wall_s; $m["replay/local"].wall_s),
        replay_wall_walfetch_vs_old: ratio($m["replay/walfetch"].wall_s; $m["replay/walfetch_old"].wall_s),
        replay_wall_walfetch_vs_pgbackrest_async: ratio($m["replay/walfetch"].wall_s; $m["replay/pgbackrest_async"].wall_s)} |
    .targets = {
        restore_at_most_0_7x_pgbackrest: (if .ratios.restore_wall_pgark_vs_pgbackrest == null then null else .ratios.restore_wall_pgark_vs_pgbackrest <= 0.7 end),
        restore_at_most_0_6x_untar: (if .ratios.restore_wall_pgark_vs_untar == null then null else .ratios.restore_wall_pgark_vs_untar <= 0.6 end),
        restore_faster_than_pgbackrest: (if .ratios.restore_wall_pgark_vs_pgbackrest == null then null else .ratios.restore_wall_pgark_vs_pgbackrest <= 1 end),
        replay_walfetch_at_most_1_05x_local: (if .ratios.replay_wall_walfetch_vs_local == null then null else .ratios.replay_wall_walfetch_vs_local <= 1.05 end)}
    ' "$raw" >"$out"

{
    echo
    echo "restore benchmark: pgbench scale $SCALE, $((wal_bytes / 1048576)) MiB of WAL replayed, medians of $ROUNDS rounds, load $(jq -r '"\(.load1.min)..\(.load1.max)"' "$out")"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        def d(x): if . == null then null else . / x end;
        (["phase", "tool", "wall_s", "user_s", "sys_s", "RSS_MiB", "MiB_laid_down", "redo_s", "server_CPU_s", "MiB_replayed"] | @tsv),
        (.medians[] | [.phase, .tool, (.wall_s | f(2)), (.cpu_user_s | f(2)), (.cpu_sys_s | f(2)), (.rss_kib | d(1024) | f(1)),
            (.restored_bytes | d(1048576) | f(0)), (.redo_elapsed_s | f(2)), (.server_cpu_s | f(2)),
            (.replayed_bytes | d(1048576) | f(0))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "targets:"
    print_targets "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
