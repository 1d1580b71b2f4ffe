#!/bin/sh
# backup.sh — base backup benchmark: pgark backup against pg_basebackup and pgBackRest.
#
# One throwaway cluster (data checksums on, archive_mode = on with archive_command
# pushing to pgBackRest, which its backup needs), pgbench -i at BENCH_BACKUP_SCALE, and
# per round these variants in an order that rotates from round to round:
#   pgark          pgark backup into a fresh posix repository, zstd level 3 (the
#                  repository made untimed by pgark init, as pgBackRest's stanza is)
#   pg_basebackup  pg_basebackup -Ft -X none -c fast --compress=client-zstd:3
#   pgbackrest     pgbackrest backup --type=full, zst level 3, process-max 2
#   pgark_enc      pgark backup as pgark, encrypted (AES-256-GCM under a passphrase)
# pgark and pg_basebackup connect over TCP to 127.0.0.1, as a backup host elsewhere does
# (the headline figures), and again over the Unix socket as pgark_unix and
# pg_basebackup_unix (BENCH_TRANSPORTS="tcp unix", the default; "tcp" alone skips the
# socket runs). pgBackRest reads the files itself and uses its connection only to start
# and stop the backup, so it runs once, on the socket.
# Then, on that round's pgark repository (over TCP):
#   pgark_2nd_contig   pgark backup after UPDATE of the first 5% of pgbench_accounts
#   pgark_2nd_random   pgark backup after UPDATE of every 20th row (5%, on every page)
# (then VACUUM, untimed, so that the table grows by the same amount every round).
# Before each timed run: CHECKPOINT, a WAL switch, wait until archived, sync.
# Measured: wall time, CPU of the client (user+sys, children included: pgBackRest's
# worker processes), CPU of the whole cluster over the run (pg_basebackup and pgark
# make the server read and send the files; pgBackRest reads them itself), peak RSS of
# the client (/usr/bin/time: the largest process), stored bytes and objects created
# (files: pgark: chunks and manifests; pg_basebackup: its output; pgBackRest: that
# backup's directory; WAL not counted). Every round's output stays until the end. After the rounds a cluster at BENCH_BACKUP_SMALL_SCALE is backed up by pgark
# BENCH_ROUNDS times, for its peak RSS against the big one's.
# Targets: pgark full wall time <= pgBackRest's; pgark second backup after the
# contiguous 5% change <= half of its full; peak RSS at the big scale within 20% of
# the small one's. Ratios of medians, and paired ratios (within each round, then the
# median over rounds: wall times swing with the load of a shared machine).
#
# Environment: PGARK (required), WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3),
# BENCH_BACKUP_SCALE (100), BENCH_BACKUP_SMALL_SCALE (10), BENCH_BACKUP_PORT (54392),
# BENCH_TRANSPORTS ("tcp unix"), BENCH_TOOLS (the full-backup variants to run, from "pgark
# pg_basebackup pgbackrest pgark_enc", the default; pgark is required: the second backups
# use its repository; the *_unix runs follow for pgark and pg_basebackup when listed),
# BENCH_PGARK_OLD (another pgark binary, e.g. the build before a change: run in every
# round as the variant pgark_b, over TCP, into a repository of its own, for paired
# ratios pgark_b/pgark of wall, CPU and system time; run.sh copies it for the bench user),
# BENCH_BACKUP_SECOND=0 (no second backups: the full ones only, e.g. at a large scale),
# BENCH_STEP_TIMEOUT (1800 s for any one command), BENCH_PERF=1: one more pgark full and
# contiguous second backup under perf record -g (reports backup-<stamp>-perf-*.txt).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
SCALE=${BENCH_BACKUP_SCALE:-100}
SMALL_SCALE=${BENCH_BACKUP_SMALL_SCALE:-10}
PORT=${BENCH_BACKUP_PORT:-54392}
STEP=${BENCH_STEP_TIMEOUT:-1800}
PERF=${BENCH_PERF:-0}
SECOND=${BENCH_BACKUP_SECOND:-1}
case "$SECOND" in 0 | 1) ;; *) bench_die "BENCH_BACKUP_SECOND must be 0 or 1" ;; esac
TRANSPORTS=${BENCH_TRANSPORTS:-tcp unix}
PGBACKREST=${PGBACKREST:-/usr/bin/pgbackrest}
STANZA=bench

