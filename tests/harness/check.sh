#!/bin/sh
# check.sh — `make check`.
#
# PostgreSQL's initdb and postgres refuse to run as root, and a checkout under /root is
# not readable by anyone else. So as root this installs what is missing (deps.sh),
# makes sure the unprivileged user pgarktest exists, copies the tree (without build
# output) into a scratch directory that user owns, and runs `make check-local` there
# as that user with a clean environment, passing its exit code through.
# Not root: checks the dependencies and runs `make check-local` right here.
#
# Environment: PGARK_CHECK_DIR (scratch copy, default /var/tmp/pgark-check),
# PGARK_CHECK_USER (default pgarktest), MAKE_JOBS (default 2); PROVE_JOBS,
# PROVE_FLAGS, TESTS, PG_TEST_NOCLEAN, PG_TEST_TIMEOUT_DEFAULT, CI, PGARK_TEST_MAJORS (the
# majors of the version matrix, e.g. "15 18"; default all) and PGARK_PG_CACHE (where
# the PostgreSQL bundles of other majors are installed; default the test user's
# ~/.cache/pgark/pg) are passed on.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
jobs=${MAKE_JOBS:-2}

sh "$root/tests/harness/deps.sh"

if [ "$(id -u)" -ne 0 ]; then
    cd "$root"
    exec make --no-print-directory -j"$jobs" check-local
fi

user=${PGARK_CHECK_USER:-pgarktest}
dest=${PGARK_CHECK_DIR:-/var/tmp/pgark-check}

if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --create-home --shell /usr/sbin/nologin "$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)

case "$dest" in
/*/*) ;;
*)
    echo "check.sh: refusing scratch directory \"$dest\": give an absolute path two levels deep" >&2
    exit 2
    ;;
esac
rm -rf "$dest"
mkdir -p "$dest"

# Copy the tree as it is (uncommitted work included) minus build output and .git.
cd "$root"
set --
for entry in * .[!.]*; do
    [ -e "$entry" ] || continue
    case "$entry" in
    build | build-* | build_* | .git | tmp_check) continue ;;
    esac
    set -- "$@" "$entry"
done
tar -cf - "$@" | tar -C "$dest" -xf -
chown -R "$user:$user" "$dest"

# Small filesystems for the disk-full tests (only root can mount them): a tiny one for
# the storage driver, one that holds two WAL segments for the receiver's spool.
smallfs=${dest}-fs
cleanup_fs() {
    umount "$smallfs/tiny" 2>/dev/null || true
    umount "$smallfs/spool" 2>/dev/null || true
}
cleanup_fs
trap cleanup_fs EXIT
mkdir -p "$smallfs/tiny" "$smallfs/spool"
fsenv=""
if mount -t tmpfs -o size=256k,mode=0700 tmpfs "$smallfs/tiny" &&
    mount -t tmpfs -o size=40m,mode=0700 tmpfs "$smallfs/spool"; then
    chown "$user:$user" "$smallfs/tiny" "$smallfs/spool"
    fsenv="PGARK_TEST_TINYFS=$smallfs/tiny PGARK_TEST_SPOOLFS=$smallfs/spool"
else
    echo "check.sh: could not mount small tmpfs filesystems: disk-full tests will be skipped" >&2
fi

echo "check.sh: running the suite as $user in $dest"
# shellcheck disable=SC2086 # fsenv holds zero or two assignments
set -- PATH=/usr/local/bin:/usr/bin:/bin HOME="$home" USER="$user" LANG=C.UTF-8 $fsenv
for var in PROVE_JOBS PROVE_FLAGS TESTS PG_TEST_NOCLEAN PG_TEST_TIMEOUT_DEFAULT CI \
    PGARK_TEST_MAJORS PGARK_PG_CACHE; do
    if eval "[ -n \"\${$var+x}\" ]"; then
        eval "set -- \"\$@\" \"$var=\${$var}\""
    fi
done

status=0
runuser -u "$user" -- env -i "$@" \
    make --no-print-directory -C "$dest" -j"$jobs" check-local || status=$?
exit "$status"
