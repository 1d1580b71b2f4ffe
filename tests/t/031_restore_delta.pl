# The corruption runbook: a page of a table is damaged in the source cluster (data
# checksums on); the server is stopped and `pgark restore --delta` brings the ORIGINAL
# data directory back to a time before the damage, starting it with --start --wait.
# The cluster starts, pg_amcheck is clean, the rows are those of the target, only the
# files that changed since the backup were rewritten, and the timeline history file the
# promoted cluster archives is served by wal-fetch.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use PgarkTest;

my $pgark = pgark_bin();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $node = PostgreSQL::Test::Cluster->new('src');
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$node->host]} port=@{[$node->port]} dbname=postgres"
    repos: [local]
EOF

$node->init(allows_streaming => 1, extra => ['--data-checksums']);
$node->append_conf('postgresql.conf', <<"EOF");
track_commit_timestamp = on
archive_mode = on
archive_command = '"$pgark" --config "$config" wal-push "%p"'
EOF
$node->start;

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub wait_archived
{
	my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	$node->poll_query_until('postgres',
		"SELECT last_archived_wal >= '$seg' FROM pg_stat_archiver")
	  or die "segment $seg not archived";
	return;
}

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, repeat('p', 200) FROM generate_series(1, 20000) g");
sql('CREATE TABLE other AS SELECT g FROM generate_series(1, 1000) g');
wait_archived();

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup') or diag($r->{stderr});
# Stop times are whole seconds: the targets below must be a second past the backup's end.
wait_past_stop_time((eval { decode_json($r->{stdout}) } // {})->{stop_time});

# Changes after the backup, one row per transaction; the target is the 5th.
my @ts;
for my $i (1 .. 10)
{
	sql("UPDATE t SET pad = 'changed $i' WHERE id = $i");
	push @ts, sql("SELECT pg_xact_commit_timestamp(xmin) FROM t WHERE id = $i");
}
my $target = $ts[4];
my $expect = sql("SELECT md5(string_agg(id || ':' || CASE WHEN id <= 5 THEN 'changed ' || id
	ELSE repeat('p', 200) END, ',' ORDER BY id)) FROM generate_series(1, 20000) id");
wait_archived();

# --- the damage -------------------------------------------------------------------------

my $relpath = $node->data_dir . '/' . sql("SELECT pg_relation_filepath('t')");
$node->stop;
{
	open(my $fh, '+<', $relpath) or die "$relpath: $!";
	binmode($fh);
	seek($fh, 3 * 8192 + 300, 0);
	print $fh 'CORRUPTED' x 8;
	close($fh);
}
$node->start;
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM t');
like($err, qr/invalid page|checksum/, 'the damaged page is detected by the server');
$node->stop;

# --- the restore, in place -----------------------------------------------------------------

$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
	'--target-time', $target, '--target-action', 'promote', '--delta', '--json',
	'--start', '--wait' ]);
is($r->{rc}, 0, 'restore --delta --start --wait into the original directory')
  or diag($r->{stderr});
my ($json_line) = $r->{stdout} =~ /^(\{.*\})$/m;
my $sum = decode_json($json_line // '{}');
cmp_ok($sum->{files_written} // 0, '>', 0, "delta rewrote $sum->{files_written} files");
cmp_ok($sum->{files_written} // 1e9, '<', $sum->{files} / 4,
	"only the changed ones, out of $sum->{files}");
cmp_ok($sum->{bytes_written} // 1e12, '<', 5 * 1024 * 1024, 'a few MiB, not the whole backup');
like($r->{stdout}, qr/recovery promoted: last replayed transaction committed at \S+ \S+, replayed up to LSN [0-9A-F]+\/[0-9A-F]+; recovery took/,
	'--wait reports the point reached and the time taken');

$node->_update_pid(1);
is(sql("SELECT md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"), $expect,
	'the rows are those of the target');
command_ok([ 'pg_amcheck', '--install-missing', '--heapallindexed', '-h', $node->host,
	'-p', $node->port, 'postgres' ], 'pg_amcheck is clean');

# The promoted cluster archives its new timeline's history file: wal-fetch serves it.
sql('SELECT pg_switch_wal()');
ok($node->poll_query_until('postgres',
	"SELECT last_archived_wal IS NOT NULL AND last_archived_wal LIKE '00000002%' FROM pg_stat_archiver"),
	'timeline 2 is archived');
$r = run_pgark([ '--config', $config, 'wal-fetch', '00000002.history', "$tmp/RECOVERYHISTORY" ]);
is($r->{rc}, 0, 'wal-fetch serves a history file');
is(slurp_file("$tmp/RECOVERYHISTORY"), slurp_file($node->data_dir . '/pg_wal/00000002.history'),
	'equal to the server\'s');

# --- life goes on on timeline 2: a backup there, and a restore of it ---------------------

$r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup of the promoted cluster') or diag($r->{stderr});
my $b2 = eval { decode_json($r->{stdout}) } // {};
is($b2->{timeline}, 2, 'the backup is on timeline 2');
sql("UPDATE t SET pad = 'on timeline 2' WHERE id > 19990");
my $last = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok($node->poll_query_until('postgres', "SELECT last_archived_wal >= '$last' FROM pg_stat_archiver"),
	"$last archived");
my $expect2 = sql("SELECT md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t");

my $fresh = PostgreSQL::Test::Cluster->new('fresh');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $fresh->data_dir,
	'--start', '--wait', '--port', $fresh->port ]);
is($r->{rc}, 0, 'restore to the latest WAL into a new directory') or diag($r->{stderr});
like($r->{stdout}, qr/restored backup "\Q$b2->{label}\E"/, 'from the timeline 2 backup');
$fresh->_update_pid(1);
is($fresh->safe_psql('postgres', "SELECT md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	$expect2, 'the rows equal the source\'s, changes on timeline 2 included');
like(slurp_file($fresh->data_dir . '/pgark-start.log'), qr/restored log file "\Q$last\E" from archive/,
	"$last replayed from the archive");
$fresh->stop;

$node->stop;
done_testing();
