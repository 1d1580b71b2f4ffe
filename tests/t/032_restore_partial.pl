# A restore reaches the latest commit the receiver got: with `pgark receive` shipping a
# .partial copy of the segment being filled every second, a time target inside that
# segment (never completed, never switched) restores exactly the rows committed at or
# before it, because wal-fetch serves the partial zero-padded under the segment's name.
use strict;
use warnings;

use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $pgark = pgark_bin();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";

my $node = PostgreSQL::Test::Cluster->new('src');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "track_commit_timestamp = on\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$node->host]} port=@{[$node->port]} dbname=postgres"
    create_slot: true
    repos: [local]
    partial_upload_interval: 1s
EOF

mkdir("$tmp/spool") or die "mkdir: $!";    # the receiver creates only <spool>/<cluster>
my $rxlog = "$tmp/receive.log";
my $rx = fork() // die "fork: $!";
if ($rx == 0)
{
	open(STDOUT, '>>', $rxlog);
	open(STDERR, '>&', \*STDOUT);
	exec($pgark, '--config', $config, 'receive') or POSIX::_exit(127);
}
END { if ($rx) { kill('TERM', $rx); waitpid($rx, 0); } }

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

sql('CREATE TABLE t (id serial PRIMARY KEY, pad text)');
sql("INSERT INTO t (pad) SELECT 'x' FROM generate_series(1, 5)");
sql('SELECT pg_switch_wal()');

# With the receiver running, the backup's own WAL goes to the repository twice (the
# backup archives it, the receiver ships it): identical copies, no error either way.
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup while the receiver streams') or diag($r->{stderr});
# Stop times are whole seconds: the target below must be a second past the backup's end.
wait_past_stop_time((eval { decode_json($r->{stdout}) } // {})->{stop_time});

# Commits in the segment being filled: no switch from here on. (At a segment boundary
# pg_walfile_name() names the previous segment: ask after the first commit.)
my %ts;
my $cur;
for (1 .. 10)
{
	$cur //= sql('SELECT pg_walfile_name(pg_current_wal_lsn())') if %ts;
	my $id = sql("INSERT INTO t (pad) VALUES ('y') RETURNING id");
	$ts{$id} = sql("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000 || '|' ||
		pg_xact_commit_timestamp(xmin) FROM t WHERE id = $id");
}
is(sql('SELECT pg_walfile_name(pg_current_wal_lsn())'), $cur, "all in segment $cur");
my $flush = sql('SELECT pg_current_wal_lsn()');
ok(poll_until(sub { -e "$repo/main/wal/00000001/$cur.partial" && partial_covers($flush) }),
	"the partial copy of $cur reached the repository");
ok(!-e "$repo/main/wal/00000001/$cur", 'and the segment itself is not complete');

# Does the stored partial hold everything up to $flush? Its envelope header says how
# many bytes of the segment it carries (plaintext length, big-endian, at offset 8).
sub partial_covers
{
	my ($lsn) = @_;
	my ($hi, $lo) = map { hex } split m{/}, $lsn;
	my $want = $lo % (16 * 1024 * 1024);
	open(my $fh, '<', "$repo/main/wal/00000001/$cur.partial") or return 0;
	binmode($fh);
	read($fh, my $hdr, 16) == 16 or return 0;
	close($fh);
	my ($len) = unpack('Q>', substr($hdr, 8, 8));
	return $len >= $want;
}

my @ids = sort { $a <=> $b } keys %ts;
my $k = $ids[6];
my ($k_us, $k_ts) = split /\|/, $ts{$k};
my $restored = PostgreSQL::Test::Cluster->new('restored');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $restored->data_dir,
	'--target-time', $k_ts, '--target-action', 'promote', '--start', '--wait',
	'--port', $restored->port ]);
is($r->{rc}, 0, "restore to a commit inside the partial segment $cur") or diag($r->{stderr});
$restored->_update_pid(1);
my $expect = join(',', 1 .. 5, grep { (split /\|/, $ts{$_})[0] <= $k_us } @ids);
is($restored->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
	$expect, 'the rows committed at or before the target, from the partial segment');
like(slurp_file($restored->data_dir . '/pgark-start.log'),
	qr/restored log file "\Q$cur\E" from archive/, "the server replayed $cur from wal-fetch");
$restored->stop;

done_testing();
