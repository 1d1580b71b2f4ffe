# Crash safety under load.
#
# pgbench writes while the receiver (one posix and one S3 repository, partial
# uploads every second) is killed with SIGKILL at ten random moments and started
# again each time. Afterwards every segment from the first received to the last
# one the server finished is in both repositories and decodes byte for byte to the
# server's own copy in pg_wal: no gap, and no "different content" conflict from a
# segment shipped twice.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $KILLS = 10;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 8GB\nmax_wal_size = 8GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
my $host = $node->host;
my $port = $node->port;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $s3 = s3rver_start();
s3_create_bucket($s3, 'crash');

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $local = "$tmp/repo_local";
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $local ] ],
		s3 => [ [ offsite => $s3, 'crash', { retries => 3 } ] ],
		conninfo => "host=$host port=$port",
		create_slot => 1,
		partial => '1s'),
	"$tmp/pgark.yaml");

my $r = run_cmd([ 'pgbench', '-i', '-s', '1', '-q', '-h', $host, '-p', $port, 'postgres' ]);
is($r->{rc}, 0, 'pgbench -i -s 1');

# pgbench's own transactions write little WAL (some 300 kB/s here); one in twenty
# is a bulk insert, so that segments complete every few seconds and the kills fall
# on every phase: mid-segment, at a segment's completion, mid-upload.
sql('CREATE TABLE bulk (id int, pad text)');
my $bulk = write_file("$tmp/bulk.sql",
	"INSERT INTO bulk SELECT g, md5(g::text) || repeat('x', 150) FROM generate_series(1, 1000) g;\n");
my $first = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_lsn()')) / $SEG));
my ($pgb_out, $pgb_err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-c', '2', '-T', '300', '-b', 'tpcb-like@19', '-f', "$bulk\@1",
	  '-h', $host, '-p', $port, 'postgres' ],
	'<', \undef, '>', \$pgb_out, '2>', \$pgb_err);

my @logs;
my $rx = receiver_start($config, name => 'run');
push @logs, $rx;
ok(poll_until(sub { my $st = read_status($sdir); $st && $st->{connected} }),
	'receiver streaming under pgbench load');

my $lsn0 = lsn_int(sql('SELECT pg_current_wal_lsn()'));
my @delays;
my $killed = 0;
for my $i (1 .. $KILLS)
{
	my $from = lsn_int(sql('SELECT pg_current_wal_lsn()'));
	# A random moment, on purpose (not a wait for something): the kill must land anywhere
	# in the receiver's work.
	my $delay = 0.3 + rand(2.7);
	push @delays, sprintf('%.2f', $delay);
	usleep(int($delay * 1_000_000));
	# On a busy machine pgbench can be slow: each run of the receiver also sees at
	# least a quarter of a segment of new WAL, so that the kills span segments.
	poll_until(sub { lsn_int(sql('SELECT pg_current_wal_lsn()')) - $from >= $SEG / 4 }, 60);
	kill('KILL', $rx->{pid});
	$killed++ if (receiver_wait_exit($rx) // 0) == 128 + 9;
	$rx = receiver_start($config, name => 'run');
	push @logs, $rx;
}
is($killed, $KILLS, "killed with SIGKILL $KILLS times, after @delays s");
my $lsn1 = lsn_int(sql('SELECT pg_current_wal_lsn()'));
note(sprintf('WAL written meanwhile: %.1f MiB', ($lsn1 - $lsn0) / 1048576));
cmp_ok($lsn1 - $lsn0, '>', 2 * $SEG, 'the load wrote more than two segments meanwhile');

# TERM, not INT: started from a background job, pgbench inherits SIGINT ignored
$pgbench->signal('TERM');
eval { $pgbench->finish; 1 } or $pgbench->kill_kill;
note("pgbench: $pgb_out $pgb_err");

my $last = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_lsn()')) / $SEG));
sql('SELECT pg_switch_wal()');

ok( poll_until(
		sub {
			my ($l, $o) = (repo_status($sdir, 'local'), repo_status($sdir, 'offsite'));
			return ($l->{last_segment} // '') ge $last && ($o->{last_segment} // '') ge $last;
		},
		60),
	"both repositories shipped up to $last");

my @files = sort grep { /^[0-9A-F]{24}$/ } slurp_dir("$local/main/wal/00000001");
ok(@files && $files[0] le $first, "the local repository starts at or before $first ($files[0])");
my (undef, $from) = seg_of_name($files[0]);
my (undef, $to) = seg_of_name($last);
my (@bad, $checked);
for my $segno ($from .. $to)
{
	my $name = seg_name(1, $segno);
	next unless -f "$pgwal/$name";
	my $want = slurp_bytes("$pgwal/$name");
	for my $repo ($local, "config:$config:offsite")
	{
		my $got = repo_cat($repo, 'main', "wal/00000001/$name");
		$checked++;
		push @bad, ($repo eq $local ? 'local' : 'offsite') . "/$name: "
		  . ($got->{rc} ? $got->{stderr} : 'differs')
		  unless $got->{rc} == 0 && $got->{stdout} eq $want;
	}
}
is_deeply(\@bad, [], "every segment $files[0]..$last in both repositories equals pg_wal ($checked objects)");
cmp_ok($checked, '==', 2 * ($to - $from + 1), 'pg_wal still held every one of them');

my $all = join('', map { receiver_log($_) } @logs);
unlike($all, qr/different content/, 'no segment was shipped twice with different content');
unlike($all, qr/^\S+ error /m, 'no error in any of the logs');

is(receiver_stop($rx)->{rc}, 0, 'the last receiver stops cleanly');
$node->stop;
done_testing();
