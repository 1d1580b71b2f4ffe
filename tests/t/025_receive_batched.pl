# clusters.NAME.synchronous acts (issue 19 item 4).
#
# synchronous: true, pgark_main in synchronous_standby_names: a commit made while the
# receiver is frozen (SIGSTOP) waits (wait_event SyncRep, row not visible) and returns
# once it runs again (SIGCONT), its WAL then in the spool byte for byte.
#
# synchronous: false (flush_interval 1s here): under a steady trickle of commits the
# server sees the flush position move about once a second, not with every commit as it
# does with synchronous: true under the same load; a receiver killed (SIGKILL) in the
# middle loses nothing it reported flushed (the slot's restart_lsn is covered by the
# spool); and when it stops (SIGTERM) the spool holds every byte the server had sent and
# the slot says so.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE TABLE t (id int)');
my $pgwal = $node->data_dir . '/pg_wal';

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my $config = "$tmp/pgark.yaml";

sub configure
{
	my ($sync, $extra) = @_;
	write_config(
		receiver_config(
			spool => "$tmp/spool",
			repos => [ [ one => "$tmp/repo1" ] ],
			conninfo => $conninfo,
			create_slot => 1,
			synchronous => $sync,
			level => 'info',
			extra => $extra),
		$config);
}

sub run_bg { return psql_start($node, 300, @_) }

# A steady trickle of small commits (one every ~10 ms) until killed.
sub load_start
{
	return run_bg('-c',
		'DO $$BEGIN FOR i IN 1..1000000 LOOP INSERT INTO t VALUES (i); COMMIT; '
		  . 'PERFORM pg_sleep(0.01); END LOOP; END$$');
}

sub load_stop
{
	my ($c) = @_;
	$c->{h}->kill_kill;
	$c->{h}->finish;
}

sub head_bytes
{
	my ($path, $n) = @_;
	open(my $fh, '<:raw', $path) or die "could not read $path: $!";
	my $data = '';
	read($fh, $data, $n);
	close($fh);
	return $data;
}

# Whether the spool holds the server's WAL from the start of $lsn's segment up to $lsn,
# byte for byte (the segment being filled, or complete and not yet shipped away).
sub spool_covers
{
	my ($lsn) = @_;
	my $name = sql("SELECT pg_walfile_name('$lsn')");
	my $len = lsn_int($lsn) % $SEG;
	my $want = head_bytes("$pgwal/$name", $len);
	for my $f ("$sdir/$name.partial", "$sdir/$name")
	{
		return head_bytes($f, $len) eq $want if -f $f;
	}
	note("neither $name.partial nor $name is in the spool");
	return 0;
}

sub app_flush
{
	return sql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgark_main'");
}

sub streaming
{
	return poll_until(sub { app_flush() ne '' });
}

# Sample the server's view of the receiver's flush position every 20 ms for about
# $seconds seconds (one session); returns (advances, elapsed seconds).
sub flush_advances
{
	my ($seconds) = @_;
	my $n = int($seconds / 0.02);
	my $script = '';
	$script .= "SELECT extract(epoch FROM clock_timestamp()), flush_lsn FROM pg_stat_replication "
	  . "WHERE application_name = 'pgark_main';\nSELECT pg_sleep(0.02);\n"
	  for 1 .. $n;
	my @rows = grep { /\|/ } split /\n/, sql($script);
	my ($advances, $last) = (0, undef);
	for my $r (@rows)
	{
		my (undef, $lsn) = split /\|/, $r;
		$advances++ if defined $last && $lsn ne $last;
		$last = $lsn;
	}
	my ($t0) = split /\|/, $rows[0];
	my ($t1) = split /\|/, $rows[-1];
	return ($advances, $t1 - $t0);
}

# --- synchronous: true: a commit waits for the receiver's fsync ----------------------

configure(1);
sql("ALTER SYSTEM SET synchronous_standby_names = 'pgark_main'");
$node->reload;
my $rx = receiver_start($config);
my @receivers_seen = ($rx);
ok(poll_until(sub { sql("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgark_main'") eq 'sync' }),
	'synchronous: true: the receiver is the synchronous standby');
like(receiver_log($rx), qr/\(1 repositories, synchronous\)/, 'and says it is synchronous');

