# RPO at the moment of loss (issue 26): when the stream ends, the tail of the WAL the
# receiver flushed reaches every repository, not only at the next partial copy.
#
# A writer commits a row every ~100 ms (psql, one INSERT ... RETURNING per commit: the
# ids it prints are the commits it saw acknowledged). The primary crashes (immediate
# stop) after a random number of commits; the receiver, with a local and an S3
# repository at their default intervals (local 500 ms, off-site the cluster's 10 s), is
# stopped one second later. A restore to latest from the local repository alone, and
# one from the S3 repository alone, must each hold every commit whose record ends at or
# before the position the receiver reported flushed (the crashed primary's WAL says
# which, through pg_walinspect once it is restarted) and no row the restarted primary
# lacks. Five such moments, with one cluster and one set-up; the last two with
# synchronous: true, where both restores must also hold every commit the client saw
# acknowledged. After each stop, status.json's newest commit of each repository is the
# newest commit its restore holds, to the microsecond, and its RPO is 0.
use strict;
use warnings;

use File::Path qw(rmtree);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PgarkTest;

my $ROUNDS = 5;
my $SYNC_FROM = 4;    # rounds 4 and 5 are synchronous

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf',
	"wal_keep_size = 1GB\ntrack_commit_timestamp = on\nautovacuum = off\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql('CREATE EXTENSION pg_walinspect');
sql('CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())');

my $s3 = s3rver_start();
s3_create_bucket($s3, 'tail');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my $config = "$tmp/pgark.yaml";
sub configure
{
	my ($sync) = @_;
	write_config(
		receiver_config(
			spool => "$tmp/spool",
			repos => [ [ local => "$tmp/repo_local" ] ],
			s3 => [ [ offsite => $s3, 'tail' ] ],
			conninfo => 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres',
			create_slot => 1,
			synchronous => $sync,
			partial => '10s'),
		$config);
}
configure(0);

sub streaming
{
	my ($sync) = @_;
	my $want = $sync ? "sync_state = 'sync'" : "state = 'streaming'";
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_replication WHERE application_name = 'pgark_main' AND $want");
}

my $rx = receiver_start($config, name => 'round');
ok(streaming(0), 'the receiver streams');
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'a base backup in both repositories') or diag($r->{stderr});

# Restore to latest from one repository; returns { ids => { id => 1 }, newest => commit
# time of the newest row as PostgreSQL prints it, matches => whether $newest (a time from
# status.json) is that commit time }.
sub restore_from
{
	my ($repo, $round, $newest) = @_;
	my $dst = PostgreSQL::Test::Cluster->new("r${round}_$repo");
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $dst->data_dir,
		'--repo', $repo, '--start', '--wait', '--port', $dst->port ]);
	is($res->{rc}, 0, "round $round: restore to latest from \"$repo\" alone")
	  or diag($res->{stderr});
	$dst->_update_pid(1);
	my %ids = map { $_ => 1 } split /,/,
	  $dst->safe_psql('postgres', "SELECT string_agg(id::text, ',') FROM t");
	my $match = defined $newest
	  ? $dst->safe_psql('postgres',
		"SELECT max(pg_xact_commit_timestamp(xmin)) = '$newest'::timestamptz FROM t")
	  : 'no figure';
	my $restored_newest =
	  $dst->safe_psql('postgres', 'SELECT max(pg_xact_commit_timestamp(xmin)) FROM t');
	$dst->stop;
	rmtree($dst->data_dir);
	return { ids => \%ids, newest => $restored_newest, matches => $match };
}

sub missing
{
	my ($want, $have) = @_;
	return [ sort { $a <=> $b } grep { !$have->{$_} } keys %$want ];
}

my $script = "$tmp/writer.sql";
write_file($script,
	join('', map { "INSERT INTO t DEFAULT VALUES RETURNING id;\nSELECT pg_sleep(0.1);\n" } 1 .. 3000));

