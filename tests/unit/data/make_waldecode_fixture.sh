#!/bin/bash
# make_waldecode_fixture.sh — regenerate the WAL fixture of test_waldecode.c.
#
# Runs a throwaway PostgreSQL 15 cluster (1 MiB segments) with a workload of known
# commits, an abort, a restore point, a prepared transaction and a commit record
# positioned to cross a segment boundary, then copies the completed segments out and
# prints what the test must find (xids, commit times from pg_xact_commit_timestamp,
# LSNs from pg_waldump). Must run as an unprivileged user (initdb refuses root):
#   runuser -u pgwaldec -- bash make_waldecode_fixture.sh OUTDIR
set -eu
OUT=${1:?usage: make_waldecode_fixture.sh OUTDIR}
BIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PORT=${PGPORT:-5477}
WORK=$(mktemp -d)
trap '"$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

"$BIN/initdb" -D "$WORK/data" --wal-segsize=1 -k -A trust -U postgres >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
track_commit_timestamp = on
max_prepared_transactions = 5
autovacuum = off
checkpoint_timeout = 1h
max_wal_size = 1GB
fsync = off
CONF
"$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w start >/dev/null
PSQL="$BIN/psql -X -q -At -v ON_ERROR_STOP=1 -h $WORK -p $PORT -U postgres -d postgres"

# Start the fixture on a fresh segment.
$PSQL -c "create table t (id int, v text)" -c "checkpoint"
FIRSTSEG=$($PSQL -c "select pg_walfile_name(pg_switch_wal())")
SWITCH0=$($PSQL -c "select pg_current_wal_insert_lsn()")
echo "# segment before the fixture: $FIRSTSEG"

: >"$WORK/xids"
for i in 1 2 3 4 5; do
    $PSQL -c "begin" -c "insert into t values ($i, 'row $i')" \
          -c "select txid_current()" -c "commit" >>"$WORK/xids"
done
# A restore point bracketed by clock readings, then a drop.
$PSQL -c "select clock_timestamp()" >"$WORK/rp_before"
$PSQL -c "select pg_create_restore_point('before_drop')" >"$WORK/rp_end"
$PSQL -c "select clock_timestamp()" >"$WORK/rp_after"
$PSQL -c "create table dropme (a int)" -c "insert into dropme values (1)" -c "drop table dropme"
# An aborted transaction with an xid.
$PSQL -c "begin" -c "insert into t values (-1, 'aborted')" -c "select txid_current()" \
      -c "rollback" >"$WORK/abort_xid"
# A prepared transaction, committed.
$PSQL -c "begin" -c "insert into t values (100, 'prepared')" -c "select txid_current()" \
      -c "prepare transaction 'p1'" >"$WORK/prep_xid"
$PSQL -c "commit prepared 'p1'"
# A transaction with 3000 subtransactions whose commit record (about 12 KiB) is placed
# to start a few KiB before a segment boundary.
$PSQL >"$WORK/big_xid" <<SQL
begin;
do \$\$ begin for i in 1..3000 loop begin insert into t values (i, 'sub'); exception when others then null; end; end loop; end \$\$;
select txid_current();
select pg_logical_emit_message(false, 'pad', repeat('x', greatest(0, d - 6000 - (d / 8192) * 24 - 64)::int))
  from (select (1048576 - (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::numeric % 1048576) as d) s \gset
commit;
SQL
for i in 6 7; do
    $PSQL -c "begin" -c "insert into t values ($i, 'row $i')" \
          -c "select txid_current()" -c "commit" >>"$WORK/xids"
done
LASTSEG=$($PSQL -c "select pg_walfile_name(pg_switch_wal())")
echo "# last fixture segment: $LASTSEG"

echo "# xid commit_time(us since 2000-01-01)"
cat "$WORK/xids" "$WORK/prep_xid" "$WORK/big_xid" | while read -r x; do
    $PSQL -c "select $x, ((extract(epoch from pg_xact_commit_timestamp('$x'::xid)) - 946684800) * 1000000)::bigint"
done
echo "# abort xid: $(cat "$WORK/abort_xid")"
echo "# restore point end lsn: $(cat "$WORK/rp_end")"
for f in rp_before rp_after; do
    echo "# $f: $($PSQL -c "select ((extract(epoch from '$(cat "$WORK/$f")'::timestamptz) - 946684800) * 1000000)::bigint")"
done
echo "# system identifier: $($PSQL -c "select system_identifier from pg_control_system()")"
echo "# wal after first switch: $SWITCH0"

# Copy every segment from FIRSTSEG's successor to LASTSEG (before a shutdown
# checkpoint recycles them).
$PSQL -c "select pg_current_wal_lsn()" >/dev/null
for path in "$WORK"/data/pg_wal/[0-9A-F]*; do
    f=${path##*/}
    if [[ ${#f} -eq 24 && "$f" > "$FIRSTSEG" && ! "$f" > "$LASTSEG" ]]; then
        cp "$path" "$OUT/$f"
    fi
done
"$BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null
SEGS=("$OUT"/[0-9A-F]*)
"$BIN/pg_waldump" -p "$OUT" "${SEGS[0]##*/}" "${SEGS[-1]##*/}" >"$OUT/waldump.txt" 2>&1 || true
