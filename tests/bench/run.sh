#!/bin/sh
# run.sh — `make bench`: run the benchmarks named by BENCH.
#
# BENCH: a benchmark name (a script tests/bench/NAME.sh) or a space-separated list of
# them, or "all" (the default: every tests/bench/*.sh but run.sh, lib.sh and scale.sh,
# which runs backup and restore again at two scales and is asked for by name).
#
# PostgreSQL refuses to run as root. As root this makes sure the unprivileged user
# (PGARK_BENCH_USER, default pgarktest) exists, copies the built binary and these scripts
# into a scratch directory that user owns (PGARK_BENCH_DIR, default
# /var/tmp/pgark-bench), runs each benchmark there as that user with a clean
# environment, copies the results back into tests/bench/results/ and removes the
# scratch directory, whatever happened. Not root: runs the benchmarks right here.
#
# Each benchmark gets PGARK (the binary), WORK (its scratch directory) and RESULTS_DIR,
# S3BENCH (tests/tools/s3bench, built here: `make all` does not) and S3RVER_JS (s3rver, from make
# deps), plus every BENCH_* variable of this environment. The whole run is bounded by
# BENCH_TIMEOUT seconds (default: a generous bound from BENCH_SECONDS and BENCH_ROUNDS).
#
# Adding a benchmark: a script tests/bench/NAME.sh (POSIX sh) that sources lib.sh (cluster
# start/stop, CPU and RSS sampling, percentiles), keeps everything under WORK with an EXIT
# trap that calls bench_cleanup and removes WORK, bounds every wait, and writes
# $RESULTS_DIR/NAME-<UTC timestamp>.json plus a table on stderr. Results are not committed
# (tests/bench/.gitignore).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-build}
case "$build" in
/*) pgark=$build/pgark ;;
*) pgark=$root/$build/pgark ;;
esac
[ -x "$pgark" ] || {
    echo "run.sh: no pgark binary at \"$pgark\": run make first" >&2
    exit 2
}

names=${BENCH:-all}
if [ "$names" = all ]; then
    names=""
    for f in "$here"/*.sh; do
        n=$(basename "$f" .sh)
        case "$n" in
        run | lib | scale) ;;
        *) names="$names $n" ;;
        esac
    done
fi
for n in $names; do
    [ -f "$here/$n.sh" ] || {
        echo "run.sh: no benchmark \"$n\" (no tests/bench/$n.sh)" >&2
        exit 2
    }
done

# The helper tools (s3bench) are not part of `make all`.
s3bench=$(dirname "$pgark")/tests/tools/s3bench
s3rver_dir=$root/tests/harness/s3
case " $names " in
*" s3 "*)
    ${MAKE:-make} -s -C "$root" BUILD="$build" tools >&2 || {
        echo "run.sh: could not build the test tools (make tools)" >&2
        exit 2
    }
    [ -f "$s3rver_dir/node_modules/s3rver/bin/s3rver.js" ] || {
        echo "run.sh: s3rver is not installed in \"$s3rver_dir\": run make deps" >&2
        exit 2
    }
    ;;
*" rpo "* | *" s3repo "*)
    [ -f "$s3rver_dir/node_modules/s3rver/bin/s3rver.js" ] || {
        echo "run.sh: s3rver is not installed in \"$s3rver_dir\": run make deps" >&2
        exit 2
    }
    ;;
esac

# incr runs a server of 17+ from the test suite's pinned bundle (installed on first use
# into the benchmark user's cache, as the tests do): its bin directory, found here.
incr_pgbin() { # command prefix to run as the benchmark user...
    "$@" perl -I"$root/tests/t/lib" -MPgarkMajors \
        -e 'print pg_install_path($ARGV[0]), "/bin"' "${BENCH_INCR_MAJOR:-17}" || {
        echo "run.sh: no PostgreSQL ${BENCH_INCR_MAJOR:-17} bundle for the incr benchmark" >&2
        exit 2
    }
}

secs=${BENCH_SECONDS:-300}
rounds=${BENCH_ROUNDS:-3}
# Per round at most 5 variants of the load plus set-up and catch-up; then pgbench -i.
limit=${BENCH_TIMEOUT:-$((rounds * 5 * (secs + 240) + 900))}
results=$here/results
mkdir -p "$results"

bench_env() { # the BENCH_* variables, as NAME=VALUE arguments
    env | grep '^BENCH_[A-Z0-9_]*=' || true
}

if [ "$(id -u)" -ne 0 ]; then
    case " $names " in
    *" incr "*) [ -n "${BENCH_INCR_PGBIN:-}" ] || BENCH_INCR_PGBIN=$(incr_pgbin env PGARK_ROOT="$root") ;;
    esac
    export BENCH_INCR_PGBIN
    status=0
    for n in $names; do
        echo "run.sh: benchmark $n" >&2
        PGARK=$pgark S3BENCH=$s3bench S3RVER_JS=$s3rver_dir/node_modules/s3rver/bin/s3rver.js WORK=${PGARK_BENCH_DIR:-${TMPDIR:-/tmp}/pgark-bench-$$}/$n RESULTS_DIR=$results \
            timeout -k 30 "$limit" sh "$here/$n.sh" || status=$?
    done
    exit "$status"
fi

user=${PGARK_BENCH_USER:-pgarktest}
dest=${PGARK_BENCH_DIR:-/var/tmp/pgark-bench}
case "$dest" in
/*/*) ;;
*)
    echo "run.sh: refusing scratch directory \"$dest\": give an absolute path two levels deep" >&2
    exit 2
    ;;
