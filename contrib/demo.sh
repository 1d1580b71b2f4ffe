#!/bin/sh
# demo.sh — `make demo`: the main job of pgark on a throwaway cluster, end to end.
# About a minute; exit 0 only when the restored rows match the chosen moment.
#
# Installs what is missing, builds, starts a PostgreSQL 15 cluster and `pgark
# receive` with a local repository, takes a backup, runs a workload that records the
# commit time of every row, restores to a moment in the middle, and shows that the
# restored rows are exactly those committed by then. Everything runs as an
# unprivileged user (PostgreSQL refuses root) under /var/tmp/pgark-demo, and nothing
# is left running.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
user=${PGARK_DEMO_USER:-pgarktest}
dir=${PGARK_DEMO_DIR:-/var/tmp/pgark-demo}
bindir=/usr/lib/postgresql/15/bin

if [ "$(id -u)" -eq 0 ]; then
    sh "$root/tests/harness/deps.sh"
    if ! id -u "$user" >/dev/null 2>&1; then
        useradd --system --user-group --create-home --shell /usr/sbin/nologin "$user"
    fi
    rm -rf "$dir"
    mkdir -p "$dir/src"
    # Build in a copy the demo user owns (a checkout under /root is not readable).
    (cd "$root" && tar -cf - --exclude=./build --exclude=./build-asan --exclude=./.git \
        --exclude=./tests/harness/s3 .) | tar -C "$dir/src" -xf -
    chown -R "$user:$user" "$dir"
    exec runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$dir" \
        LANG=C.UTF-8 PGARK_DEMO_DIR="$dir" sh "$dir/src/contrib/demo.sh"
fi

cd "$dir"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building pgark"
make -C src -j2 --no-print-directory >build.log 2>&1 || { tail -20 build.log; exit 1; }
pgark="$dir/src/build/pgark"

port=54329
sock="$dir"
export PGHOST="$sock" PGPORT="$port" PGDATABASE=postgres
cleanup() {
    status=$?
    if [ -n "${rx:-}" ]; then
        kill "$rx" 2>/dev/null || true
        wait "$rx" 2>/dev/null || true
    fi
    "$bindir/pg_ctl" -D "$dir/restored" -m immediate stop >/dev/null 2>&1 || true
    "$bindir/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    exit "$status"
}
trap cleanup EXIT INT TERM

say "a throwaway PostgreSQL 15 cluster on $sock port $port"
rm -rf data restored spool repo
"$bindir/initdb" -D data -k -A trust >initdb.log 2>&1
cat >>data/postgresql.conf <<EOF
listen_addresses = ''
unix_socket_directories = '$sock'
port = $port
wal_level = replica
max_wal_senders = 5
track_commit_timestamp = on
EOF
"$bindir/pg_ctl" -D data -l server.log -w start >/dev/null

cat >pgark.yaml <<EOF
spool: $dir/spool
repos:
  local: { type: posix, path: $dir/repo }
clusters:
  demo:
    conninfo: "host=$sock port=$port dbname=postgres"
    create_slot: true
    repos: [local]
    partial_upload_interval: 1s
EOF
chmod 600 pgark.yaml # it is the user's own file: pgark warns when others can read one
mkdir -p spool
pg() { "$pgark" --config "$dir/pgark.yaml" "$@"; }

say "pgark receive (streaming WAL into the spool and the repository)"
"$pgark" --config "$dir/pgark.yaml" receive >receive.log 2>&1 &
rx=$!

say "pgark backup"
psql -qc "CREATE TABLE ledger (id serial PRIMARY KEY, note text, committed timestamptz)"
pg backup --no-progress

say "a workload: 40 transactions, one row each, a quarter of a second apart"
i=1
while [ $i -le 40 ]; do
    psql -qc "INSERT INTO ledger (note, committed) VALUES ('row $i', clock_timestamp())"
    if [ $i -eq 20 ]; then
        # The moment to come back to, and what the database held then (no other writer).
        sleep 0.2
        set -- $(psql -Atc "SELECT now(), count(*) FROM ledger" | tr '|' ' ')
        target="$1 $2"
        expected=$3
        sleep 0.2
    fi
    sleep 0.25
    i=$((i + 1))
done
echo "target: $target (after row 20 committed, before row 21)"

say "waiting until the repository holds the newest WAL"
lsn=$(psql -Atc "SELECT pg_current_wal_lsn()")
n=0
until pg info --json | grep -q '"lag_bytes": 0'; do
    n=$((n + 1))
    [ $n -lt 100 ] || { echo "the receiver did not catch up"; exit 1; }
    sleep 0.1
done
pg info

say "pgark restore --target-time '$target' --start --wait"
pg restore --pgdata "$dir/restored" --target-time "$target" --target-action promote \
    --start --port $((port + 1)) --wait

got=$(psql -p $((port + 1)) -Atc "SELECT count(*) FROM ledger")
last=$(psql -p $((port + 1)) -Atc "SELECT max(note) FROM ledger WHERE id = (SELECT max(id) FROM ledger)")
say "result"
echo "rows committed at or before the target in the source: $expected"
echo "rows in the restored cluster:                        $got (last: $last)"
if [ "$got" = "$expected" ]; then
    echo "the restored cluster is the database as it was at $target"
else
    echo "MISMATCH"
    exit 1
fi
