# The receiver's events, delivered to a real webhook on loopback
# (tests/harness/webhook.py): a server that stops gives stream.lost, then rpo.breach
# within rpo_target + one status interval; once it is back, stream.back and
# rpo.recovered naming the incidents they close. A webhook that hangs does not slow
# the WAL flushes down, nor hold a stop for long (what it never took is in the
# dead-letter file). A repository that cannot be written gives repo.failing after
# three attempts, a spool filling up spool.high, and both their ends once it is
# writable again. A backup taken meanwhile sends backup.done, a verify verify.done.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;
use PgarkWebhook;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$node->append_conf('postgresql.conf', "wal_keep_size = 256MB\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql('CREATE TABLE t (id int)');

my $wh = webhook_start();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $repo = "$tmp/repo";
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my $rpo_target = 5;
my $interval = 2;    # PGARK_TEST_STATUS_INTERVAL_MS, seconds
my $notify = "notify:\n"
  . "  - { url: \"$wh->{base}/json/SECRETJSON\", format: json }\n"
  . "  - { url: \"$wh->{base}/slack/SECRETSLACK\", format: slack, events: [\"rpo.*\"] }\n";
sub config
{
	my ($name, %o) = @_;
	return write_config(
		receiver_config(
			spool => "$tmp/spool",
			repos => [ [ local => $repo ] ],
			conninfo => $conninfo,
			create_slot => 1,
			%o,
			extra => "    rpo_target: ${rpo_target}s\n" . ($o{extra} // '') . $notify),
		"$tmp/$name.yaml");
}
my $config = config('pgark');
my %env = (
	PGARK_TEST_STATUS_INTERVAL_MS => $interval * 1000,
	PGARK_TEST_NOTIFY_RETRY_MS => 200);

# The json endpoint's events, in order of arrival.
sub events
{
	return [ map { $_->{json} } grep { $_->{path} =~ /SECRETJSON/ && $_->{json} }
		  @{ webhook_requests($wh) } ];
}
sub arrived
{
	my ($name, $after) = @_;
	my @r = grep { $_->{path} =~ /SECRETJSON/ && ($_->{json}{event} // '') eq $name
		  && $_->{time} >= ($after // 0) } @{ webhook_requests($wh) };
	return $r[0];
}
sub wait_event
{
	my ($name, $after, $timeout) = @_;
	return poll_until(sub { arrived($name, $after) }, $timeout);
}

my $rx = receiver_start($config, env => \%env);
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'receiver streaming');
sql('INSERT INTO t SELECT generate_series(1, 1000)');

# --- backup.done, from a backup while the receiver runs --------------------------------

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress' ], env => \%env);
is($r->{rc}, 0, 'backup done');
my $done = wait_event('backup.done');
ok($done, 'backup.done sent');
like($done->{json}{summary} // '', qr/^backup \d{8}T\d{6}Z done in /, 'naming the backup');
$r = run_pgark([ '--config', $config, 'verify' ], env => \%env);
is($r->{rc}, 0, 'verify finds no problem');
my $verified = wait_event('verify.done');
like($verified->{json}{summary} // '', qr/^verify found no problem in 1 repository/, 'verify.done sent');

# --- the server stops: stream.lost, then rpo.breach; it comes back ---------------------

my $t_stop = time();
$node->stop('fast');
my $lost = wait_event('stream.lost', $t_stop, 60);
my $breach = wait_event('rpo.breach', $t_stop, 60);
ok($lost, 'stream.lost sent after the server stopped');
ok($breach, 'rpo.breach sent');
cmp_ok($lost->{time}, '<=', $breach->{time}, 'stream.lost first');
my $delay = $breach->{time} - $t_stop;
# Its bound, plus the events thread's tick (1 s) and time for a loaded machine.
cmp_ok($delay, '<=', $rpo_target + $interval + 3,
	sprintf('rpo.breach %.1f s after the stop: within rpo_target + a status interval', $delay));
is($breach->{json}{details}{tier}, 'local', 'for the local tier');
like($breach->{json}{summary}, qr/^local RPO is [\d.]+ s, above rpo_target 5\.0 s \(the stream is lost\)$/,
	'saying why');
is($breach->{json}{severity}, 'critical', 'critical');
# The slack endpoint's, by the text of its message (each endpoint's deliveries go out
# one after the other: its copy may come after the json one).
sub slack_of
{
	my ($name) = @_;
	my $got;
	poll_until(sub {
		($got) = grep { $_->{path} =~ /SECRETSLACK/ && ($_->{json}{text} // '') =~ /\Q$name\E on main/ }
		  @{ webhook_requests($wh) };
		$got;
	}, 60);
	return $got;
}
my $slack = slack_of('rpo.breach');
ok($slack && ref $slack->{json}{blocks} eq 'ARRAY', 'the slack endpoint got it as blocks');
my @lost_again = grep { $_->{event} eq 'stream.lost' } @{ events() };
is(scalar(@lost_again), 1, 'stream.lost sent once (notify_repeat is 1h)');

my $t_start = time();
$node->start;
my $back = wait_event('stream.back', $t_start, 60);
my $recovered = wait_event('rpo.recovered', $t_start, 60);
ok($back, 'stream.back sent once the server is back');
is($back->{json}{incident}, $lost->{json}{id}, 'naming the stream.lost it closes');
ok($recovered, 'rpo.recovered sent');
is($recovered->{json}{incident}, $breach->{json}{id}, 'naming the rpo.breach it closes');
is($recovered->{json}{since}, $breach->{json}{since}, 'and when the breach began');
$slack = slack_of('rpo.recovered');
like(JSON::PP->new->encode($slack->{json}{blocks} // []), qr/Resolves incident:\* `\Q$breach->{json}{id}\E`/,
	'the slack message says which incident it resolves');

# --- a webhook that hangs does not slow WAL flushes down ---------------------------------

sub flush_time
{
	my $lsn = sql("INSERT INTO t SELECT generate_series(1, 100); SELECT pg_current_wal_insert_lsn()");
	my $t0 = time();
	poll_until(sub {
		sql("SELECT coalesce(bool_or(flush_lsn >= '$lsn'), false) FROM pg_stat_replication") eq 't'
	}, 60);
	return time() - $t0;
}
ok(poll_until(sub { sql('SELECT count(*) FROM pg_stat_replication') == 1 }, 60), 'streaming again');
my @usual = map { flush_time() } 1 .. 5;
webhook_mode($wh, 'hang');
$node->stop('fast');
ok(poll_until(sub { grep { $_->{status} == 0 } @{ webhook_requests($wh) } }, 60),
	'an event is stuck on the hung webhook');
$node->start;
ok(poll_until(sub { sql('SELECT count(*) FROM pg_stat_replication') == 1 }, 60),
	'the receiver streams again meanwhile');
my @hung = map { flush_time() } 1 .. 5;
my ($max_usual) = sort { $b <=> $a } @usual;
my ($max_hung) = sort { $b <=> $a } @hung;
note(sprintf('flush times: usual %s, webhook hung %s', join(' ', map { sprintf '%.3f', $_ } @usual),
		join(' ', map { sprintf '%.3f', $_ } @hung)));
cmp_ok($max_hung, '<=', $max_usual + 1, sprintf('flushes take no longer while the webhook hangs (%.2f s at most)', $max_hung));

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'the receiver stops cleanly with the webhook hung');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('and promptly (%.1f s)', $stop->{seconds}));
my $dead = -f "$sdir/notify-dead.jsonl" ? slurp_file("$sdir/notify-dead.jsonl") : '';
like($dead, qr/"event":"stream\.lost"/, 'the event stuck on the hung webhook is in the dead-letter file');
unlike($dead . receiver_log($rx), qr/SECRET/, 'no webhook URL in the dead-letter file or the log');
webhook_mode($wh, 'ok');

# --- a repository that cannot be written; the spool filling up ---------------------------

my $config2 = config('spoolmax', spool_max => '4MiB');
my $t_fail = time();
$rx = receiver_start($config2, env => \%env);
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'receiver streaming');
chmod(0000, $repo) or die "chmod: $!";
for (1 .. 6)
{
	sql('INSERT INTO t SELECT generate_series(1, 100); SELECT pg_switch_wal()');
}
my $failing = wait_event('repo.failing', $t_fail, 90);
ok($failing, 'repo.failing sent');
is($failing->{json}{details}{repo}, 'local', 'naming the repository');
like($failing->{json}{summary}, qr/^repository "local" is failing: \d+ attempts in a row$/, 'and the attempts');
my $high = wait_event('spool.high', $t_fail, 90);
ok($high, 'spool.high sent as the spool reached spool_max');
chmod(0700, $repo) or die "chmod: $!";
my $ok = wait_event('repo.recovered', $t_fail, 90);
ok($ok, 'repo.recovered once it is writable');
is($ok->{json}{incident}, $failing->{json}{id}, 'closing the incident');
ok(wait_event('spool.ok', $t_fail, 90), 'spool.ok once the spool drained');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stopped');

done_testing();