esac
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --create-home --shell /usr/sbin/nologin "$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
case " $names " in
*" incr "*)
    [ -n "${BENCH_INCR_PGBIN:-}" ] || BENCH_INCR_PGBIN=$(incr_pgbin runuser -u "$user" -- env -i \
        PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" PGARK_ROOT="$root")
    export BENCH_INCR_PGBIN
    ;;
esac

child=""
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        # timeout passes the signal on to the benchmark's whole process group, and
        # kills it 30 s later if it has not finished cleaning up.
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    # A benchmark killed from outside may leave its server running: stop it as the user.
    for pid_file in "$dest"/work/*/pg/data/postmaster.pid; do
        [ -f "$pid_file" ] || continue
        runuser -u "$user" -- /usr/lib/postgresql/15/bin/pg_ctl -D "$(dirname "$pid_file")" \
            -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    done
    if [ -d "$dest/results" ]; then
        cp -p "$dest"/results/* "$results"/ 2>/dev/null || true
    fi
    rm -rf "$dest"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/bench" "$dest/work" "$dest/results"
cp "$pgark" "$dest/bin/pgark"
[ ! -x "$s3bench" ] || cp "$s3bench" "$dest/bin/s3bench"
[ ! -d "$s3rver_dir/node_modules" ] || cp -a "$s3rver_dir" "$dest/s3"
cp "$here"/*.sh "$dest/bench/"
cp "$root/tests/harness/swift-s3.py" "$dest/bench/" # for BENCH_S3REPO_KINDS="... swift"
if [ -n "${BENCH_PGARK_OLD:-}" ]; then # the A/B binary of every benchmark, readable by the user
    cp "$BENCH_PGARK_OLD" "$dest/bin/pgark-old"
    BENCH_PGARK_OLD=$dest/bin/pgark-old
    export BENCH_PGARK_OLD
fi
chown -R "$user:$user" "$dest"
chmod 0700 "$dest"

status=0
for n in $names; do
    echo "run.sh: benchmark $n as $user in $dest (bounded to $limit s)" >&2
    # bench_env yields one NAME=VALUE per line; a value may hold spaces
    # (BENCH_RESTORE_VARIANTS="walfetch local"), so split on newlines only.
    # In the background and waited for, so that a signal to this script is acted on now.
    saved_ifs=$IFS
    IFS='
'
    # shellcheck disable=SC2046 # one word per line of bench_env, on purpose
    timeout -k 30 "$limit" runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
        HOME="$home" USER="$user" LANG=C.UTF-8 PGARK="$dest/bin/pgark" WORK="$dest/work/$n" \
        S3BENCH="$dest/bin/s3bench" S3RVER_JS="$dest/s3/node_modules/s3rver/bin/s3rver.js" \
        RESULTS_DIR="$dest/results" $(bench_env) sh "$dest/bench/$n.sh" &
    child=$!
    IFS=$saved_ifs
    wait "$child" || status=$?
    child=""
done
[ "$status" -ne 0 ] || echo "run.sh: results in $results" >&2
exit "$status"
