#!/bin/sh
# deps.sh — install what building and testing pgark needs on Debian 12.
#
# python3-swift is OpenStack Swift's code: tests/harness/swift-s3.py runs a one-node
# Swift with its S3 API from it, in one process (no Swift daemon or service is installed).
#
# As root: installs only the missing packages (one apt-get update, and only when
# something is missing; --no-upgrade so present packages stay as they are), then
# s3rver into tests/harness/s3 when absent. Not root: prints the apt-get line for
# what is missing and exits 1. Quick and silent when everything is there.
#
# `deps.sh bench` adds what `make bench` compares pgark with (pgbackrest).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
s3dir="$root/tests/harness/s3"
s3rver_version=3.7.1

# clang and libclang-rt-14-dev (the sanitizer and libFuzzer runtimes, which Debian 12's
# clang-14 only recommends): the sanitizer build and the harnesses of tests/fuzz.
# clang-format: tests/t/002_tree.pl checks that the tree is as `make format` leaves it.
# chromium: tests/t/071_report.pl renders report --html in it, headless.
# prometheus: its promtool checks the metrics and the sample alerting rules (tests/t/080).
# systemd (systemd-analyze verify), man-db (man -l) and zsh (zsh -n): the unit files, the man
# page and the completion scripts (tests/t/081, 082).
# dpkg-dev, debhelper and lintian: `make deb` (dpkg-buildpackage, dh) and its check
# (tests/t/085).
packages="build-essential make pkg-config libpq-dev libzstd-dev libssl-dev libyaml-dev
libcurl4-openssl-dev libjansson-dev libcmocka-dev postgresql-15 libipc-run-perl zstd
clang libclang-rt-14-dev clang-format python3-swift chromium prometheus
systemd man-db zsh dpkg-dev debhelper lintian"
case "${1:-}" in
"") ;;
bench) packages="$packages pgbackrest" ;;
*)
    echo "deps: unknown argument \"$1\" (expected nothing or \"bench\")" >&2
    exit 2
    ;;
esac

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=""
for p in $packages; do
    installed "$p" || missing="$missing $p"
done
# Node may come from another source than Debian (NodeSource bundles npm in its
# nodejs); what matters is the commands, and Debian's npm would conflict with it.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
missing=${missing# }

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing packages; as root run:" >&2
        echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-upgrade $missing" >&2
        exit 1
    fi
    case " $missing " in
    *" postgresql-15 "*)
        # Debian would otherwise create and start a cluster on port 5432.
        conf=/etc/postgresql-common/createcluster.conf
        mkdir -p /etc/postgresql-common
        if [ -f "$conf" ] && grep -q '^[[:space:]]*#*[[:space:]]*create_main_cluster' "$conf"; then
            sed -i 's/^[[:space:]]*#*[[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
        else
            echo "create_main_cluster = false" >>"$conf"
        fi
        ;;
    esac
    echo "deps: installing $missing"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-upgrade $missing
fi

if [ ! -f "$s3dir/node_modules/s3rver/bin/s3rver.js" ]; then
    echo "deps: installing s3rver@$s3rver_version into $s3dir"
    mkdir -p "$s3dir"
    npm install --prefix "$s3dir" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "s3rver@$s3rver_version"
fi
