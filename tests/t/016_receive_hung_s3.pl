# A hung S3 server (s3rver stopped with SIGSTOP: connections are accepted, nothing
# is answered) during a reload and during a stop.
#
# SIGHUP and SIGTERM must not wait for an upload that will take a long time to time
# out (30 s without progress): each leaves it behind, says so, and the reload happens,
# and the stream goes on, while the server is still stopped; SIGTERM exits 0. Both are
# bounded by receiver_stop_limit (20 s: the reload's 3 s grace; the stop's wait for the
# repository, its stop_timeout of 5 s, and 0.5 s; all well under the 30 s). The upload
# left behind keeps what it uses alive until it ends: when the server answers again it
# finishes without touching freed memory (run under the address sanitizer build when
# there is one), and the new shipper catches up.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $s3 = s3rver_start();
s3_create_bucket($s3, 'hung');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $local = "$tmp/repo_local";
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $local ] ],
		s3 => [ [ offsite => $s3, 'hung' ] ],
		conninfo => 'host=' . $node->host . ' port=' . $node->port,
		create_slot => 1,
		partial => '1s'),
	"$tmp/pgark.yaml");

my $asan = pgark_asan_bin();
note($asan ? "running the sanitizer build $asan" : 'no sanitizer build: running the plain one');
my %bin = $asan ? (bin => $asan) : ();

sql('CREATE TABLE t (id int)');
sub finish_segment
{
	sql('INSERT INTO t SELECT g FROM generate_series(1, 1000) g');
	my $name = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG));
	sql('SELECT pg_switch_wal()');
	return $name;
}
sub shipped
{
	my ($repo, $name) = @_;
	my $st = read_status($sdir) or return 0;
	my ($r) = grep { $_->{name} eq $repo } @{ $st->{repos} };
	return $r && ($r->{last_segment} // '') ge $name;
}

my $rx = receiver_start($config, %bin, name => 'hung');
# The sanitizer build starts slowly: let it reach the stream before WAL is made, or the
# segment finishes before the slot exists and is never streamed.
ok(poll_until(sub { my $st = read_status($sdir); $st && $st->{connected} }, 60),
	'the receiver is streaming');
my $a = finish_segment();
ok(poll_until(sub { shipped('local', $a) && shipped('offsite', $a) }, 30), "$a shipped to both repositories");

# --- SIGHUP while an upload hangs ------------------------------------------------------

kill('STOP', $s3->{pid});
my $b = finish_segment();
ok(poll_until(sub { shipped('local', $b) }), "s3rver stopped: \"local\" still gets $b");
ok(poll_until(sub { s3rver_unread_requests($s3) > 0 }),
	'the offsite shipper sent a request the stopped s3rver does not read');
ok(!shipped('offsite', $b), "\"offsite\" hangs on $b");

my $t0 = time();
kill('HUP', $rx->{pid});
ok(poll_until(sub { receiver_log($rx) =~ /configuration reloaded/ }), 'SIGHUP: configuration reloaded');
my $took = time() - $t0;
cmp_ok($took, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $took));
like(receiver_log($rx), qr/repository "offsite": abandoning the upload under way/,
	'the hung upload was left behind');
my $c = finish_segment();
ok(poll_until(sub { shipped('local', $c) }), "the reloaded receiver streams on: \"local\" gets $c");
ok(receiver_alive($rx), 'receiver running');

# The server answers again: the upload left behind ends (and frees what it used), the
# new shipper catches up.
kill('CONT', $s3->{pid});
ok(poll_until(sub { shipped('offsite', $c) }), "s3rver back: \"offsite\" catches up to $c");
ok(receiver_alive($rx), 'receiver still running after the old upload ended');

# --- SIGTERM while an upload hangs ------------------------------------------------------

kill('STOP', $s3->{pid});
my $d = finish_segment();
ok(poll_until(sub { shipped('local', $d) }), "s3rver stopped again: \"local\" gets $d");
ok(poll_until(sub { s3rver_unread_requests($s3) > 0 }), 'an offsite upload waits for an answer again');
my $abandoned = () = receiver_log($rx) =~ /repository "offsite": abandoning the upload under way/g;
my $stop = receiver_stop($rx);
kill('CONT', $s3->{pid});
is($stop->{rc}, 0, 'SIGTERM with a hung upload: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));
my $log = receiver_log($rx);
is(scalar(() = $log =~ /repository "offsite": abandoning the upload under way/g), $abandoned + 1,
	'the hung upload was left behind');
unlike($log, qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer report');

# Nothing was lost: a new receiver ships what the stopped one could not.
$rx = receiver_start($config, %bin, name => 'after');
ok(poll_until(sub { shipped('offsite', $d) }), "a new receiver ships $d to \"offsite\"");
my @bad;
my (undef, $from) = seg_of_name($a);
my (undef, $to) = seg_of_name($d);
for my $segno ($from .. $to)
{
	my $name = seg_name(1, $segno);
	my $want = slurp_bytes("$pgwal/$name");
	for my $repo ($local, "config:$config:offsite")
	{
		my $got = repo_cat($repo, 'main', "wal/00000001/$name");
		push @bad, "$repo/$name" unless $got->{rc} == 0 && $got->{stdout} eq $want;
	}
}
is_deeply(\@bad, [], "every segment $a..$d in both repositories equals pg_wal");
is(receiver_stop($rx)->{rc}, 0, 'stopped');
unlike(receiver_log($rx), qr/AddressSanitizer|runtime error|LeakSanitizer/, 'no sanitizer report');

$node->stop;
done_testing();
