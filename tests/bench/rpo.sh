#!/bin/sh
# rpo.sh — RPO per tier: the committed data a restore from each repository would lose,
# measured under load, and at the moment of loss.
#
# One throwaway PostgreSQL cluster (track_commit_timestamp on), a pgbench database, and
# `pgark receive` shipping to a local repository (posix, its partial copy every
# BENCH_RPO_LOCAL_INTERVAL) and to an S3 repository (a local s3rver, its store on tmpfs;
# every BENCH_RPO_OFFSITE_INTERVAL), asynchronous unless BENCH_RPO_SYNC=1. While pgbench
# runs for BENCH_RPO_SECONDS, status.json (written after every copy a repository takes)
# is read every 100 ms; afterwards, for every whole second t of the run,
#   measured RPO of a tier  = the primary's newest commit at t (from pgbench_history's
#                             commit times: one row per transaction)
#                           - the newest commit the tier's repository held at t (the last
#                             state of status.json written at or before t)
#   (t at a random moment of each second; and what the receiver itself reported as
#   rpo_seconds then). The spool's own RPO is the server's flush_lag of the receiver,
#   sampled every 100 ms.
# The newest commit a repository holds is the receiver's figure, which the test suite
# (tests/t/023, 024) checks to the microsecond against what a restore from it gets.
# Reported: median, p99 and max per tier beside the intervals configured; the
# receiver's CPU per GiB of WAL and pgbench's TPS. Then the moment of loss: with pgbench
# still running the primary is crashed (immediate stop), the receiver stopped a second
# later; the loss per tier is the newest commit of the restarted primary (max commit
# time of pgbench_history) minus the newest commit each repository holds (the spool's:
# what the receiver never got; in asynchronous mode, the last milliseconds before the
# crash). The states of status.json read and the per-second figures are kept beside the
# results (rpo-<stamp>-status.txt, -seconds.txt).
#
# Environment: PGARK, S3RVER_JS (required), WORK (removed at exit), RESULTS_DIR;
# BENCH_RPO_SECONDS (default BENCH_SECONDS, else 300), BENCH_RPO_LOCAL_INTERVAL (500ms,
# pgark's default), BENCH_RPO_OFFSITE_INTERVAL (10s, pgark's default), BENCH_RPO_SYNC
# (0), BENCH_RPO_RATE (0: as fast as it goes; else pgbench -R TPS), BENCH_SCALE (20),
# BENCH_CLIENTS (4), BENCH_JOBS (2), BENCH_RPO_PORT (54392), BENCH_RPO_S3_PORT (54397).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
: "${S3RVER_JS:?set S3RVER_JS to s3rver/bin/s3rver.js}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
SECONDS_RUN=${BENCH_RPO_SECONDS:-${BENCH_SECONDS:-300}}
LOCAL_IV=${BENCH_RPO_LOCAL_INTERVAL:-500ms}
OFFSITE_IV=${BENCH_RPO_OFFSITE_INTERVAL:-10s}
SYNC=${BENCH_RPO_SYNC:-0}
RATE=${BENCH_RPO_RATE:-0}
SCALE=${BENCH_SCALE:-20}
CLIENTS=${BENCH_CLIENTS:-4}
JOBS=${BENCH_JOBS:-2}
PORT=${BENCH_RPO_PORT:-54392}
S3PORT=${BENCH_RPO_S3_PORT:-54397}
APP=bench_rpo

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -f "$S3RVER_JS" ] || bench_die "no s3rver at \"$S3RVER_JS\" (make deps)"
command -v node >/dev/null || bench_die "no node to run s3rver"
command -v jq >/dev/null || bench_die "no jq"

RX_PID=""
S3DATA=""
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ "$SYNC" = 1 ] && [ -n "$PGDATA_BENCH" ] && [ -f "$PGDATA_BENCH/postmaster.pid" ]; then
        # Never leave commits waiting on a receiver that is going away.
        q "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null 2>&1 || true
        q "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    fi
    [ -z "$RX_PID" ] || kill "$RX_PID" 2>/dev/null || true
    bench_cleanup
    [ -z "$S3DATA" ] || rm -rf "$S3DATA"
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$WORK"
mkdir -p "$WORK" "$RESULTS_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    S3DATA=$(mktemp -d /dev/shm/pgark-bench-rpo-XXXXXX)
else
    S3DATA=$WORK/s3
    mkdir -p "$S3DATA"
fi
s3rver_start "$S3DATA" "$S3PORT" "$WORK/s3rver.log" --silent
curl -s -f -X PUT "http://127.0.0.1:$S3PORT/rpo" >/dev/null || bench_die "could not create the bucket"

