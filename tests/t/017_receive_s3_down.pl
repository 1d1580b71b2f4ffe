# The S3 server down for a while (30 s at least) while `pgark receive` runs under load.
#
# One posix and one S3 repository, partial uploads every second, pgbench writing.
# s3rver is stopped (its data directory kept) for at least 30 s, and until S3 lacks two
# segments more than the posix repository has received meanwhile: the posix repository keeps
# receiving, the spool grows with what S3 lacks, status.json says why. s3rver is
# started again on the same port and data directory: the spool drains, and every
# segment is in the bucket, byte for byte what pg_wal holds.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $OUTAGE = 30;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 8GB\nmax_wal_size = 8GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
my ($host, $port) = ($node->host, $node->port);
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $s3 = s3rver_start();
s3_create_bucket($s3, 'down');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $local = "$tmp/repo_local";
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $local ] ],
		s3 => [ [ offsite => $s3, 'down' ] ],
		conninfo => "host=$host port=$port",
		create_slot => 1,
		partial => '1s'),
	"$tmp/pgark.yaml");

sub status { return read_status($sdir) // {} }
sub repo_state { return repo_status($sdir, $_[0]) }

is(run_cmd([ 'pgbench', '-i', '-s', '1', '-q', '-h', $host, '-p', $port, 'postgres' ])->{rc},
	0, 'pgbench -i -s 1');
sql('CREATE TABLE bulk (id int, pad text)');
my $bulk = write_file("$tmp/bulk.sql",
	"INSERT INTO bulk SELECT g, md5(g::text) || repeat('x', 150) FROM generate_series(1, 1000) g;\n");
my $rx = receiver_start($config);
ok(poll_until(sub { status()->{connected} }), 'receiver streaming');

my ($pgb_out, $pgb_err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-c', '2', '-T', '300', '-b', 'tpcb-like@39', '-f', "$bulk\@1",
	  '-h', $host, '-p', $port, 'postgres' ],
	'<', \undef, '>', \$pgb_out, '2>', \$pgb_err);
my $first = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_lsn()')) / $SEG));
ok(poll_until(sub { (repo_state('offsite')->{last_segment} // '') ge $first }),
	"both repositories ship under load (offsite has $first)");

# --- S3 down ---------------------------------------------------------------------------

s3rver_stop($s3);
my $t_down = time();
my $local0 = repo_state('local')->{last_segment} || '(none)';
my $spool0 = status()->{spool_bytes};
# the segment being filled when S3 went (local may not have shipped one yet)
my $seg0 = int(lsn_int(status()->{flushed_lsn}) / $SEG);
note("s3rver stopped; local at $local0, spool $spool0 bytes");
ok(poll_until(sub { repo_state('offsite')->{last_error} }), 'status.json: "offsite" has an error');
like(repo_state('offsite')->{last_error}, qr/127\.0\.0\.1:$s3->{port}/,
	'which names the endpoint it cannot reach');
like(receiver_log($rx), qr/warn\s+repository "offsite": /, 'the log warns about "offsite"');
# The outage lasts $OUTAGE s, and until what it does shows: "local" has the two segments
# completed since S3 went, the spool and "offsite"'s lag are two segments larger (how
# long that takes depends on how fast pgbench runs on this machine). The spool is
# sampled meanwhile.
my $max_spool = $spool0;
my $shows = poll_until(
	sub {
		my $st = status();
		$max_spool = $st->{spool_bytes} if ($st->{spool_bytes} // 0) > $max_spool;
		my ($local) = grep { $_->{name} eq 'local' } @{ $st->{repos} // [] };
		my ($offsite) = grep { $_->{name} eq 'offsite' } @{ $st->{repos} // [] };
		return 0 unless $local && ($local->{last_segment} // '') =~ /^[0-9A-F]{24}$/;
		my (undef, $no) = seg_of_name($local->{last_segment});
		return time() - $t_down >= $OUTAGE
		  && $no >= $seg0 + 1
		  && $max_spool >= $spool0 + 2 * $SEG
		  && ($offsite->{lag_bytes} // 0) >= 2 * $SEG;
	});
my $outage = time() - $t_down;
my $local1 = repo_state('local')->{last_segment};
ok($shows, sprintf('during %.0f s without S3, "local" kept receiving (%s -> %s)', $outage, $local0, $local1));
cmp_ok($max_spool, '>=', $spool0 + 2 * $SEG,
	sprintf('the spool buffered what S3 lacks (%.0f -> %.0f MiB)', $spool0 / 1048576, $max_spool / 1048576));
is(repo_state('local')->{last_error}, undef, '"local" has no error');
my $off = repo_state('offsite');
cmp_ok($off->{lag_bytes}, '>=', 2 * $SEG, "\"offsite\" lags $off->{lag_bytes} bytes");
# (Half: status.json is written about once a second, and later on a loaded machine.)
cmp_ok($off->{lag_seconds}, '>=', $outage / 2,
	sprintf('and %s s: about as long as S3 has been down (%.0f s)', $off->{lag_seconds}, $outage));
ok(receiver_alive($rx), 'the receiver runs on');

# --- S3 back ---------------------------------------------------------------------------

my $port0 = $s3->{port};
$s3 = s3rver_start(dir => $s3->{dir}, port => $port0);
is($s3->{port}, $port0, "s3rver restarted on port $port0 with the same data");
# TERM, not INT: started from a background job, pgbench inherits SIGINT ignored
$pgbench->signal('TERM');
eval { $pgbench->finish; 1 } or $pgbench->kill_kill;
my $last = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_lsn()')) / $SEG));
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { (repo_state('offsite')->{last_segment} // '') ge $last }),
	"\"offsite\" caught up to $last");
ok(poll_until(sub { !defined repo_state('offsite')->{last_error} }), 'and its error is cleared');
like(receiver_log($rx), qr/repository "offsite" is reachable again/, 'the log says it recovered');
ok(poll_until(sub { !grep { /^[0-9A-F]{24}$/ } slurp_dir($sdir) }),
	'the spool drained: no complete segment left in it');

my (undef, $from) = seg_of_name($first);
my (undef, $to) = seg_of_name($last);
my @bad = wal_mismatches($pgwal, $from, $to, "config:$config:offsite", $local);
is_deeply(\@bad, [], sprintf('all %d segments %s..%s in the bucket and in "local" equal pg_wal',
		$to - $from + 1, $first, $last));
unlike(receiver_log($rx), qr/^\S+ error /m, 'no error line in the log');
is(receiver_stop($rx)->{rc}, 0, 'stopped');
$node->stop;
done_testing();