[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
PGARK_B=${BENCH_PGARK_OLD:-}
[ -z "$PGARK_B" ] || [ -x "$PGARK_B" ] || bench_die "BENCH_PGARK_OLD: no pgark binary at \"$PGARK_B\""
TOOLS=${BENCH_TOOLS:-pgark pg_basebackup pgbackrest pgark_enc}
for t in $TOOLS; do
    case "$t" in
    pgark | pg_basebackup | pgbackrest | pgark_enc) ;;
    *) bench_die "BENCH_TOOLS: \"$t\" is not pgark, pg_basebackup, pgbackrest or pgark_enc" ;;
    esac
done
case " $TOOLS " in
*" pgark "*) ;;
*) bench_die "BENCH_TOOLS must include pgark (the second backups use its repository)" ;;
esac
[ -x "$PGBACKREST" ] || bench_die "no pgbackrest at \"$PGBACKREST\""
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

bench_setup
PGBR_CONF=$WORK/pgbackrest.conf

bench_log "cluster on port $PORT in $WORK; pgbench scale $SCALE, $ROUNDS rounds; load $(load1)"
pg_init "$WORK/pg" "$PORT" \
    "shared_buffers = 256MB" \
    "max_wal_size = 8GB" \
    "checkpoint_timeout = 30min" \
    "autovacuum = off" \
    "archive_mode = on" \
    "archive_command = '$PGBACKREST --config=$PGBR_CONF --stanza=$STANZA archive-push %p'"
pgbr_write_config "$PGBR_CONF" "$WORK/pgbr" "$STANZA"
pg_start
"$PGBACKREST" --config="$PGBR_CONF" --stanza="$STANZA" stanza-create >"$WORK/stanza.log" 2>&1 ||
    bench_die "pgbackrest stanza-create failed: $(tail -5 "$WORK/stanza.log")"

pgbench_init() { # scale
    t0=$(date +%s)
    "$PGBIN/pgbench" -i -q -s "$1" -h "$PGSOCK_BENCH" -p "$PGPORT_BENCH" -U postgres postgres \
        >"$WORK/pgbench-init.log" 2>&1 &
    bench_register_pid $!
    wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
    bench_log "pgbench -i -s $1 took $(($(date +%s) - t0)) s; database $(q "SELECT pg_size_pretty(pg_database_size('postgres'))")"
}
pgbench_init "$SCALE"

# Nothing of one run left for the next: a checkpoint, every WAL segment archived (so
# that the archiver does not push during the next run), dirty pages written back.
quiesce() {
    q "CHECKPOINT" >/dev/null
    if [ "$(q "SHOW archive_mode")" = on ]; then
        seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
        q "SELECT pg_switch_wal()" >/dev/null
        wait_until 300 "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver" ||
            bench_die "segment $seg was not archived within 300 s"
    fi
    sync
}

write_pgark_config() { # file repo-dir [transport [encrypted]]
    {
        cat <<EOF
spool: $WORK/spool
repos:
  r1:
    type: posix
    path: $2
compression:
  algorithm: zstd
  level: 3
clusters:
  $STANZA:
    conninfo: "$(pg_conninfo "${3:-tcp}")"
    repos: [r1]
EOF
        if [ "${4:-}" = encrypted ]; then
            printf 'encryption:\n  passphrase: "bench passphrase, not a secret"\n'
        fi
    } >"$1"
}

pgark_stored() { # repo-dir: chunks and manifests, not WAL
    du_bytes "$1/$STANZA/chunks" "$1/$STANZA/backups"
}

json_num() {
    if [ -n "$1" ]; then echo "$1"; else echo null; fi
}

# run_timed phase tool round out-prefix CMD...: one measured run; appends a record.
# STORED must be set by the caller after the run (stored_after hook): see measure().
record() { # phase tool round timefile server-ticks stored scale objects transport
    wall=$(timed_field "$4" 1)
    usr=$(timed_field "$4" 2)
    sys=$(timed_field "$4" 3)
    rss=$(timed_field "$4" 4)
    srv=$(ticks_to_s "$5")
    jq -cn --arg phase "$1" --arg tool "$2" --argjson round "$3" \
        --argjson wall "$wall" --argjson usr "$usr" --argjson sys "$sys" --argjson rss "$rss" \
        --argjson srv "$srv" --argjson stored "$(json_num "$6")" --argjson scale "$7" \
        --argjson load "$(load1)" --argjson objects "$(json_num "$8")" --arg transport "$9" \
        --argjson db "$(q "SELECT pg_database_size('postgres')" 2>/dev/null || echo null)" \
        '{phase: $phase, tool: $tool, transport: $transport, round: $round, scale: $scale, wall_s: $wall,
          cpu_user_s: $usr, cpu_sys_s: $sys, cpu_s: ($usr + $sys), server_cpu_s: $srv,
          rss_kib: $rss, stored_bytes: $stored, objects: $objects, db_bytes: $db, load1: $load}' >>"$raw"
    bench_log "  $2: wall $wall s, CPU $usr+$sys s (server $srv s), RSS $((rss / 1024)) MiB, stored $(awk -v b="${6:-0}" 'BEGIN { printf "%.1f", b / 1048576 }') MiB in $8 files, load $(load1)"
}

