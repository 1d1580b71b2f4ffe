#!/bin/sh
# drill.sh — drill benchmark: the RTO `pgark drill` measures, by phase, beside the same
# recovery done by hand: `pgark restore` to latest, then pg_ctl start and a wait until the
# server has left recovery.
#
# One throwaway cluster (data checksums on; archive_command pgark wal-push), pgbench -i at
# BENCH_DRILL_SCALE, one pgark backup, then pgbench until BENCH_DRILL_WAL_MIB of WAL is
# archived, the cluster stopped. Per round, in rotating order:
#   drill  pgark drill --json (to latest): its phases (choose, files, start, replay: the
#          RTO; validate apart) from its record, and its whole wall time;
#   plain  pgark restore --target latest into an empty directory (timed), then the server
#          started on it and polled every 0.1 s until pg_is_in_recovery() is false (timed).
# Target: the drill's RTO (choose + files + start + replay) at most 1.1x the plain restore
# + start + replay; its validation (pg_checksums, amcheck on every index) is reported
# apart, as the cost of the proof.
#
# Environment: PGARK (required), WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3),
# BENCH_DRILL_SCALE (100), BENCH_DRILL_WAL_MIB (256), BENCH_DRILL_PORT (54396),
# BENCH_STEP_TIMEOUT (1800).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_DRILL_SCALE:-100}
WAL_MIB=${BENCH_DRILL_WAL_MIB:-256}
PORT=${BENCH_DRILL_PORT:-54396}
STEP=${BENCH_STEP_TIMEOUT:-1800}

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""

TARGET=$WORK/target
DRILLDIR=$WORK/drill

stop_leftovers() {
    for d in "$TARGET" "$DRILLDIR"; do
        [ -f "$d/postmaster.pid" ] || continue
        "$PGBIN/pg_ctl" -D "$d" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    done
}