bench_log "RPO per tier: pgbench $SECONDS_RUN s, local every $LOCAL_IV, off-site every $OFFSITE_IV, $([ "$SYNC" = 1 ] && echo synchronous || echo asynchronous); load $(load1)"
pg_init "$WORK/pg" "$PORT" \
    "shared_buffers = 256MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "track_commit_timestamp = on" \
    "autovacuum = off"
pg_start
"$PGBIN/pgbench" -i -q -s "$SCALE" -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"

mkdir -p "$WORK/rx/spool" "$WORK/rx/local"
umask 077 # the configuration names the (test) credentials
cat >"$WORK/rx/pgark.yaml" <<EOF
spool: $WORK/rx/spool
log: { level: info }
repos:
  local: { type: posix, path: $WORK/rx/local, partial_upload_interval: $LOCAL_IV }
  offsite: { type: s3, endpoint: "http://127.0.0.1:$S3PORT", allow_http: true, bucket: rpo,
             access_key_id: S3RVER, secret_access_key: S3RVER }
clusters:
  bench:
    conninfo: "$(pg_conninfo)"
    slot: bench_rpo
    create_slot: true
    application_name: $APP
    synchronous: $([ "$SYNC" = 1 ] && echo true || echo false)
    partial_upload_interval: $OFFSITE_IV
    repos: [local, offsite]
EOF
"$PGARK" --config "$WORK/rx/pgark.yaml" receive >"$WORK/rx/rx.log" 2>&1 &
RX_PID=$!
bench_register_pid "$RX_PID"
status_json=$WORK/rx/spool/bench/status.json
wait_until 60 "SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '$APP' AND state = 'streaming'" ||
    bench_die "the receiver is not streaming: $(tail -5 "$WORK/rx/rx.log")"
if [ "$SYNC" = 1 ]; then
    q "ALTER SYSTEM SET synchronous_standby_names = '$APP'" >/dev/null
    q "SELECT pg_reload_conf()" >/dev/null
    wait_until 30 "SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = '$APP' AND sync_state = 'sync'" ||
        bench_die "the receiver did not become the synchronous standby"
fi
# Both repositories hold the WAL up to now (their first copies), before the load.
deadline=$(($(date +%s) + 60))
until [ "$(jq -r '[.repos[] | .rpo_seconds == 0 and .last_error == null] | all' "$status_json" 2>/dev/null)" = true ]; do
    [ "$(date +%s)" -lt "$deadline" ] || bench_die "the repositories did not catch up: $(tail -5 "$WORK/rx/rx.log")"
    sleep 0.2
done