pgark_backup() { # config timefile [perf-data]; $pgark_bin (default $PGARK) runs
    bin=${pgark_bin:-$PGARK}
    if [ -n "${3:-}" ]; then
        timed "$2" timeout "$STEP" perf record -g -F 499 -o "$3" -- \
            "$bin" --config "$1" backup --no-progress >"$WORK/pgark.log" 2>&1
    else
        timed "$2" timeout "$STEP" "$bin" --config "$1" backup --no-progress >"$WORK/pgark.log" 2>&1
    fi || bench_die "pgark backup failed: $(tail -5 "$WORK/pgark.log")"
}

run_variant() { # tool round
    tool=$1 round=$2
    bench_log "round $round: $tool"
    quiesce
    tf=$WORK/time
    cpu0=$(server_cpu_ticks)
    case "$tool" in
    *_unix) transport=unix ;;
    pgbackrest) transport=unix ;;
    *) transport=tcp ;;
    esac
    case "$tool" in
    pgark | pgark_unix | pgark_enc | pgark_b)
        # the round's repository used for the second backups is pgark's (TCP, plain)
        case "$tool" in
        pgark) repo=$WORK/pgark-repo-$round ;;
        *) repo=$WORK/$tool-repo-$round ;;
        esac
        enc=""
        [ "$tool" = pgark_enc ] && enc=encrypted
        write_pgark_config "$WORK/$tool-$round.yaml" "$repo" "$transport" $enc
        pgark_bin=$PGARK
        [ "$tool" = pgark_b ] && pgark_bin=$PGARK_B
        # The repository is made untimed, as pgBackRest's stanza is: creating one is a
        # once-per-repository cost (with encryption, a scrypt derivation for its salt).
        # init exits 1 for the slot this config does not ask it to create; the
        # repository is what counts here.
        "$pgark_bin" --config "$WORK/$tool-$round.yaml" init >"$WORK/init.log" 2>&1 || true
        [ -f "$repo/$STANZA/repo.json" ] ||
            bench_die "pgark init made no repository: $(tail -5 "$WORK/init.log")"
        pgark_backup "$WORK/$tool-$round.yaml" "$tf"
        pgark_bin=""
        stored=$(pgark_stored "$repo")
        objects=$(file_count "$repo/$STANZA/chunks" "$repo/$STANZA/backups")
        ;;
    pg_basebackup | pg_basebackup_unix)
        out=$WORK/$tool-$round
        timed "$tf" timeout "$STEP" "$PGBIN/pg_basebackup" -D "$out" -Ft -X none -c fast \
            --compress=client-zstd:3 -h "$(pg_host "$transport")" -p "$PGPORT_BENCH" -U postgres \
            >"$WORK/pg_basebackup.log" 2>&1 ||
            bench_die "pg_basebackup failed: $(tail -5 "$WORK/pg_basebackup.log")"
        stored=$(du_bytes "$out")
        objects=$(file_count "$out")
        ;;
    pgbackrest)
        timed "$tf" timeout "$STEP" "$PGBACKREST" --config="$PGBR_CONF" --stanza="$STANZA" \
            --type=full backup >"$WORK/pgbackrest.log" 2>&1 ||
            bench_die "pgbackrest backup failed: $(tail -5 "$WORK/pgbackrest.log")"
        last=$(ls -1d "$WORK/pgbr/repo/backup/$STANZA"/*F | tail -1)
        stored=$(du_bytes "$last")
        objects=$(file_count "$last")
        ;;
    esac
    cpu1=$(server_cpu_ticks)
    record full "$tool" "$round" "$tf" $((cpu1 - cpu0)) "$stored" "$SCALE" "$objects" "$transport"
}

# A second pgark backup into the round's repository after changing 5% of the rows.
run_second() { # kind round
    kind=$1 round=$2
    naccounts=$((SCALE * 100000))
    case "$kind" in
    contig) where="aid <= $((naccounts / 20))" ;;
    random) where="aid % 20 = 0" ;;
    esac
    bench_log "round $round: pgark second backup after UPDATE ... WHERE $where"
    q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE $where" >/dev/null
    quiesce
    repo=$WORK/pgark-repo-$round
    before=$(pgark_stored "$repo")
    nbefore=$(file_count "$repo/$STANZA/chunks" "$repo/$STANZA/backups")
    cpu0=$(server_cpu_ticks)
    pgark_backup "$WORK/pgark-$round.yaml" "$WORK/time"
    cpu1=$(server_cpu_ticks)
    after=$(pgark_stored "$repo")
    nafter=$(file_count "$repo/$STANZA/chunks" "$repo/$STANZA/backups")
    record "2nd_$kind" pgark "$round" "$WORK/time" $((cpu1 - cpu0)) $((after - before)) "$SCALE" \
        $((nafter - nbefore)) tcp
}

variants=$TOOLS
[ -z "$PGARK_B" ] || variants="$variants pgark_b"
case " $TRANSPORTS " in
*" unix "*)
    variants="$variants pgark_unix"
    case " $TOOLS " in
    *" pg_basebackup "*) variants="$variants pg_basebackup_unix" ;;
    esac
    ;;
esac
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
        run_variant "$v" "$round"
    done
    if [ "$SECOND" = 1 ]; then
        run_second contig "$round"
        run_second random "$round"
        q "VACUUM pgbench_accounts" >/dev/null
    fi
    # The round's repository stays until the end (WORK is removed at exit): on ext4
    # without a journal, creating files within a minute of deleting many makes inode
    # allocation skip each recently deleted inode (recently_deleted()), which doubled
    # the next round's system time for pgark's ~1500 chunk files, and only for pgark
    # (pgBackRest's repository is never emptied between rounds).
    round=$((round + 1))
done

if [ "$PERF" = 1 ]; then
    bench_log "profiling: pgark full and contiguous second backup under perf record"
    repo=$WORK/pgark-repo-perf
    write_pgark_config "$WORK/pgark-perf.yaml" "$repo"
    quiesce
    pgark_backup "$WORK/pgark-perf.yaml" "$WORK/time" "$WORK/perf-full.data"
    q "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((SCALE * 5000))" >/dev/null
    quiesce
    pgark_backup "$WORK/pgark-perf.yaml" "$WORK/time" "$WORK/perf-2nd.data"
    for p in full 2nd; do
        {
            for keys in comm dso dso,sym; do
                echo "== self time by $keys"
                perf report -i "$WORK/perf-$p.data" --stdio --no-children -g none \
                    --sort "$keys" --percent-limit 0.5 2>/dev/null | grep -v '^#' | grep -v '^$' |
                    grep -v '\[\.\] 0x' # libraries without symbols: their time shows by dso
            done
        } >"$RESULTS_DIR/backup-$stamp-perf-$p.txt" || bench_log "perf report failed"
    done
    rm -rf "$repo"
fi

# The small cluster: pgark's peak RSS should not depend on the size of the database.
pg_stop
rm -rf "$WORK/pg"
bench_log "small cluster: pgbench scale $SMALL_SCALE, pgark backup x $ROUNDS"
pg_init "$WORK/pg-small" $((PORT + 1)) "shared_buffers = 256MB" "autovacuum = off"
pg_start
pgbench_init "$SMALL_SCALE"
round=1
while [ "$round" -le "$ROUNDS" ]; do
    repo=$WORK/pgark-repo-small-$round
    write_pgark_config "$WORK/pgark-small.yaml" "$repo"
    quiesce
    cpu0=$(server_cpu_ticks)
    pgark_backup "$WORK/pgark-small.yaml" "$WORK/time"
    cpu1=$(server_cpu_ticks)
    record small pgark "$round" "$WORK/time" $((cpu1 - cpu0)) "$(pgark_stored "$repo")" "$SMALL_SCALE" \
        "$(file_count "$repo/$STANZA/chunks" "$repo/$STANZA/backups")" tcp
    round=$((round + 1))
done
pg_stop

out=$RESULTS_DIR/backup-$stamp.json
jq -s --arg stamp "$stamp" --argjson rounds "$ROUNDS" --argjson scale "$SCALE" \
    --argjson small "$SMALL_SCALE" --arg host "$(uname -n)" --argjson cpus "$(nproc)" \
    --arg pgark "$("$PGARK" --version 2>/dev/null | head -1)" \
    --arg pgbackrest "$("$PGBACKREST" version)" \
    --arg pg "$("$PGBIN/postgres" --version)" '
'"$JQ_STATS"'
    . as $runs |
    [ ["full", "pgark"], ["full", "pg_basebackup"], ["full", "pgbackrest"],
      ["full", "pgark_enc"], ["full", "pgark_b"], ["full", "pgark_unix"], ["full", "pg_basebackup_unix"], ["2nd_contig", "pgark"], ["2nd_random", "pgark"], ["small", "pgark"] ] as $keys |
    {benchmark: "backup", started_utc: $stamp, host: $host, cpus: $cpus, postgres: $pg,
     pgark: $pgark, pgbackrest: $pgbackrest,
     settings: {rounds: $rounds, pgbench_scale: $scale, small_scale: $small,
                transports: "pgark and pg_basebackup over TCP to 127.0.0.1 (pgark, pg_basebackup) and over the Unix socket (*_unix); pgBackRest on the socket (it reads the files itself)",
                pgark: "posix repository, zstd level 3, fresh repository per full (made untimed by pgark init, as the pgBackRest stanza is)",
                pg_basebackup: "-Ft -X none -c fast --compress=client-zstd:3",
                pgbackrest: "--type=full, compress-type=zst level 3, process-max 2, start-fast",
                second_backups: "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= N/20 (contig) or aid % 20 = 0 (random)"},
     runs: $runs,
     load1: {min: ($runs | map(.load1) | min), median: ($runs | med(.load1)), max: ($runs | map(.load1) | max)},
     medians: [ $keys[] as $k | ($runs | map(select(.phase == $k[0] and .tool == $k[1]))) as $r |
        select($r | length > 0) |
        {phase: $k[0], tool: $k[1], transport: $r[0].transport, wall_s: ($r | med(.wall_s)),
         cpu_s: ($r | med(.cpu_s)), cpu_user_s: ($r | med(.cpu_user_s)), cpu_sys_s: ($r | med(.cpu_sys_s)),
         objects: ($r | med(.objects)),
         server_cpu_s: ($r | med(.server_cpu_s)), rss_kib: ($r | med(.rss_kib)),
         rss_kib_max: ($r | map(.rss_kib) | max), stored_bytes: ($r | med(.stored_bytes))} ] } |
    (.medians | map({key: "\(.phase)/\(.tool)", value: .}) | from_entries) as $m |
    .ratios = {
        full_wall_pgark_vs_pgbackrest: ratio($m["full/pgark"].wall_s; $m["full/pgbackrest"].wall_s),
        full_wall_pgark_vs_pg_basebackup: ratio($m["full/pgark"].wall_s; $m["full/pg_basebackup"].wall_s),
        full_wall_pgark_vs_pg_basebackup_unix: ratio($m["full/pgark_unix"].wall_s; $m["full/pg_basebackup_unix"].wall_s),
        full_wall_encrypted_vs_plain: ratio($m["full/pgark_enc"].wall_s; $m["full/pgark"].wall_s),
        full_wall_pgark_tcp_vs_unix: ratio($m["full/pgark"].wall_s; $m["full/pgark_unix"].wall_s),
        full_cpu_pgark_vs_pgbackrest: ratio($m["full/pgark"].cpu_s; $m["full/pgbackrest"].cpu_s),
        full_sys_pgark_vs_pgbackrest: ratio($m["full/pgark"].cpu_sys_s; $m["full/pgbackrest"].cpu_sys_s),
        full_cpu_pgark_vs_pg_basebackup: ratio($m["full/pgark"].cpu_s; $m["full/pg_basebackup"].cpu_s),
        full_cpu_with_server_pgark_vs_pgbackrest:
            ratio($m["full/pgark"].cpu_s + $m["full/pgark"].server_cpu_s;
                  $m["full/pgbackrest"].cpu_s + $m["full/pgbackrest"].server_cpu_s),
        full_cpu_with_server_pgark_vs_pg_basebackup:
            ratio($m["full/pgark"].cpu_s + $m["full/pgark"].server_cpu_s;
                  $m["full/pg_basebackup"].cpu_s + $m["full/pg_basebackup"].server_cpu_s),
        full_stored_pgark_vs_pgbackrest: ratio($m["full/pgark"].stored_bytes; $m["full/pgbackrest"].stored_bytes),
        second_contig_wall_vs_full: ratio($m["2nd_contig/pgark"].wall_s; $m["full/pgark"].wall_s),
        second_random_wall_vs_full: ratio($m["2nd_random/pgark"].wall_s; $m["full/pgark"].wall_s),
        second_contig_stored_vs_full: ratio($m["2nd_contig/pgark"].stored_bytes; $m["full/pgark"].stored_bytes),
        second_random_stored_vs_full: ratio($m["2nd_random/pgark"].stored_bytes; $m["full/pgark"].stored_bytes),
        rss_big_vs_small: ratio($m["full/pgark"].rss_kib_max; $m["small/pgark"].rss_kib_max)} |
    # Paired: the ratio within each round (its runs minutes apart, under about the same
    # load of the shared machine), then the median over rounds.
    def run(r; p; t): $runs | map(select(.round == r and .phase == p and .tool == t)) | .[0];
    def paired(p1; t1; p2; t2; f):
        [ $runs | map(.round) | unique | .[] as $r |
          ratio(run($r; p1; t1) | f; run($r; p2; t2) | f) ] | median |
        if . == null then null else (. * 1000 | round / 1000) end;
    .paired_ratios = {
        full_wall_pgark_vs_pgbackrest: paired("full"; "pgark"; "full"; "pgbackrest"; .wall_s),
        full_wall_pgark_vs_pg_basebackup: paired("full"; "pgark"; "full"; "pg_basebackup"; .wall_s),
        full_cpu_pgark_vs_pgbackrest: paired("full"; "pgark"; "full"; "pgbackrest"; .cpu_s),
        full_wall_pgark_vs_pgark_b: paired("full"; "pgark"; "full"; "pgark_b"; .wall_s),
        full_cpu_pgark_vs_pgark_b: paired("full"; "pgark"; "full"; "pgark_b"; .cpu_s),
        full_sys_pgark_vs_pgark_b: paired("full"; "pgark"; "full"; "pgark_b"; .cpu_sys_s),
        second_contig_wall_vs_full: paired("2nd_contig"; "pgark"; "full"; "pgark"; .wall_s),
        second_random_wall_vs_full: paired("2nd_random"; "pgark"; "full"; "pgark"; .wall_s),
        second_contig_cpu_vs_full: paired("2nd_contig"; "pgark"; "full"; "pgark"; .cpu_s)} |
    .targets = {
        full_wall_at_most_0_8x_pg_basebackup: (if .ratios.full_wall_pgark_vs_pg_basebackup == null then null else .ratios.full_wall_pgark_vs_pg_basebackup <= 0.8 end),
        full_cpu_at_most_pgbackrest: (if .ratios.full_cpu_pgark_vs_pgbackrest == null then null else .ratios.full_cpu_pgark_vs_pgbackrest <= 1 end),
        encrypted_at_most_1_1x_plain: (if .ratios.full_wall_encrypted_vs_plain == null then null else .ratios.full_wall_encrypted_vs_plain <= 1.1 end),
        full_wall_at_most_pgbackrest: (if .ratios.full_wall_pgark_vs_pgbackrest == null then null else .ratios.full_wall_pgark_vs_pgbackrest <= 1 end),
        second_at_most_half_of_full: (if .ratios.second_contig_wall_vs_full == null then null else .ratios.second_contig_wall_vs_full <= 0.5 end),
        second_at_most_half_of_full_paired: (if .paired_ratios.second_contig_wall_vs_full == null then null else .paired_ratios.second_contig_wall_vs_full <= 0.5 end),
        rss_within_20_percent: (if .ratios.rss_big_vs_small == null then null else .ratios.rss_big_vs_small <= 1.2 end)}
    ' "$raw" >"$out"

{
    echo
    echo "backup benchmark: pgbench scale $SCALE (small: $SMALL_SCALE), medians of $ROUNDS rounds, load $(jq -r '"\(.load1.min)..\(.load1.max)"' "$out")"
    jq -r '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["phase", "tool", "via", "wall_s", "user_s", "sys_s", "server_CPU_s", "RSS_MiB", "RSS_max_MiB", "stored_MiB", "files"] | @tsv),
        (.medians[] | [.phase, .tool, .transport, (.wall_s | f(2)), (.cpu_user_s | f(2)), (.cpu_sys_s | f(2)),
            (.server_cpu_s | f(2)), (.rss_kib / 1024 | f(1)), (.rss_kib_max / 1024 | f(1)),
            (.stored_bytes / 1048576 | f(1)), (.objects | f(0))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "paired ratios (per round, median over rounds):"
    print_ratios "$out" paired_ratios
    echo "targets:"
    print_targets "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
