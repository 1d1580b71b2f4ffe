# Synchronous receiving, the copy of the segment being filled, and SIGHUP.
#
# With synchronous: true and pgark_main in synchronous_standby_names a commit waits
# for the receiver: it does not return (nor become visible) while the receiver is
# stopped and returns once it is back; whatever the server was told is flushed is
# in the spool, equal to pg_wal. With partial_upload_interval 1h (each posix
# repository's own key here) the .partial copy in the repositories is not refreshed;
# SIGHUP applies a new interval (1s: each small commit is then covered, in far less than
# the old hour) and log level without losing WAL. (How soon a commit is covered is a
# latency figure, for tests/bench, not asserted here.) A burst of WAL, which the server
# sends in messages of at most 128 kB each saying it has more, is fsynced in a few
# flushes, not one or two messages at a time (pgark_receiver_flushes_total), and the
# spool still holds every acknowledged byte.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Time::HiRes qw(time);
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE TABLE t (id int)');
$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = 'pgark_main'");
$node->reload;
my $pgwal = $node->data_dir . '/pg_wal';

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my %repo = (one => "$tmp/repo1", two => "$tmp/repo2");
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my $config = "$tmp/pgark.yaml";
my $mport = free_tcp_port();

sub configure
{
	my (%o) = @_;
	write_config(
		"metrics_listen: 127.0.0.1:$mport\n"
		  . receiver_config(
			spool => "$tmp/spool",
			repos => [ [ one => $repo{one} ], [ two => $repo{two} ] ],
			conninfo => $conninfo,
			create_slot => 1,
			synchronous => 1,
			%o),
		$config);
}

# A commit run by psql in the background: { h, out, err }.
sub commit_in_background { return psql_start($node, 60, '-c', $_[0]) }

# The first $n bytes of a file.
sub head_bytes
{
	my ($path, $n) = @_;
	open(my $fh, '<:raw', $path) or die "could not read $path: $!";
	my $data = '';
	read($fh, $data, $n);
	close($fh);
	return $data;
}

# Bytes of the server's WAL from the start of its segment up to $lsn.
sub server_prefix
{
	my ($lsn) = @_;
	my $name = sql("SELECT pg_walfile_name('$lsn')");
	my $len = lsn_int($lsn) % $SEG;
	return ($name, $len, head_bytes("$pgwal/$name", $len));
}

# --- synchronous commit waits on the receiver --------------------------------------