# One sample of status.json: when it was written, the newest commit of the spool and of
# each repository, and the RPO the receiver reports for each, "|"-separated.
sample() {
    jq -r '[.updated, .newest_commit // "",
            (.repos[] | select(.name == "local") | .newest_commit // ""),
            (.repos[] | select(.name == "offsite") | .newest_commit // ""),
            (.repos[] | select(.name == "local") | .rpo_seconds // ""),
            (.repos[] | select(.name == "offsite") | .rpo_seconds // "")] | join("|")' \
        "$status_json" 2>/dev/null || true
}

rate_opt=""
[ "$RATE" = 0 ] || rate_opt="-R $RATE"
lsn0=$(q "SELECT pg_current_wal_lsn()")
cpu0=$(proc_cpu_ticks "$RX_PID")
# pgbench runs on past the sampling, so that the crash below falls under load.
# shellcheck disable=SC2086 # rate_opt is empty or two words
"$PGBIN/pgbench" -n -c "$CLIENTS" -j "$JOBS" -T $((SECONDS_RUN + 30)) $rate_opt \
    -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres >"$WORK/pgbench.log" 2>&1 &
PGB_PID=$!
bench_register_pid "$PGB_PID"
: >"$WORK/samples"
start=$(date +%s)
# The spool's own RPO: the server's flush_lag of the receiver, every 100 ms.
awk -v n=$((SECONDS_RUN * 10 + 100)) -v app="$APP" 'BEGIN {
    for (i = 0; i < n; i++) {
        printf "SELECT coalesce(round(extract(epoch FROM flush_lag)::numeric, 4), -1) "
        printf "FROM pg_stat_replication WHERE application_name = '\''%s'\'';\n", app
        print "SELECT pg_sleep(0.1);"
    }
}' >"$WORK/lag.sql"
"$PGBIN/psql" -XAtq -h "$PGSOCK_BENCH" -p "$PORT" -U postgres -d postgres -f "$WORK/lag.sql" \
    >"$WORK/lag" 2>/dev/null &
LAG_PID=$!
bench_register_pid "$LAG_PID"
# status.json is written after every copy a repository takes: read every 100 ms, it gives
# when each repository's newest commit moved (a state missed only makes the RPO measured
# larger).
i=0
while [ "$(date +%s)" -lt $((start + SECONDS_RUN)) ]; do
    i=$((i + 1))
    [ $((i % 10)) -ne 0 ] || kill -0 "$RX_PID" 2>/dev/null ||
        bench_die "the receiver exited: $(tail -5 "$WORK/rx/rx.log")"
    sample >>"$WORK/samples"
    sleep 0.1
done
sampler_stop "$LAG_PID"
lsn1=$(q "SELECT pg_current_wal_lsn()")
cpu1=$(proc_cpu_ticks "$RX_PID")
wal=$(q "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
# A status.json written twice in a second is sampled once; one without every figure not.
sort -u "$WORK/samples" | awk -F'|' 'NF == 6 && $2 != "" && $3 != "" && $4 != ""' >"$WORK/samples.ok"
[ -s "$WORK/samples.ok" ] || bench_die "no state of status.json with every figure"

# The moment of loss: the primary crashes under load, the receiver stops a second later.
"$PGBIN/pg_ctl" -D "$PGDATA_BENCH" -m immediate -w stop >/dev/null 2>&1 || true
wait "$PGB_PID" 2>/dev/null || true
sleep 1
t0=$(date +%s.%N)
kill -TERM "$RX_PID"
i=0
while kill -0 "$RX_PID" 2>/dev/null && [ $i -lt 600 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -0 "$RX_PID" 2>/dev/null && bench_die "the receiver did not stop within 30 s"
wait "$RX_PID" 2>/dev/null || true
RX_PID=""
stop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
final_spool=$(jq -r '.newest_commit // ""' "$status_json")
final_local=$(jq -r '.repos[] | select(.name == "local") | .newest_commit // ""' "$status_json")
final_off=$(jq -r '.repos[] | select(.name == "offsite") | .newest_commit // ""' "$status_json")
pg_start
if [ "$SYNC" = 1 ]; then # nothing would commit without the receiver
    q "ALTER SYSTEM RESET synchronous_standby_names" >/dev/null
    q "SELECT pg_reload_conf()" >/dev/null
fi
newest=$(q "SELECT max(pg_xact_commit_timestamp(xmin)) FROM pgbench_history")
# The measured RPO of a sample: the primary's newest commit when status.json was written
# (from the commit times of pgbench_history, one row per transaction: independent of
# the receiver) minus the newest commit each holds.
q "CREATE TABLE bench_commits AS SELECT pg_xact_commit_timestamp(xmin) AS t FROM pgbench_history" >/dev/null
q "CREATE INDEX ON bench_commits (t)" >/dev/null
q "CREATE TABLE bench_samples (u timestamptz, sp timestamptz, lo timestamptz, off timestamptz,
                               rl float8, ro float8)" >/dev/null
"$PGBIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PGSOCK_BENCH" -p "$PORT" -U postgres -d postgres \
    -c "\\copy bench_samples FROM '$WORK/samples.ok' WITH (FORMAT csv, DELIMITER '|')" ||
    bench_die "could not load the samples"
# Once a second, at a random moment within it (copies run on timers of a second or more:
# whole seconds would always fall at the same phase of them): the primary's newest commit
# then, against the newest commit each repository held then (the last state of
# status.json written at or before it). From the moment every repository holds a commit
# of the load on: before, the newest commit held is pgbench -i's, and the time from it to
# the load's first commit was not a loss (nothing was committed).
q "SELECT round(greatest(0, extract(epoch FROM c.p - s.lo))::numeric, 3),
          round(greatest(0, extract(epoch FROM c.p - s.off))::numeric, 3), s.rl, s.ro
     FROM (SELECT k + random() * interval '1 s' AS t
             FROM (SELECT generate_series(min(u), max(u) - interval '1 s', interval '1 s') AS k
                     FROM bench_samples
                    WHERE least(sp, lo, off) >= (SELECT min(t) FROM bench_commits)) ks) g
     CROSS JOIN LATERAL (SELECT * FROM bench_samples b WHERE b.u <= g.t ORDER BY b.u DESC LIMIT 1) s
     CROSS JOIN LATERAL (SELECT max(t) AS p FROM bench_commits WHERE t <= g.t) c
    WHERE c.p IS NOT NULL" | tr '|' ' ' >"$WORK/rpo"
nsamples=$(wc -l <"$WORK/rpo")
[ "$nsamples" -gt 0 ] || bench_die "no samples"
loss() { # newest commit held -> seconds of commits lost
    [ -n "$1" ] || {
        echo null
        return
    }
    q "SELECT round(greatest(0, extract(epoch FROM '$newest'::timestamptz - '$1'::timestamptz))::numeric, 3)"
}
loss_spool=$(loss "$final_spool")
loss_local=$(loss "$final_local")
loss_off=$(loss "$final_off")
tps=$(awk '/^tps = / { print $3; exit }' "$WORK/pgbench.log")
cpu_s=$(ticks_to_s $((cpu1 - cpu0)))

col() { awk -v c="$1" '{ print $c }' "$WORK/rpo"; }
lagcol() { awk 'NF == 1 && $1 >= 0 { print $1 }' "$WORK/lag"; }
stats() { # column -> {p50, p99, max}
    printf '{"p50": %s, "p99": %s, "max": %s}' "$(col "$1" | percentile 50)" \
        "$(col "$1" | percentile 99)" "$(col "$1" | percentile 100)"
}
out=$RESULTS_DIR/rpo-$stamp.json
cp "$WORK/samples.ok" "$RESULTS_DIR/rpo-$stamp-status.txt"
cp "$WORK/rpo" "$RESULTS_DIR/rpo-$stamp-seconds.txt"
jq -n --arg stamp "$stamp" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" version 2>/dev/null | head -1)" --arg pg "$("$PGBIN/postgres" --version)" \
    --argjson seconds "$SECONDS_RUN" --argjson samples "$nsamples" \
    --arg local_iv "$LOCAL_IV" --arg off_iv "$OFFSITE_IV" --argjson sync "$([ "$SYNC" = 1 ] && echo true || echo false)" \
    --argjson rate "$RATE" --argjson scale "$SCALE" --argjson clients "$CLIENTS" \
    --argjson spool "$(printf '{"p50": %s, "p99": %s, "max": %s}' "$(lagcol | percentile 50)" \
        "$(lagcol | percentile 99)" "$(lagcol | percentile 100)")" \
    --argjson local "$(stats 1)" --argjson offsite "$(stats 2)" \
    --argjson rep_local "$(stats 3)" --argjson rep_offsite "$(stats 4)" \
    --argjson loss_spool "$loss_spool" --argjson loss_local "$loss_local" --argjson loss_off "$loss_off" \
    --argjson stop_s "$stop_s" \
    --argjson tps "${tps:-null}" --argjson wal "$wal" --argjson cpu "$cpu_s" '
    {benchmark: "rpo", started_utc: $stamp, host: $host, cpus: $cpus, postgres: $pg, pgark: $pgark,
     settings: {seconds: $seconds, local_interval: $local_iv, offsite_interval: $off_iv,
                synchronous: $sync, pgbench_rate: $rate, pgbench_scale: $scale, clients: $clients},
     samples: $samples, tps: $tps, wal_bytes: $wal,
     receiver_cpu_s: $cpu, receiver_cpu_s_per_gib: ($cpu / ($wal / 1073741824) * 1000 | round / 1000),
     measured_rpo_s: {spool: $spool, local: $local, offsite: $offsite},
     reported_rpo_s: {local: $rep_local, offsite: $rep_offsite},
     moment_of_loss: {receiver_stop_s: $stop_s,
                      lost_s: {spool: $loss_spool, local: $loss_local, offsite: $loss_off}}}
    ' >"$out"

{
    echo
    echo "RPO benchmark: pgbench -c $CLIENTS -j $JOBS ${rate_opt:+$rate_opt }for $SECONDS_RUN s, scale $SCALE, $nsamples samples (one a second)"
    jq -r '"\(.tps // "-") tps, \(.wal_bytes / 1073741824 * 1000 | round / 1000) GiB WAL, receiver CPU \(.receiver_cpu_s) s (\(.receiver_cpu_s_per_gib) s/GiB)"' "$out"
    jq -r '
        (["tier", "interval", "measured_p50_s", "p99_s", "max_s", "reported_p50_s", "p99_s", "max_s", "lost_at_crash_s"] | @tsv),
        (["spool", "-", .measured_rpo_s.spool.p50, .measured_rpo_s.spool.p99, .measured_rpo_s.spool.max, "-", "-", "-", .moment_of_loss.lost_s.spool] | @tsv),
        (["local", .settings.local_interval, .measured_rpo_s.local.p50, .measured_rpo_s.local.p99, .measured_rpo_s.local.max,
          .reported_rpo_s.local.p50, .reported_rpo_s.local.p99, .reported_rpo_s.local.max, .moment_of_loss.lost_s.local] | @tsv),
        (["off-site", .settings.offsite_interval, .measured_rpo_s.offsite.p50, .measured_rpo_s.offsite.p99, .measured_rpo_s.offsite.max,
          .reported_rpo_s.offsite.p50, .reported_rpo_s.offsite.p99, .reported_rpo_s.offsite.max, .moment_of_loss.lost_s.offsite] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    jq -r '"moment of loss: the primary crashed under load; the receiver, stopped 1 s later, took \(.moment_of_loss.receiver_stop_s) s to stop"' "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
