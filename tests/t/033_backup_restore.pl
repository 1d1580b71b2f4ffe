# `pgark backup` then `pgark restore`, judged by PostgreSQL's own tools: a source with
# data checksums, pgbench data and a table and index in a tablespace is backed up with
# the real backup command and restored with --target immediate into a new data
# directory, the tablespace moved with --tablespace-map. Then:
#  - pg_verifybackup accepts the restored directory as it is, against the server's own
#    backup_manifest that restore leaves there (files, sizes, checksums, and the WAL
#    start..stop in pg_wal, parsed with pg_waldump);
#  - the cluster starts on a new port and promotes;
#  - every table's content equals the source's at the end of the backup (md5 of the
#    ordered rows; the source is idle from the backup to the comparison);
#  - pg_amcheck --all (heap and B-tree, all indexes) finds nothing;
#  - pg_checksums --check passes on the cleanly stopped restored cluster;
#  - after the restored cluster has lived (new tables in both tablespaces, a new
#    timeline), restore --delta over it brings back exactly the backup: pg_verifybackup
#    passes again (no extra file, in PGDATA or in the tablespace) and the rows are
#    the source's.
use strict;
use warnings;

use File::Path qw(make_path);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1, extra => ['--data-checksums']);
# Nothing writes behind the test's back between the backup and the comparison.
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
    backup: { chunk_size: 256KiB }
EOF

$src->command_ok([ 'pgbench', '-i', '-s', '2', '-q', 'postgres' ], 'pgbench -i -s 2');
my $tsdir = "$tmp/ts_source";
make_path($tsdir);
sql("CREATE TABLESPACE ts1 LOCATION '$tsdir'");
sql('CREATE TABLE in_ts (id int PRIMARY KEY USING INDEX TABLESPACE ts1, v text) TABLESPACE ts1');
sql("INSERT INTO in_ts SELECT g, md5(g::text) FROM generate_series(1, 30000) g");
sql('CREATE INDEX in_ts_v ON in_ts (v) TABLESPACE ts1');
sql('CREATE EXTENSION amcheck');
my $tsoid = sql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");

my %order = (
	pgbench_accounts => 'aid',
	pgbench_branches => 'bid',
	pgbench_tellers => 'tid',
	pgbench_history => 't::text',
	in_ts => 'id');

sub table_hashes
{
	my ($node) = @_;
	my %h;
	for my $t (sort keys %order)
	{
		$h{$t} = $node->safe_psql('postgres',
			"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY $order{$t})), '') FROM $t t");
	}
	return \%h;
}

# --- the backup -----------------------------------------------------------------------

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup') or diag($r->{stderr});
my $sum = decode_json($r->{stdout});
# Right at the end of the backup, nothing written since: what a restore must give back.
my $want = table_hashes($src);
note("source: $_ $want->{$_}") for sort keys %$want;
like($want->{pgbench_accounts}, qr/^200000:/, 'the source has the pgbench rows');
like($want->{in_ts}, qr/^30000:/, 'and the tablespace table');

# --- restore with --target immediate, the tablespace moved ------------------------------

my $dst = PostgreSQL::Test::Cluster->new('restored');
my $pgdata = $dst->data_dir;
my $tsnew = "$tmp/restored/tablespaces/ts1";    # parents created as needed
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $pgdata,
	'--target', 'immediate', '--target-action', 'promote',
	'--tablespace-map', "$tsoid=$tsnew" ]);
is($r->{rc}, 0, 'pgark restore --target immediate --tablespace-map') or diag($r->{stderr});
like($r->{stdout}, qr/restored backup "\Q$sum->{label}\E"/, 'the backup just taken');
is(readlink("$pgdata/pg_tblspc/$tsoid"), $tsnew, "pg_tblspc/$tsoid points to the new directory");
my $tsfile = sql("SELECT pg_relation_filepath('in_ts')");    # pg_tblspc/<oid>/PG_15_.../...
my $moved = $tsfile =~ s{^pg_tblspc/$tsoid/}{$tsnew/}r;
ok(-f $moved && (stat $moved)[7] == (stat "$tsdir/" . ($tsfile =~ s{^pg_tblspc/$tsoid/}{}r))[7],
	"in_ts's file is in the new tablespace directory, as large as the source's");
ok(-f "$pgdata/backup_manifest", 'the server\'s backup_manifest is in PGDATA');

# pg_verifybackup follows the pg_tblspc symlinks, so a moved tablespace verifies as
# well: the paths in backup_manifest are under pg_tblspc/<oid>/ either way. The
# configuration restore puts beside the data (pgark-restored-config/) is no file of the
# server's backup: pg_verifybackup is told to ignore it, as a DBA would.
ok(-f "$pgdata/pgark-restored-config/README", 'the backup\'s configuration is beside the data');
command_ok([ 'pg_verifybackup', '-i', 'pgark-restored-config', $pgdata ],
	'pg_verifybackup: files, checksums and the WAL of the backup are all there');