for my $round (1 .. $ROUNDS)
{
	my $sync = $round >= $SYNC_FROM;
	if ($round == $SYNC_FROM)
	{
		receiver_stop($rx);
		sql("ALTER SYSTEM SET synchronous_standby_names = 'pgark_main'");
		sql('SELECT pg_reload_conf()');
		configure(1);
		$rx = receiver_start($config, name => 'round');
	}
	ok(streaming($sync), "round $round: the receiver streams" . ($sync ? ' as the synchronous standby' : ''));
	my $before = sql('SELECT coalesce(max(id), 0) FROM t');
	my $lsn0 = sql('SELECT pg_current_wal_insert_lsn()');

	# The writer; the crash comes after a random number of acknowledged commits.
	my ($out, $err) = ('', '');
	my $w = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', $script ],
		'<', \undef, '>', \$out, '2>', \$err);
	my $n = 8 + int(rand(30));
	ok(poll_until(sub { $w->pump_nb; (() = $out =~ /^\d+$/mg) >= $n }, 60),
		"round $round: the writer saw $n commits acknowledged");
	$node->stop('immediate');
	usleep(1_000_000);    # the scenario: the receiver is stopped a second later
	my $stop = receiver_stop($rx);
	is($stop->{rc}, 0, "round $round: the primary crashed, the receiver stops cleanly");
	eval { $w->finish; 1 } or $w->kill_kill;
	my %acked = map { $_ => 1 } $out =~ /^(\d+)$/mg;

	my $st = read_status($sdir);
	my $flushed = $st->{flushed_lsn};
	my %newest = map { $_->{name} => $_->{newest_commit} } @{ $st->{repos} };
	my %rpo = map { $_->{name} => $_->{rpo_seconds} } @{ $st->{repos} };
	is_deeply(\%rpo, { local => 0, offsite => 0 }, "round $round: status.json: RPO 0 in both repositories");

	my %from = map { $_ => restore_from($_, $round, $newest{$_}) } qw(local offsite);

	# What the receiver had flushed, from the primary's own WAL.
	$node->start;
	my %all = map { $_ => 1 } split /,/, sql("SELECT string_agg(id::text, ',') FROM t");
	# Every row of the rounds before, and the commits of this one the receiver flushed.
	my %flushed = map { $_ => 1 } (grep { $_ <= $before } keys %all), split /,/, sql(
		"SELECT string_agg(t.id::text, ',') FROM t JOIN pg_get_wal_records_info('$lsn0', '$flushed') w
		   ON w.xid = t.xmin WHERE w.record_type = 'COMMIT' AND w.end_lsn <= '$flushed'");
	my $new = grep { $_ > $before } keys %flushed;
	note("round $round: " . scalar(keys %acked) . " acknowledged, $new flushed by the receiver (up to $flushed), "
		  . scalar(grep { $_ > $before } keys %all) . ' on the primary');
	cmp_ok($new, '>=', $sync ? $n : 1, "round $round: the receiver had flushed commits of this round");
	for my $repo (qw(local offsite))
	{
		my $got = $from{$repo}{ids};
		is_deeply(missing(\%flushed, $got), [],
			"round $round: \"$repo\" restores every commit the receiver flushed ($new new)");
		is_deeply(missing($got, \%all), [], "round $round: and nothing the primary lacks");
		is_deeply(missing(\%acked, $got), [], "round $round: every commit the client saw acknowledged")
		  if $sync;
		is($from{$repo}{matches}, 't',
			"round $round: status.json's newest commit of \"$repo\" ($newest{$repo}) is the restore's"
			  . " ($from{$repo}{newest})");
	}
	$rx = receiver_start($config, name => 'round') if $round < $ROUNDS;
}

my $log = join('', map { slurp_file($_) } glob("$PostgreSQL::Test::Utils::log_path/023_receive_rpo_crash_round_*.log"));
like($log, qr/copied the tail of [0-9A-F]{24} \(\d+ bytes\) to repository "offsite"/,
	'the logs say when the tail went off-site');
unlike($log, qr/^\S+ \S+ error /m, 'no error in the receivers\' logs');
done_testing();
