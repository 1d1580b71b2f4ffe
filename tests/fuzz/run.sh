#!/bin/sh
# run.sh BUILD SECONDS [NAME...] — run the libFuzzer harnesses of BUILD/tests/fuzz (all, or
# the NAMEs given: "tar" for fuzz_tar), SECONDS each, one after the other (`make fuzz`).
#
# Each starts from its seeds and regression inputs in tests/fuzz/corpus/NAME (read only)
# and from what earlier runs found in BUILD/corpus/NAME, where new inputs go. A crash,
# a leak, a sanitizer report, a timeout (25 s for one input) or more than 2 GiB of memory
# stops that harness; the input is saved as BUILD/crashes/NAME-<kind>-<sha1>, to be added
# to tests/fuzz/corpus/NAME once fixed. Exits 1 when any harness stopped so.
set -u

build=$1
seconds=$2
shift 2
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if [ "$#" -eq 0 ]; then
    set --
    for f in tests/fuzz/fuzz_*.c; do
        n=${f#tests/fuzz/fuzz_}
        set -- "$@" "${n%.c}"
    done
fi

failed=""
for name in "$@"; do
    bin="$build/tests/fuzz/fuzz_$name"
    if [ ! -x "$bin" ]; then
        echo "fuzz: no harness \"$name\" ($bin)" >&2
        failed="$failed $name"
        continue
    fi
    mkdir -p "$build/corpus/$name" "$build/crashes" "tests/fuzz/corpus/$name"
    log="$build/crashes/$name.log"
    echo "fuzz: $name for ${seconds} s"
    if "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$name-" "$build/corpus/$name" \
        "tests/fuzz/corpus/$name" >"$log" 2>&1; then
        grep -E '^stat::(number_of_executed_units|new_units_added):' "$log" | tr '\n' ' ' |
            sed 's/stat:://g; s/$/\n/'
    else
        echo "fuzz: $name stopped; the end of $log:" >&2
        tail -n 40 "$log" >&2
        failed="$failed $name"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
