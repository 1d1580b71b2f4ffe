# A backlog goes up to S3 several segments at once, the cursor moving in order.
#
# One posix and one S3 repository; the S3 one is reached through the fault proxy
# (tests/tools/s3proxy), which counts how many PUTs wait for their answer at once.
# s3rver is stopped while about ten segments of hard-to-compress WAL are written: the
# posix repository takes them, the spool keeps them for S3. s3rver comes back: the
# backlog drains with more than one PUT in flight at once (one at a time before the
# outage), "offsite"'s shipped LSN only ever grows, its cursor never names a segment
# the bucket lacks any earlier segment of, and every segment in the bucket is
# byte for byte what pg_wal holds.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $BUCKET = 'backlog';

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 4GB\nmax_wal_size = 4GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
my ($host, $port) = ($node->host, $node->port);
sub sql { return $node->safe_psql('postgres', $_[0]) }
sub current_seg { return seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_lsn()')) / $SEG)) }

my $s3 = s3rver_start();
s3_create_bucket($s3, $BUCKET);
my $tmp = PostgreSQL::Test::Utils::tempdir();

# The proxy: its port on its first line out, its counts in a file.
my $stats = "$tmp/proxy.stats";
my ($pout, $perr) = ('', '');
my $proxy = IPC::Run::start([ tool_bin('s3proxy'), $s3->{port}, $stats ],
	'<', \undef, '>', \$pout, '2>', \$perr);
ok(poll_until(sub { $proxy->pump_nb; $pout =~ /^(\d+)\n/ }), 'the proxy listens')
  or BAIL_OUT("s3proxy: $perr");
my ($pport) = $pout =~ /^(\d+)/;
sub proxy_stats
{
	my %h;
	return \%h unless -f $stats;
	for (split /\n/, slurp_file($stats)) { my ($k, $v) = split / /; $h{$k} = $v }
	return \%h;
}

my $sdir = "$tmp/spool/main";
my $local = "$tmp/repo_local";
my $via_proxy = { %$s3, endpoint => "http://127.0.0.1:$pport", port => $pport };
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $local ] ],
		s3 => [ [ offsite => $via_proxy, $BUCKET, { concurrency => 8 } ] ],
		conninfo => "host=$host port=$port",
		create_slot => 1),
	"$tmp/pgark.yaml");

sub status { return read_status($sdir) // {} }
sub repo_state { return repo_status($sdir, $_[0]) }

my $rx = receiver_start($config);
ok(poll_until(sub { status()->{connected} }), 'receiver streaming');
sql('CREATE TABLE bulk (id int, pad text)');
# md5 hex in random order: about half of it survives zstd, so each segment is some
# MiB to upload.
sub fill { sql("INSERT INTO bulk SELECT g, md5(random()::text) || md5(random()::text) "
	  . "FROM generate_series(1, $_[0]) g") }

my $first = current_seg();
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { (repo_state('offsite')->{last_segment} // '') ge $first }, 30),
	"offsite has $first");
is(proxy_stats()->{max_puts_open}, 1, 'one segment at a time: one PUT in flight at most');

# --- S3 down: a backlog ---------------------------------------------------------------

s3rver_stop($s3);
fill(400_000) for 1 .. 4;
my $last = current_seg();
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { (repo_state('local')->{last_segment} // '') ge $last }, 120),
	"\"local\" took the WAL up to $last");
ok(poll_until(sub { repo_state('offsite')->{last_error} }, 30), '"offsite" has an error');
my (undef, $from) = seg_of_name($first);
my (undef, $to) = seg_of_name($last);
cmp_ok($to - $from, '>=', 6, sprintf('a backlog of %d segments', $to - $from));

# --- S3 back: it drains --------------------------------------------------------------

$s3 = s3rver_start(dir => $s3->{dir}, port => $s3->{port});
my $objdir = "$s3->{dir}/$BUCKET/main/wal/00000001";
my ($prev_lsn, @backwards, @passed) = (0);
ok(poll_until(
		sub {
			my $off = repo_state('offsite');
			my $lsn = lsn_int($off->{shipped_lsn} // '0/0');
			push @backwards, "$off->{shipped_lsn} after " . lsn_text($prev_lsn) if $lsn < $prev_lsn;
			$prev_lsn = $lsn if $lsn > $prev_lsn;
			my $cur = $off->{last_segment} // '';
			if ($cur =~ /^[0-9A-F]{24}$/)
			{
				my (undef, $upto) = seg_of_name($cur);
				for my $segno ($from .. $upto)
				{
					my $name = seg_name(1, $segno);
					push @passed, "$cur passed $name" unless -e "$objdir/$name._S3rver_object";
				}
			}
			return $cur ge $last;
		},
		120),
	"\"offsite\" caught up to $last");
is_deeply(\@backwards, [], 'its shipped LSN never went back');
is(scalar(@passed), 0, 'its cursor never passed a segment the bucket lacked')
  or diag(join("\n", @passed[ 0 .. ($#passed < 9 ? $#passed : 9) ]));
note('the most PUTs in flight at once: ' . proxy_stats()->{max_puts_open});
cmp_ok(proxy_stats()->{max_puts_open}, '>', 1,
	'the backlog went up with more than one PUT in flight at once');
like(receiver_log($rx), qr/repository "offsite": a backlog of \d+ segments was pushed \d+ at once/,
	'the log says how many went at once');
ok(poll_until(sub { !grep { /^[0-9A-F]{24}$/ } slurp_dir($sdir) }, 30),
	'the spool drained: no complete segment left in it');

my @bad = wal_mismatches($pgwal, $from, $to, "config:$config:offsite", $local);
is_deeply(\@bad, [], sprintf('all %d segments %s..%s in the bucket and in "local" equal pg_wal',
		$to - $from + 1, $first, $last));
unlike(receiver_log($rx), qr/^\S+ error /m, 'no error line in the log');
is(receiver_stop($rx)->{rc}, 0, 'stopped');
$proxy->signal('TERM');
eval { $proxy->finish; 1 } or $proxy->kill_kill;
$node->stop;
done_testing();