# Paranoia: it does check (a changed byte is found), so the pass above means something.
{
	my $f = "$pgdata/PG_VERSION";
	my $keep = slurp_file($f);
	write_file($f, "14\n", 0600);
	my $bad = run_cmd([ 'pg_verifybackup', '-n', '-i', 'pgark-restored-config', $pgdata ]);
	isnt($bad->{rc}, 0, 'pg_verifybackup fails on a changed file');
	like($bad->{stderr}, qr/checksum mismatch for file "PG_VERSION"/, 'naming it');
	write_file($f, $keep, 0600);
}

# --- start, compare, amcheck -----------------------------------------------------------

# postgresql.conf came from the source: its own port for the new cluster.
$dst->append_conf('postgresql.conf', 'port = ' . $dst->port . "\n");
$dst->start;
ok($dst->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the restored cluster reaches consistency and promotes');
like(slurp_file($dst->logfile), qr/recovery stopping after reaching consistency/,
	'stopped at consistency (--target immediate)');

my $got = table_hashes($dst);
for my $t (sort keys %order)
{
	is($got->{$t}, $want->{$t}, "$t: same rows as the source at the end of the backup");
}
is($dst->safe_psql('postgres',
	"SELECT pg_relation_filepath('in_ts') LIKE 'pg_tblspc/$tsoid/%'"),
	't', 'in_ts lives in the tablespace');

$r = run_cmd([ 'pg_amcheck', '--all', '--install-missing', '--heapallindexed',
	'--rootdescend', '-h', $dst->host, '-p', $dst->port ]);
is($r->{rc}, 0, 'pg_amcheck --all: exit 0') or diag($r->{stdout} . $r->{stderr});
is($r->{stdout}, '', 'pg_amcheck --all: no corruption reported');

$dst->stop;
command_ok([ 'pg_checksums', '--check', '-D', $pgdata ],
	'pg_checksums --check: every data page\'s checksum is right');
$r = run_cmd([ 'pg_checksums', '--check', '-D', $pgdata ]);
like($r->{stdout}, qr/Bad checksums:\s+0/, 'pg_checksums: 0 bad checksums');
like($r->{stdout}, qr/Blocks scanned:\s+([1-9]\d{3,})/, 'over thousands of blocks');

# --- the restored cluster lives on; restore --delta brings the backup back -------------

$dst->start;
$dst->safe_psql('postgres', <<'EOF');
CREATE TABLE later_ts TABLESPACE ts1 AS SELECT g FROM generate_series(1, 20000) g;
CREATE TABLE later AS SELECT g FROM generate_series(1, 20000) g;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 1000 = 0;
DELETE FROM in_ts WHERE id % 7 = 0;
CHECKPOINT;
EOF
my $later_ts = $dst->safe_psql('postgres', "SELECT pg_relation_filepath('later_ts')");
$dst->stop;
ok(-f "$pgdata/$later_ts", "a table created since lives in the tablespace ($later_ts)");

$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $pgdata, '--delta', '--json',
	'--target', 'immediate', '--target-action', 'promote',
	'--tablespace-map', "$tsoid=$tsnew" ]);
is($r->{rc}, 0, 'restore --delta over the restored cluster') or diag($r->{stderr});
my ($line) = $r->{stdout} =~ /^(\{.*\})$/m;
my $delta = eval { decode_json($line) } // {};
cmp_ok($delta->{files_removed} // 0, '>=', 2, "files not in the backup removed ($delta->{files_removed})");
cmp_ok($delta->{files_written} // 1e9, '<', $delta->{files} // 0,
	"only changed files rewritten ($delta->{files_written} of $delta->{files})");
ok(!-e "$pgdata/$later_ts", 'the new table\'s file in the tablespace is gone');
command_ok([ 'pg_verifybackup', '-i', 'pgark-restored-config', $pgdata ],
	'pg_verifybackup passes after the delta restore');

# postgresql.conf is the backup's again: the port once more.
$dst->append_conf('postgresql.conf', 'port = ' . $dst->port . "\n");
$dst->start;
ok($dst->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'it promotes again');
$got = table_hashes($dst);
is_deeply($got, $want, 'every table equals the source\'s at the end of the backup again');
is($dst->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname IN ('later', 'later_ts')"),
	'0', 'the tables created since are gone');
$dst->stop;
command_ok([ 'pg_checksums', '--check', '-D', $pgdata ], 'pg_checksums --check after the delta restore');

$src->stop;
done_testing();
