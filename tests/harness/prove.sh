#!/usr/bin/env bash
# prove.sh — the whole suite in one prove run: the C unit tests of $PGARK_BUILD and,
# when built, of ${PGARK_BUILD}-asan, then the Perl integration tests tests/t/*.pl.
#
# Every file goes through tests/harness/run-test: cmocka binaries run directly
# (CMOCKA_MESSAGE_OUTPUT=TAP makes each print one plan and "ok N" lines, its exit code
# counts the failures), the .pl files through perl.
# Fails when prove fails, and when the run executed no test at all.
#
# Environment: PGARK_BUILD (absolute build dir, required), PG_BINDIR (default
# /usr/lib/postgresql/15/bin), PROVE_JOBS (default 2), PROVE_FLAGS (extra flags),
# TESTS (files to run instead of all, relative to the tree root).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

: "${PGARK_BUILD:?PGARK_BUILD must name the build directory}"
pg_bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
pg_lib=$("$pg_bindir/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)
pg_harness=$pg_lib/pgxs/src/test/perl

if [ ! -f "$pg_harness/PostgreSQL/Test/Cluster.pm" ]; then
    echo "prove.sh: PostgreSQL::Test::Cluster not found in $pg_harness" >&2
    echo "prove.sh: run 'make deps' (as root) first" >&2
    exit 1
fi

export PATH="$pg_bindir:$PATH"
export PERL5LIB="$pg_harness:$root/tests/t/lib${PERL5LIB:+:$PERL5LIB}"
export PG_REGRESS="$pg_lib/pgxs/src/test/regress/pg_regress"
export TESTDIR="$PGARK_BUILD/testrun"
export CMOCKA_MESSAGE_OUTPUT=TAP
export PGARK_BUILD PGARK_ROOT="$root"
# Each test gets a clean slate; the logs of the last run stay for a look afterwards.
rm -rf "$TESTDIR"
mkdir -p "$TESTDIR"

rel() {
    case "$1" in
    "$root"/*) printf '%s\n' "${1#"$root"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}

files=()
if [ -n "${TESTS:-}" ]; then
    read -r -a files <<<"$TESTS"
else
    for dir in "$PGARK_BUILD/tests/unit" "${PGARK_BUILD}-asan/tests/unit"; do
        for f in "$dir"/test_*; do
            [ -f "$f" ] && [ -x "$f" ] && files+=("$(rel "$f")")
        done
    done
    for f in tests/t/*.pl; do
        [ -f "$f" ] && files+=("$f")
    done
fi

if [ "${#files[@]}" -eq 0 ]; then
    echo "prove.sh: no test found (no unit test binaries in $PGARK_BUILD, no tests/t/*.pl)" >&2
    exit 1
fi

log="$TESTDIR/prove.log"
status=0
# shellcheck disable=SC2086 # PROVE_FLAGS holds several flags
prove -j"${PROVE_JOBS:-2}" --timer --failures --exec "$root/tests/harness/run-test" \
    ${PROVE_FLAGS:-} "${files[@]}" 2>&1 |
    tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "prove.sh: failed; server and test logs are in $TESTDIR/tmp_check/log" >&2
    exit "$status"
fi

# prove exits 0 when every file skipped ("Result: NOTESTS"): that tested nothing.
if ! grep -q '^Result: PASS' "$log" || grep -qE '^Files=[0-9]+, Tests=0,' "$log"; then
    echo "prove.sh: no test ran" >&2
    exit 1
fi
