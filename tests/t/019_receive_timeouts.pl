# A server that stops answering.
#
# The walsender stopped with SIGSTOP (a hung server or a dead network: the socket
# stays open, nothing comes): after the silence limit (60 s by default; 4 s here
# through PGARK_TEST_SILENCE_TIMEOUT_MS) the receiver takes the connection as lost
# and connects again. The postmaster stopped with SIGSTOP (the connection is
# accepted, the startup never answered): connect_timeout (10 s unless the conninfo
# says) ends the attempt and the receiver retries. SIGTERM while the walsender
# hangs: the receiver exits promptly. No gap afterwards.
#
# Times are asserted only as far as a loaded machine cannot upset them: the silence is
# not taken as lost before the limit from the last message (a lower bound), and well
# before the 60 s default (an upper bound with room); an idle connection is watched
# through the receiver's own pings, not for a fixed time.
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
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\nwal_sender_timeout = 0\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
my $host = $node->host;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ one => $repo ] ],
		conninfo => "host=$host port=" . $node->port,
		create_slot => 1),
	"$tmp/pgark.yaml");
my $rx = receiver_start($config, env => { PGARK_TEST_SILENCE_TIMEOUT_MS => 4000 });

sql('CREATE TABLE t (id int)');
sub finish_segment
{
	sql('INSERT INTO t SELECT g FROM generate_series(1, 1000) g');
	my $name = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG));
	sql('SELECT pg_switch_wal()');
	return $name;
}
sub walsender
{
	return sql("SELECT pid FROM pg_stat_replication WHERE application_name = 'pgark_main'");
}
sub streams { return scalar(() = receiver_log($rx) =~ /streaming WAL from/g) }

my $a = finish_segment();
ok(poll_until(sub { -f "$repo/main/wal/00000001/$a" }, 30), "$a archived");

# --- silence ---------------------------------------------------------------------------

my $ws = walsender();
ok($ws, "walsender pid $ws");
# The limit counts from the last message. One comes after $t0 for certain: the WAL of
# this insert, which the receiver has flushed before the walsender is stopped.
my $t0 = time();
sql('INSERT INTO t VALUES (0)');
my $lsn = sql('SELECT pg_current_wal_flush_lsn()');
ok(poll_until(sub { my $st = read_status("$tmp/spool/main"); $st && lsn_int($st->{flushed_lsn}) >= lsn_int($lsn) }),
	"the receiver has flushed $lsn");
kill('STOP', $ws);
ok(poll_until(sub { receiver_log($rx) =~ /no message from server/ }),
	'walsender stopped: the receiver notices the silence');
my $took = time() - $t0;
like(receiver_log($rx),
	qr/warn\s+no message from server "\Q$host\E:\d+" for 4 s: taking the connection as lost/,
	'and says so');
# (3.9: the receiver measures on the monotonic clock, this test on the wall clock.)
cmp_ok($took, '>=', 3.9, sprintf('after the limit of 4 s (%.1f s since a message), not before', $took));
# Far from the 60 s default: the configured limit is the one applied.
cmp_ok($took, '<', 30, 'and well before the default limit');
like(receiver_log($rx), qr/reconnecting in/, 'it reconnects');
kill('CONT', $ws);
ok(poll_until(sub { streams() >= 2 }), 'once the old walsender is gone, streaming resumes');

# An idle but healthy server sends nothing by itself (wal_sender_timeout = 0 here):
# at half the limit the receiver asks it for a reply, so it never takes it as lost.
# Watched through the receiver's messages to the server (pg_stat_replication.reply_time
# changes with each): idle for twice the limit and through at least three of them,
# whatever the load does to the pace.
my ($idle_from, %replies) = (time());
ok( poll_until(
		sub {
			my $at = sql("SELECT reply_time FROM pg_stat_replication WHERE application_name = 'pgark_main'");
			$replies{$at} = 1 if $at ne '';
			return time() - $idle_from >= 2 * 4 && keys(%replies) > 3;
		}),
	'idle for twice the limit, the receiver talking to the server');
note(sprintf('%d replies in %.1f s', scalar(keys %replies), time() - $idle_from));
is(scalar(() = receiver_log($rx) =~ /no message from server/g), 1,
	'the connection is kept (the server answers the ping)');
is(streams(), 2, 'no reconnection meanwhile');

# --- connect timeout ---------------------------------------------------------------------

my $postmaster = $node->{_pid};
$ws = walsender();
$t0 = time();
kill('STOP', $postmaster);
kill('TERM', $ws);
ok(poll_until(sub { receiver_log($rx) =~ /timeout expired/ }),
	'postmaster stopped: the connection attempt times out');
$took = time() - $t0;
# No attempt started before $t0; libpq counts connect_timeout in whole seconds.
cmp_ok($took, '>=', 9, sprintf('after %.1f s: connect_timeout 10 s, not less', $took));
cmp_ok($took, '<', 60, 'and it ends: not an attempt left hanging');
ok(receiver_alive($rx), 'and the receiver keeps trying');
kill('CONT', $postmaster);
ok(poll_until(sub { streams() >= 3 }), 'postmaster back: streaming resumes');

my $b = finish_segment();
ok(poll_until(sub { -f "$repo/main/wal/00000001/$b" }, 30), "$b archived");
my @bad;
my (undef, $from) = seg_of_name($a);
my (undef, $to) = seg_of_name($b);
for my $segno ($from .. $to)
{
	my $name = seg_name(1, $segno);
	my $got = repo_cat($repo, 'main', "wal/00000001/$name");
	push @bad, $name unless $got->{rc} == 0 && $got->{stdout} eq slurp_bytes("$pgwal/$name");
}
is_deeply(\@bad, [], "no gap: $a..$b equal pg_wal");

# --- SIGTERM while the walsender hangs ------------------------------------------------------

$ws = walsender();
kill('STOP', $ws);
my $stop = receiver_stop($rx);
kill('CONT', $ws);
is($stop->{rc}, 0, 'SIGTERM with a hung walsender: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));
like(receiver_log($rx), qr/did not end the stream within 3 s/, 'the log says the server did not answer');

$node->stop;
done_testing();
