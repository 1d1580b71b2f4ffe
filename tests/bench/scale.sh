#!/bin/sh
# scale.sh — how cost grows with the size of the cluster: the backup and restore
# benchmarks at two pgbench scales, side by side, with each tool's growth factor.
#
# Runs backup.sh and then restore.sh (its restore phase only: no WAL replay) at
# BENCH_SCALE_SMALL (100) and at BENCH_SCALE (500), BENCH_ROUNDS rounds each, one after
# the other in this one run, and joins their medians: for each tool the wall time, client
# CPU (user and sys), server CPU and peak RSS at both scales, and the growth factor
# (figure at the large scale / figure at the small one). The target of the scale issue:
# pgark's growth factor no larger than pgBackRest's, for backup and restore.
# Not part of BENCH=all (a scale-500 cluster takes ~8 GB and most of an hour): run it
# with BENCH=scale.
#
# Environment: PGARK, WORK, RESULTS_DIR (as every benchmark); BENCH_SCALE (500),
# BENCH_SCALE_SMALL (100), BENCH_ROUNDS (3); the knobs of backup.sh and restore.sh pass
# through (BENCH_TRANSPORTS, BENCH_RESTORE_KEEP, BENCH_BACKUP_SECOND=0 to time the full
# backups only, ...).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

: "${PGARK:?set PGARK to the pgark binary}"
: "${WORK:?set WORK to a scratch directory}"
RESULTS_DIR=${RESULTS_DIR:-$here/results}
BIG=${BENCH_SCALE:-500}
SMALL=${BENCH_SCALE_SMALL:-100}
case "$BIG$SMALL" in
*[!0-9]*) bench_die "BENCH_SCALE and BENCH_SCALE_SMALL must be whole numbers" ;;
esac
[ "$SMALL" -lt "$BIG" ] || bench_die "BENCH_SCALE_SMALL ($SMALL) must be below BENCH_SCALE ($BIG)"

trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
rm -rf "$WORK"
mkdir -p "$WORK/results" "$RESULTS_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# One benchmark at one scale; its JSON (the only file in a fresh results directory) is
# copied to $WORK/NAME-SCALE.json and to RESULTS_DIR.
run_one() { # name scale
    r=$WORK/results/$1-$2
    mkdir -p "$r"
    bench_log "$1 at scale $2"
    case "$1" in
    backup)
        BENCH_BACKUP_SCALE=$2 BENCH_BACKUP_SMALL_SCALE=${BENCH_BACKUP_SMALL_SCALE:-10} \
            WORK=$WORK/$1-$2 RESULTS_DIR=$r sh "$here/backup.sh"
        ;;
    restore)
        BENCH_RESTORE_SCALE=$2 BENCH_RESTORE_VARIANTS="" \
            WORK=$WORK/$1-$2 RESULTS_DIR=$r sh "$here/restore.sh"
        ;;
    esac || bench_die "$1 at scale $2 failed"
    f=$(ls "$r"/*.json | grep -v -- '-perf' | head -1)
    [ -n "$f" ] || bench_die "$1 at scale $2 wrote no results"
    cp "$f" "$WORK/$1-$2.json"
    cp "$r"/* "$RESULTS_DIR"/
}

for name in backup restore; do
    run_one "$name" "$SMALL"
    run_one "$name" "$BIG"
done

out=$RESULTS_DIR/scale-$stamp.json
jq -n --arg stamp "$stamp" --argjson small "$SMALL" --argjson big "$BIG" \
    --slurpfile bs "$WORK/backup-$SMALL.json" --slurpfile bb "$WORK/backup-$BIG.json" \
    --slurpfile rs "$WORK/restore-$SMALL.json" --slurpfile rb "$WORK/restore-$BIG.json" '
    def ratio(a; b): if a == null or b == null or b == 0 then null else (a / b * 1000 | round / 1000) end;
    def rows(s; b; phase):
        [ s.medians[] | select(.phase == phase) as $x |
          (b.medians[] | select(.phase == phase and .tool == $x.tool)) as $y |
          {phase: phase, tool: $x.tool,
           small: ($x | {wall_s, cpu_user_s, cpu_sys_s, server_cpu_s, rss_kib}),
           big: ($y | {wall_s, cpu_user_s, cpu_sys_s, server_cpu_s, rss_kib}),
           growth: {wall: ratio($y.wall_s; $x.wall_s), cpu: ratio($y.cpu_s; $x.cpu_s),
                    sys: ratio($y.cpu_sys_s; $x.cpu_sys_s), rss: ratio($y.rss_kib; $x.rss_kib)}} ];
    (rows($bs[0]; $bb[0]; "full") + rows($rs[0]; $rb[0]; "restore")) as $rows |
    def g(p; t): $rows | map(select(.phase == p and .tool == t)) | .[0].growth.wall;
    {benchmark: "scale", started_utc: $stamp, scales: {small: $small, big: $big},
     sources: [$bs[0].started_utc, $bb[0].started_utc, $rs[0].started_utc, $rb[0].started_utc],
     load1: [$bs[0].load1, $bb[0].load1, $rs[0].load1, $rb[0].load1],
     rows: $rows,
     big_scale_ratios: {backup: $bb[0].ratios, restore: $rb[0].ratios},
     targets: {
        backup_growth_at_most_pgbackrest: (if g("full"; "pgark") == null or g("full"; "pgbackrest") == null then null else g("full"; "pgark") <= g("full"; "pgbackrest") end),
        restore_growth_at_most_pgbackrest: (if g("restore"; "pgark") == null or g("restore"; "pgbackrest") == null then null else g("restore"; "pgark") <= g("restore"; "pgbackrest") end),
        backup_wall_at_most_pgbackrest_at_big: (if $bb[0].ratios.full_wall_pgark_vs_pgbackrest == null then null else $bb[0].ratios.full_wall_pgark_vs_pgbackrest <= 1 end),
        backup_cpu_at_most_1_2x_pgbackrest_at_big: (if $bb[0].ratios.full_cpu_pgark_vs_pgbackrest == null then null else $bb[0].ratios.full_cpu_pgark_vs_pgbackrest <= 1.2 end),
        restore_wall_at_most_0_8x_pgbackrest_at_big: (if $rb[0].ratios.restore_wall_pgark_vs_pgbackrest == null then null else $rb[0].ratios.restore_wall_pgark_vs_pgbackrest <= 0.8 end)}}
    ' >"$out"

{
    echo
    echo "scale benchmark: pgbench scale $SMALL and $BIG, medians of ${BENCH_ROUNDS:-3} rounds each"
    jq -r --argjson small "$SMALL" --argjson big "$BIG" '
        def f(n): if . == null then "-" else (. * pow(10; n) | round / pow(10; n) | tostring) end;
        (["phase", "tool", "wall_\($small)", "wall_\($big)", "growth", "sys_\($small)", "sys_\($big)",
          "CPU_growth", "RSS_\($small)_MiB", "RSS_\($big)_MiB"] | @tsv),
        (.rows[] | [.phase, .tool, (.small.wall_s | f(2)), (.big.wall_s | f(2)), (.growth.wall | f(2)),
            (.small.cpu_sys_s | f(2)), (.big.cpu_sys_s | f(2)), (.growth.cpu | f(2)),
            (.small.rss_kib / 1024 | f(1)), (.big.rss_kib / 1024 | f(1))] | @tsv)
    ' "$out" | column -t -s "$(printf '\t')"
    echo "targets:"
    print_targets "$out"
    echo
    echo "results: $(basename "$out")"
} >&2