cleanup() {
    status=$?
    trap - EXIT INT TERM
    bench_cleanup
    stop_leftovers
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
PGARK_CONF=$WORK/pgark.yaml

bench_log "cluster on port $PORT in $WORK; pgbench scale $SCALE, $WAL_MIB MiB of WAL to replay, $ROUNDS rounds; load $(load1)"
pg_init "$WORK/pg" "$PORT" \
    "shared_buffers = 256MB" \
    "max_wal_size = 4GB" \
    "checkpoint_timeout = 30min" \
    "autovacuum = off" \
    "archive_mode = on" \
    "archive_command = '$PGARK --config $PGARK_CONF wal-push %p'"
cat >"$PGARK_CONF" <<EOF
spool: $WORK/spool
repos:
  r1:
    type: posix
    path: $WORK/pgark-repo
clusters:
  bench:
    conninfo: "$(pg_conninfo)"
    repos: [r1]
    pg_bindir: $PGBIN
EOF
pg_start

t0=$(date +%s)
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
bench_log "pgbench -i -s $SCALE took $(($(date +%s) - t0)) s; database $(q "SELECT pg_size_pretty(pg_database_size('postgres'))")"

wait_archived() {
    q "CHECKPOINT" >/dev/null
    seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
    q "SELECT pg_switch_wal()" >/dev/null
    wait_until "$STEP" "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver" ||
        bench_die "segment $seg was not archived in time: $(tail -3 "$WORK/postgres.log")"
}
wait_archived
timeout "$STEP" "$PGARK" --config "$PGARK_CONF" backup --no-progress >"$WORK/backup.log" 2>&1 ||
    bench_die "pgark backup failed: $(tail -5 "$WORK/backup.log")"

bench_log "pgbench until $WAL_MIB MiB of WAL"
lsn0=$(q "SELECT pg_current_wal_lsn()")
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
kill -TERM "$pgbench_pid" 2>/dev/null || true
wait "$pgbench_pid" 2>/dev/null || true
wal_bytes=$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint")
wait_archived
pg_stop
bench_log "  $((wal_bytes / 1048576)) MiB of WAL archived; source cluster stopped"

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

run_drill() { # round
    bench_log "round $1: pgark drill"
    rm -rf "$DRILLDIR" "$DRILLDIR-tablespaces"
    sync
    t0=$(now_s)
    timeout "$STEP" "$PGARK" --config "$PGARK_CONF" drill --json --repo r1 --pgdata "$DRILLDIR" \
        >"$WORK/drill.json" 2>"$WORK/drill.log" || bench_die "the drill failed: $(tail -5 "$WORK/drill.log"; jq -c '.drills[0].error' "$WORK/drill.json" 2>/dev/null)"
    wall=$(elapsed "$t0" "$(now_s)")
    jq -c --argjson round "$1" --argjson wall "$wall" --argjson load "$(load1)" '.drills[0] |
        {kind: "drill", round: $round, wall_s: $wall, rto_s: (.rto_ms / 1000),
         choose_s: (.phases_ms.choose / 1000), files_s: (.phases_ms.files / 1000),
         start_s: (.phases_ms.start / 1000), replay_s: (.phases_ms.replay / 1000),
         validate_s: (.phases_ms.validate / 1000), load1: $load}' "$WORK/drill.json" >>"$raw"
    bench_log "  drill: $(tail -1 "$raw")"
}

run_plain() { # round
    bench_log "round $1: pgark restore + start + replay"
    rm -rf "$TARGET"
    mkdir -m 0700 "$TARGET"
    sync
    t0=$(now_s)
    timeout "$STEP" "$PGARK" --config "$PGARK_CONF" restore --pgdata "$TARGET" --target latest \
        --no-progress >"$WORK/restore.log" 2>&1 || bench_die "pgark restore failed: $(tail -5 "$WORK/restore.log")"
    t1=$(now_s)
    {
        echo "port = $((PORT + 1))"
        echo "unix_socket_directories = '$WORK/pg/sock'"
        echo "archive_mode = off"
    } >>"$TARGET/postgresql.auto.conf"
    "$PGBIN/pg_ctl" -D "$TARGET" -l "$WORK/plain.log" -W start >/dev/null || bench_die "pg_ctl start failed"
    deadline=$(($(date +%s) + STEP))
    until [ "$("$PGBIN/psql" -XAtq -h "$WORK/pg/sock" -p $((PORT + 1)) -U postgres -d postgres \
        -c 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; do
        [ "$(date +%s)" -lt "$deadline" ] || bench_die "recovery did not end: $(tail -5 "$WORK/plain.log")"
        sleep 0.1
    done
    t2=$(now_s)
    "$PGBIN/pg_ctl" -D "$TARGET" -m fast -w -t 120 stop >/dev/null 2>&1 || true
    jq -cn --argjson round "$1" --argjson restore "$(elapsed "$t0" "$t1")" \
        --argjson recovery "$(elapsed "$t1" "$t2")" --argjson load "$(load1)" \
        '{kind: "plain", round: $round, restore_s: $restore, start_replay_s: $recovery,
          rto_s: ($restore + $recovery), load1: $load}' >>"$raw"
    bench_log "  plain: $(tail -1 "$raw")"
    rm -rf "$TARGET"
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    if [ $((round % 2)) -eq 1 ]; then
        run_drill "$round"
        run_plain "$round"
    else
        run_plain "$round"
        run_drill "$round"
    fi
    round=$((round + 1))
done

out=$RESULTS_DIR/drill-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" \
    --argjson wal "$wal_bytes" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" --arg pg "$("$PGBIN/postgres" --version)" '
    def median: map(select(. != null)) | sort |
        if length == 0 then null
        elif length % 2 == 1 then .[length / 2 | floor]
        else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def med(k; f): map(select(.kind == k) | f) | median;
    . as $runs |
    {benchmark: "drill", started_utc: $stamp, host: $host, cpus: $cpus, postgres: $pg, pgark: $pgark,
     settings: {rounds: $rounds, pgbench_scale: $scale, wal_replayed_bytes: $wal},
     runs: $runs,
     medians: {
        drill: {rto_s: med("drill"; .rto_s), choose_s: med("drill"; .choose_s), files_s: med("drill"; .files_s),
                start_s: med("drill"; .start_s), replay_s: med("drill"; .replay_s),
                validate_s: med("drill"; .validate_s), wall_s: med("drill"; .wall_s)},
        plain: {restore_s: med("plain"; .restore_s), start_replay_s: med("plain"; .start_replay_s),
                rto_s: med("plain"; .rto_s)}}} |
    .ratios = {drill_rto_vs_plain: (if .medians.plain.rto_s then (.medians.drill.rto_s / .medians.plain.rto_s * 1000 | round / 1000) else null end)} |
    .targets = {drill_rto_at_most_1_1x_plain: (if .ratios.drill_rto_vs_plain == null then null else .ratios.drill_rto_vs_plain <= 1.1 end)}
    ' "$raw" >"$out"

{
    echo
    echo "drill benchmark: pgbench scale $SCALE, $((wal_bytes / 1048576)) MiB of WAL to replay, medians of $ROUNDS rounds"
    jq -r '.medians.drill | "drill:  RTO \(.rto_s) s = choose \(.choose_s) + files \(.files_s) + start \(.start_s) + replay \(.replay_s); validation \(.validate_s) s; wall \(.wall_s) s"' "$out"
    jq -r '.medians.plain | "plain:  restore \(.restore_s) s + start and replay \(.start_replay_s) s = \(.rto_s) s"' "$out"
    jq -r '"ratio:  drill RTO / plain = \(.ratios.drill_rto_vs_plain // "-"); target (<= 1.1): \(if .targets.drill_rto_at_most_1_1x_plain == null then "-" elif .targets.drill_rto_at_most_1_1x_plain then "met" else "MISSED" end)"' "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
