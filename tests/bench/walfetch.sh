#!/bin/sh
# walfetch.sh — restore_command per call: `pgark wal-fetch` back-to-back against `cp`.
#
# One throwaway cluster archives BENCH_WALFETCH_MIB of pgbench WAL through pgark wal-push
# (one posix repository, zstd level 3); the same segments are also kept uncompressed in a
# plain directory on the same file system. Then, per round, in an order that rotates:
#   cp        cp of the plain segment to DEST: the floor of any restore_command
#   walfetch  pgark wal-fetch SEGMENT DEST, with its read-ahead (wal_fetch_read_ahead at
#             its default)
#   walfetch_old  (only with BENCH_PGARK_OLD, a second pgark binary) the same with that
#             binary, for a paired before/after in one run
# Each variant asks for every segment in order, one call right after the other (no replay
# between calls to hide the read-ahead behind), into DEST = <fake data directory>/pg_wal/
# RECOVERYXLOG, removed after each call as the server does; the fake data directory has
# a PG_VERSION and a recovery.signal, as a restore's has, and the signal is removed at
# the end so the read-ahead leaves and removes its cache. Measured: the wall time of
# each call (Time::HiRes around the call), its median, p90 and the total; the CPU of the
# calls (user+sys of the waited-for children, per call); and the CPU of the detached
# read-ahead process (utime+stime from /proc of the process holding the cache's lock,
# read before recovery.signal goes; per segment of the run), which load does not distort
# as it does wall times.
# Target: the median wal-fetch call at most 1.2x the median cp.
#
# Environment: PGARK (required), WORK (removed at exit), RESULTS_DIR; BENCH_ROUNDS (3),
# BENCH_WALFETCH_MIB (512), BENCH_WALFETCH_PORT (54398), BENCH_PGARK_OLD (unset).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
ROUNDS=${BENCH_ROUNDS:-3}
WAL_MIB=${BENCH_WALFETCH_MIB:-512}
PORT=${BENCH_WALFETCH_PORT:-54398}
OLD=${BENCH_PGARK_OLD:-}
[ -x "$PGARK" ] || bench_die "no pgark binary at \"$PGARK\""
[ -z "$OLD" ] || [ -x "$OLD" ] || bench_die "no pgark binary at \"$OLD\" (BENCH_PGARK_OLD)"
VARIANTS="cp walfetch"
[ -z "$OLD" ] || VARIANTS="$VARIANTS walfetch_old"

# The read-ahead of a variant may still run when the script ends: its fake data
# directory loses recovery.signal, then the directories go.
BENCH_AT_EXIT='for d in "$WORK"/fetch-*; do [ -d "$d" ] && rm -f "$d/recovery.signal"; done; sleep 0.2'
bench_setup

PGARK_CONF=$WORK/pgark.yaml
bench_log "cluster on port $PORT in $WORK; $WAL_MIB MiB of WAL, $ROUNDS rounds: $VARIANTS"
pg_init "$WORK/pg" "$PORT" \
    "archive_mode = on" \
    "archive_command = '$PGARK --config $PGARK_CONF wal-push %p'" \
    "max_wal_size = 4GB" \
    "checkpoint_timeout = 30min"
cat >"$PGARK_CONF" <<EOF
spool: $WORK/spool
log:
  level: warn
repos:
  r1:
    type: posix
    path: $WORK/repo
compression:
  algorithm: zstd
  level: 3
clusters:
  bench:
    conninfo: "$(pg_conninfo tcp)"
    repos: [r1]
EOF
mkdir -p "$WORK/spool" "$WORK/repo"
pg_start
# init asks for the receiver's slot; it also keeps the segments in pg_wal for the plain copies
q "SELECT pg_create_physical_replication_slot('pgark_bench', true)" >/dev/null
"$PGARK" --config "$PGARK_CONF" init >"$WORK/init.log" 2>&1 || bench_die "pgark init failed: $(tail -3 "$WORK/init.log")"
"$PGBIN/pgbench" -i -q -s 10 -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres >"$WORK/pgbench-init.log" 2>&1 &
bench_register_pid $!
wait $! || bench_die "pgbench -i failed: $(tail -3 "$WORK/pgbench-init.log")"
q "SELECT pg_switch_wal()" >/dev/null
first_seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
lsn0=$(q "SELECT pg_current_wal_lsn()")
PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -c 4 -j 2 -T 1800 -h "$PGSOCK_BENCH" -p "$PORT" -U postgres postgres \
    >"$WORK/pgbench.log" 2>&1 &