configure(partial => '1h', local_partial => '1h', level => 'info');
my $rx = receiver_start($config);
ok(poll_until(sub { sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgark_main'") eq 'sync' }),
	'the receiver is the synchronous standby');
my $c = commit_in_background('INSERT INTO t VALUES (1)');
ok(poll_until(sub { psql_finished($c) }), 'with the receiver running a commit returns');
is_deeply([ $c->{rc}, $c->{out} ], [ 0, "INSERT 0 1\n" ], 'successfully: INSERT 0 1');

# Whatever the server was told is flushed is in the spool, byte for byte.
my $acked = sql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgark_main'");
my ($name, $len, $want) = server_prefix($acked);
ok(-f "$sdir/$name.partial", "the segment being filled is in the spool as $name.partial");
ok(head_bytes("$sdir/$name.partial", $len) eq $want,
	"the spool holds every byte acknowledged as flushed (up to $acked)");

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stopped (exit 0)');
$c = commit_in_background('INSERT INTO t VALUES (2)');
ok( poll_until(sub {
			sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") eq '1'
		}),
	'with the receiver stopped the commit waits for it (wait_event SyncRep)');
ok(!psql_finished($c), 'the commit has not returned');
is(sql('SELECT count(*) FROM t WHERE id = 2'), '0', 'nor is its row visible');
my $restart = sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'");
my $waiting_lsn = sql('SELECT pg_current_wal_flush_lsn()');
ok(lsn_int($restart) < lsn_int($waiting_lsn), 'the slot stays behind the waiting commit');

$rx = receiver_start($config);
ok(poll_until(sub { psql_finished($c) }), 'once the receiver is back the commit returns');
is_deeply([ $c->{rc}, $c->{out} ], [ 0, "INSERT 0 1\n" ], 'successfully: INSERT 0 1');
is(sql('SELECT count(*) FROM t WHERE id = 2'), '1', 'and its row is there');
$acked = sql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgark_main'");
($name, $len, $want) = server_prefix($acked);
ok(head_bytes("$sdir/$name.partial", $len) eq $want,
	"again the spool holds every acknowledged byte (up to $acked)");

# --- partial_upload_interval ------------------------------------------------------------

# The .partial in a repository: its plaintext, or undef while there is none.
sub repo_partial
{
	my ($r, $seg) = @_;
	return undef unless -f "$repo{$r}/main/wal/00000001/$seg.partial";
	my $got = repo_cat($repo{$r}, 'main', "wal/00000001/$seg.partial");
	return $got->{rc} == 0 ? $got->{stdout} : undef;
}

# True once both repositories' .partial holds the server's WAL up to $lsn.
sub partial_covers
{
	my ($lsn) = @_;
	my ($seg, $n, $server) = server_prefix($lsn);
	for my $r (qw(one two))
	{
		my $p = repo_partial($r, $seg);
		return 0 unless defined $p && length($p) >= $n && substr($p, 0, $n) eq $server;
	}
	return 1;
}

# With an interval of 1h, the copy made when streaming began is not refreshed.
ok(poll_until(sub { -f "$repo{one}/main/wal/00000001/$name.partial" }),
	'a first .partial copy is made when streaming starts');
# (The commit returns once the receiver has it: synchronous. A receiver that ignored the
# interval would copy it within a second or so; a negative check needs a window.)
sql('INSERT INTO t VALUES (3)');
my $lsn = sql('SELECT pg_current_wal_flush_lsn()');
ok(!poll_until(sub { partial_covers($lsn) }, 3),
	'partial_upload_interval 1h: a new commit is not copied within 3 s');
unlike(receiver_log($rx), qr/segment [0-9A-F]{24} received/,
	'log level info: no detail lines');

# SIGHUP: interval 1s, level detail.
configure(partial => '1s', local_partial => '1s', level => 'detail');
kill('HUP', $rx->{pid});
ok(poll_until(sub { receiver_log($rx) =~ /configuration reloaded from "\Q$config\E"/ }),
	'SIGHUP: configuration reloaded');
ok(poll_until(sub { sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgark_main'") eq 'sync' }),
	'and streaming again as the synchronous standby');
for my $i (4 .. 5)
{
	sql("INSERT INTO t VALUES ($i)");
	$lsn = sql('SELECT pg_current_wal_flush_lsn()');
	my $t0 = time();
	ok(poll_until(sub { partial_covers($lsn) }),
		"commit $i (up to $lsn): both repositories' .partial cover it");
	note(sprintf('covered after %.2f s', time() - $t0));
}

# The new log level: a completed segment is logged at detail.
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { receiver_log($rx) =~ /detail\s+segment \Q$seg\E received/ }),
	'log level detail after the reload');
ok(poll_until(sub { -f "$repo{one}/main/wal/00000001/$seg" && -f "$repo{two}/main/wal/00000001/$seg" }),
	"segment $seg archived in both repositories");
for my $r (qw(one two))
{
	ok(repo_cat($repo{$r}, 'main', "wal/00000001/$seg")->{stdout} eq slurp_bytes("$pgwal/$seg"),
		"repository \"$r\": $seg equals pg_wal across the reload");
}

# --- a burst is fsynced in few flushes --------------------------------------------------

# pgark_receiver_flushes_total and pgark_receiver_wal_messages_total, or () while the
# endpoint does not answer.
sub counts
{
	my $res = HTTP::Tiny->new(timeout => 30)->get("http://127.0.0.1:$mport/metrics");
	return () unless $res->{success};
	my %m = $res->{content} =~ /^pgark_receiver_(flushes|wal_messages)_total\{cluster="main"\} (\d+)$/mg;
	return defined $m{flushes} && defined $m{wal_messages} ? ($m{flushes}, $m{wal_messages}) : ();
}

# The receiver's flush position, as the server sees it.
sub acked { return sql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgark_main'") }

sql('CREATE TABLE burst (id int, pad text)');
my @c0 = counts();
is(scalar(@c0), 2, 'pgark_receiver_flushes_total and pgark_receiver_wal_messages_total are served');
# One statement: about 45 MB of WAL, which the server flushes a piece at a time as its
# WAL buffers fill and sends in messages of at most 128 kB, each saying how far it has
# flushed.
sql("INSERT INTO burst SELECT g, repeat('x', 500) FROM generate_series(1, 80000) g");
my $l1 = sql('SELECT pg_current_wal_flush_lsn()');
ok(poll_until(sub { lsn_int(acked()) >= lsn_int($l1) }), "the receiver flushed the burst (up to $l1)");
my @c1 = counts();
my ($nflush, $nmsg) = ($c1[0] - $c0[0], $c1[1] - $c0[1]);
note("burst: $nmsg messages, $nflush flushes");
# One fsync per message the socket ran dry after would be about as many as messages
# (24b5a1d: 386 and 1083 fsyncs for this burst); waiting for what the server said it is
# sending, well under (172 and 431 in the same runs).
cmp_ok($nflush, '<=', $nmsg * 2 / 3,
	"the burst's $nmsg messages took at most two flushes for three messages ($nflush)");
($name, $len, $want) = server_prefix(acked());
ok(head_bytes("$sdir/$name.partial", $len) eq $want,
	'the spool holds every byte acknowledged after the burst');

# A configuration that no longer loads: reported, the old one kept.
my $good = slurp_file($config);
write_config("clusters: [\n", $config);
kill('HUP', $rx->{pid});
ok(poll_until(sub { receiver_log($rx) =~ /error\s+configuration not reloaded: .*pgark\.yaml/ }),
	'SIGHUP with a broken configuration: "configuration not reloaded", naming the file');
$c = commit_in_background('INSERT INTO t VALUES (6)');
ok(poll_until(sub { psql_finished($c) }), 'the receiver goes on with the old one: a commit returns');
is_deeply([ $c->{rc}, $c->{out} ], [ 0, "INSERT 0 1\n" ], 'successfully: INSERT 0 1');
write_config($good, $config);

$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));

$node->stop;
done_testing();