kill('STOP', $rx->{pid});
my $c = run_bg('-c', 'INSERT INTO t VALUES (-1)', '-c', 'SELECT pg_current_wal_insert_lsn()');
ok(poll_until(sub { sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") eq '1' }),
	'receiver frozen (SIGSTOP): the commit waits for it (wait_event SyncRep)');
ok(!psql_finished($c), 'the commit has not returned');
is(sql('SELECT count(*) FROM t WHERE id = -1'), '0', 'nor is its row visible');
kill('CONT', $rx->{pid});
ok(poll_until(sub { psql_finished($c) }), 'SIGCONT: the commit returns');
my ($ins, $after) = split /\n/, $c->{out};
is_deeply([ $c->{rc}, $ins ], [ 0, 'INSERT 0 1' ], 'successfully: INSERT 0 1');
ok(spool_covers($after), "the spool holds the server's WAL past the commit (up to $after)");
my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stopped (exit 0)');
sql('ALTER SYSTEM RESET synchronous_standby_names');
$node->reload;

# --- the flush position moves with every commit (true) or in batches (false) ---------

my $load = load_start();
$rx = receiver_start($config);
ok(streaming(), 'synchronous: true, under a trickle of commits: streaming');
my ($sync_adv, $sync_secs) = flush_advances(4);
note(sprintf('synchronous: true: %d advances in %.1f s', $sync_adv, $sync_secs));
cmp_ok($sync_adv, '>', 3 * ($sync_secs + 2),
	'synchronous: true: the flush position moves many times a second');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stopped (exit 0)');

configure(0, "    flush_interval: 1s\n");
$rx = receiver_start($config);
ok(streaming(), 'synchronous: false, flush_interval 1s: streaming');
like(receiver_log($rx), qr/\(1 repositories, flushing every 1s\)/, 'and says how often it flushes');
my ($adv, $secs) = flush_advances(5);
note(sprintf('synchronous: false: %d advances in %.1f s', $adv, $secs));
cmp_ok($adv, '>=', 2, 'synchronous: false: the flush position advances');
cmp_ok($adv, '<=', $secs + 2, 'about once per flush_interval, not with each commit');

# A crash: nothing reported flushed is missing from the spool.
kill('KILL', $rx->{pid});
receiver_wait_exit($rx, 30);
my $restart = sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'");
ok(lsn_int($restart) > 0, "the slot's restart_lsn (the last flush reported) is $restart");
ok(spool_covers($restart), 'after SIGKILL the spool holds every byte reported flushed');

# Back again; the load ends; a stop leaves every byte sent in the spool and reported.
$rx = receiver_start($config);
ok(streaming(), 'restarted: streaming again');
load_stop($load);
my $end = sql('SELECT pg_current_wal_flush_lsn()');
ok(poll_until(sub { lsn_int(app_flush()) >= lsn_int($end) }),
	"idle: the last batch is flushed and reported within the interval (up to $end)");
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');
$restart = sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'");
cmp_ok(lsn_int($restart), '>=', lsn_int($end), "stopped: the slot's restart_lsn ($restart) is past the load's end");
ok(spool_covers($restart), 'and the spool holds every byte up to it');

# synchronous: false while the server waits on pgark: said at the start; commits still
# return (each within about a flush_interval).
sql("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (other, pgark_main)'");
$node->reload;
$rx = receiver_start($config);
ok( poll_until(sub { receiver_log($rx) =~ /warn\s+server \S+ waits on "pgark_main" in synchronous_standby_names, but cluster "main" has synchronous: false: each commit may wait up to 1000 ms/ }),
	'synchronous: false and the server waiting on pgark: a warning says so');
like(receiver_log($rx), qr/hint: set synchronous: true for cluster "main", or remove "pgark_main" from synchronous_standby_names/,
	'with what to do');
$c = run_bg('-c', 'INSERT INTO t VALUES (-2)');
ok(poll_until(sub { psql_finished($c) }), 'a commit still returns');
is($c->{rc}, 0, 'successfully');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');
unlike(receiver_log($receivers_seen[0]), qr/synchronous_standby_names, but/,
	'synchronous: true: no such warning');

$node->stop;
done_testing();