pgbench_pid=$!
bench_register_pid "$pgbench_pid"
while [ "$(q "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') >= $WAL_MIB * 1048576.0")" != t ]; do
    kill -0 "$pgbench_pid" 2>/dev/null || bench_die "pgbench exited: $(tail -5 "$WORK/pgbench.log")"
    sleep 1
done
kill -TERM "$pgbench_pid" 2>/dev/null || true
wait "$pgbench_pid" 2>/dev/null || true
last_seg=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
q "SELECT pg_switch_wal()" >/dev/null
wait_until 600 "SELECT last_archived_wal >= '$last_seg' FROM pg_stat_archiver" ||
    bench_die "the archive did not reach $last_seg within 600 s"
# The plain copies, before the cluster recycles them: from its pg_wal, untimed.
mkdir -p "$WORK/plain"
segs=""
for f in "$PGDATA_BENCH"/pg_wal/0*; do
    s=$(basename "$f")
    if [ "${#s}" -eq 24 ] && [ ! "$s" \< "$first_seg" ] && [ ! "$s" \> "$last_seg" ]; then
        cp "$f" "$WORK/plain/$s"
        segs="$segs $s"
    fi
done
pg_stop
n=$(echo $segs | wc -w)
[ "$n" -gt 2 ] || bench_die "only $n segments between $first_seg and $last_seg in pg_wal"
bench_log "$n segments $first_seg..$last_seg archived; source cluster stopped"

# One variant: every segment in order, back-to-back; one line of milliseconds per call.
run_variant() { # variant round
    v=$1 round=$2
    d=$WORK/fetch-$v-$round
    mkdir -p "$d/pg_wal"
    echo 15 >"$d/PG_VERSION"
    : >"$d/recovery.signal"
    case "$v" in
    cp) cmd='cp "$ENV{PLAIN}/$s" "$ENV{DEST}"' ;;
    walfetch) cmd='"$ENV{PGARK}" --config "$ENV{CONF}" wal-fetch "$s" "$ENV{DEST}"' ;;
    walfetch_old) cmd='"$ENV{OLD}" --config "$ENV{CONF}" wal-fetch "$s" "$ENV{DEST}"' ;;
    esac
    PLAIN=$WORK/plain DEST=$d/pg_wal/RECOVERYXLOG CONF=$PGARK_CONF PGARK=$PGARK OLD=$OLD \
        CPUOUT=$WORK/$v-$round.cpu perl -MTime::HiRes=time -e '
            my $cmd = shift;
            my @c0 = times;
            for my $s (@ARGV) {
                my $t0 = time;
                system("sh", "-c", "exec " . $cmd =~ s/\$ENV\{(\w+)\}/$ENV{$1}/gr =~ s/\$s/$s/gr) == 0
                    or die "call for $s failed: $?\n";
                my $t1 = time;
                -s $ENV{DEST} == 16777216 or die "$s: DEST is not 16 MiB\n";
                unlink $ENV{DEST};
                printf "%.3f\n", ($t1 - $t0) * 1000;
            }
            my @c1 = times;
            open(my $fh, ">", $ENV{CPUOUT}) or die;
            printf $fh "%.3f\n", ($c1[2] - $c0[2] + $c1[3] - $c0[3]) * 1000 / @ARGV;' "$cmd" $segs >"$WORK/$v-$round.ms" 2>"$WORK/$v-$round.err" ||
        bench_die "$v failed: $(tail -3 "$WORK/$v-$round.err")"
    # the read-ahead's CPU so far: the process that holds the cache's lock
    ra_ticks=$(perl -e '
        my ($lock, $sum, $found) = (shift, 0, 0);
        for my $fd (glob("/proc/[0-9]*/fd/*")) {
            my $to = readlink($fd) // next;
            next unless $to eq $lock && $fd =~ m{^/proc/(\d+)/};
            open(my $fh, "<", "/proc/$1/stat") or next;
            my ($rest) = (<$fh> =~ /\)\s+(.*)$/s);
            my @f = split(" ", $rest);
            $sum += $f[11] + $f[12];
            $found = 1;
        }
        print $found ? $sum : "null";' "$d/pg_wal/.pgark-prefetch/.lock")
    rm -f "$d/recovery.signal"
    call_cpu=$(cat "$WORK/$v-$round.cpu")
    ra_ms=null
    [ "$ra_ticks" = null ] || ra_ms=$(awk -v t="$ra_ticks" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", t * 1000 / hz / n }')
    med=$(percentile 50 <"$WORK/$v-$round.ms")
    p90=$(percentile 90 <"$WORK/$v-$round.ms")
    total=$(awk '{ t += $1 } END { printf "%.1f", t }' "$WORK/$v-$round.ms")
    bench_log "round $round: $v median $med ms, p90 $p90 ms, total $total ms; CPU $call_cpu ms a call, read-ahead $ra_ms ms a segment"
    jq -nc --arg v "$v" --argjson round "$round" --argjson med "$med" --argjson p90 "$p90" \
        --argjson total "$total" --argjson n "$n" --argjson load "$(load1)" \
        --argjson ccpu "$call_cpu" --argjson racpu "$ra_ms" \
        '{variant: $v, round: $round, calls: $n, median_ms: $med, p90_ms: $p90, total_ms: $total,
          call_cpu_ms: $ccpu, readahead_cpu_ms_per_segment: $racpu, load1: $load}' >>"$raw"
    # A read-ahead still running sees recovery.signal gone, removes its cache and
    # leaves; one that had gone idle left it: wait a little, then remove the directory.
    i=0
    while [ -d "$d/pg_wal/.pgark-prefetch" ] && [ $i -lt 20 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    rm -rf "$d"
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    # rotate the order from round to round
    set -- $VARIANTS
    k=$(((round - 1) % $#))
    while [ "$k" -gt 0 ]; do
        first=$1
        shift
        set -- "$@" "$first"
        k=$((k - 1))
    done
    for v in "$@"; do
        run_variant "$v" "$round"
    done
    round=$((round + 1))
done

out=$RESULTS_DIR/walfetch-$stamp.json
jq -s --argjson rounds "$ROUNDS" --argjson mib "$WAL_MIB" "$JQ_STATS"'
    . as $runs |
    {benchmark: "walfetch", date: (now | todate),
     settings: {rounds: $rounds, wal_mib: $mib, walfetch: "pgark wal-fetch, read-ahead at its default, posix repository, zstd level 3",
                cp: "cp of the uncompressed segment on the same file system"},
     runs: $runs,
     medians: ([$runs[].variant] | unique | map(. as $v | ($runs | map(select(.variant == $v))) as $r |
        {key: $v, value: {median_ms: ($r | med(.median_ms)), p90_ms: ($r | med(.p90_ms)), total_ms: ($r | med(.total_ms)),
                          call_cpu_ms: ($r | med(.call_cpu_ms)),
                          readahead_cpu_ms_per_segment: ($r | med(.readahead_cpu_ms_per_segment))}}) | from_entries)} |
    .ratios = {walfetch_vs_cp: ratio(.medians.walfetch.median_ms; .medians.cp.median_ms),
               walfetch_old_vs_cp: ratio(.medians.walfetch_old.median_ms; .medians.cp.median_ms),
               walfetch_vs_old: ratio(.medians.walfetch.median_ms; .medians.walfetch_old.median_ms),
               call_cpu_walfetch_vs_cp: ratio(.medians.walfetch.call_cpu_ms; .medians.cp.call_cpu_ms),
               readahead_cpu_vs_old: ratio(.medians.walfetch.readahead_cpu_ms_per_segment; .medians.walfetch_old.readahead_cpu_ms_per_segment)} |
    .targets = {walfetch_median_at_most_1_2x_cp: (if .ratios.walfetch_vs_cp == null then null else .ratios.walfetch_vs_cp <= 1.2 end)}
    ' "$raw" >"$out"
{
    echo
    echo "walfetch benchmark: $n segments back-to-back per variant, medians of $ROUNDS rounds"
    jq -r '.medians | to_entries[] | "  \(.key): median \(.value.median_ms) ms, p90 \(.value.p90_ms) ms, total \(.value.total_ms) ms; CPU \(.value.call_cpu_ms) ms a call, read-ahead \(.value.readahead_cpu_ms_per_segment // "-") ms a segment"' "$out"
    echo "ratios:"
    print_ratios "$out" ratios
    echo "targets:"
    print_targets "$out"
    echo "results: $(basename "$out")"
} >&2
