# The receiver under trouble.
#
# A dead repository (its directory made unwritable) does not stop the stream: the
# other repository keeps receiving, the spool keeps the segments the dead one lacks,
# status.json and the log say why; once it is writable again it catches up and the
# spool drains. A server restart mid-stream is ridden out with backoff and jitter and
# no gap. Conditions retrying cannot fix end the receiver with a clear message and
# the right exit code: an unreachable server (after PGARK_TEST_MAX_RETRIES), a wrong
# password, a missing slot without create_slot, a repository of another cluster.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';
my $host = $node->host;

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sdir = "$tmp/spool/main";
my %repo = (one => "$tmp/repo1", two => "$tmp/repo2");
my $conninfo = "host=$host port=" . $node->port;
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ one => $repo{one} ], [ two => $repo{two} ] ],
		conninfo => $conninfo,
		create_slot => 1),
	"$tmp/pgark.yaml");

sub finish_segment
{
	sql("INSERT INTO t SELECT g FROM generate_series(1, $_[0]) g") if $_[0];
	my $name = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG));
	sql('SELECT pg_switch_wal()');
	return $name;
}

sub in_repo { return -f "$repo{$_[0]}/main/wal/00000001/$_[1]" }

sub same_as_server
{
	my ($r, $name) = @_;
	my $got = repo_cat($repo{$r}, 'main', "wal/00000001/$name");
	return $got->{rc} == 0 && $got->{stdout} eq slurp_bytes("$pgwal/$name");
}


# --- a dead repository --------------------------------------------------------------

sql('CREATE TABLE t (id int)');
my $rx = receiver_start($config);
# Streaming before the first switch: a receiver that connects after it starts at the
# server's next segment (its slot is new), and this one would never be received.
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'receiver streaming');
my $a = finish_segment(100);
# Shipped means the shipper says so (status.json), not just that the file is there.
sub shipped
{
	my ($r, $name) = @_;
	my $st = repo_status($sdir, $r);
	return $st && ($st->{last_segment} // '') ge $name;
}
ok(poll_until(sub { shipped('one', $a) && shipped('two', $a) }), "segment $a shipped to both repositories");

chmod(0000, $repo{two}) or die "chmod: $!";
my $b = finish_segment(100);
my $c = finish_segment(100);
ok(poll_until(sub { in_repo('one', $c) }), "repository \"two\" unwritable: \"one\" still receives $b and $c");
ok(same_as_server('one', $b) && same_as_server('one', $c), 'equal to pg_wal');
my $flush = sql('SELECT pg_current_wal_flush_lsn()');
ok(poll_until(sub { (read_status($sdir) // {})->{flushed_lsn} eq $flush }),
	"the stream goes on: flushed up to the server's $flush");
ok(-f "$sdir/$b" && -f "$sdir/$c", 'the spool keeps the segments "two" does not have');
my $two;
ok(poll_until(sub { $two = repo_status($sdir, 'two'); $two && $two->{last_error} }),
	'status.json: repository "two" has an error');
like($two->{last_error}, qr/Permission denied/, 'which says permission denied');
like($two->{last_error}, qr/while shipping \Q$b\E to repository "two"/, 'and what was being shipped');
cmp_ok($two->{lag_bytes}, '>=', 2 * $SEG, 'its lag is at least the two segments');
is(repo_status($sdir, 'one')->{last_error}, undef, 'repository "one" has none');
like(receiver_log($rx), qr/warn\s+repository "two": .*Permission denied/, 'the log warns about it');
# Lag in seconds grows while "two" is down, and the local tier's RPO shows it.
my $lag1 = repo_status($sdir, 'two')->{lag_seconds};
ok(poll_until(sub { repo_status($sdir, 'two')->{lag_seconds} > $lag1 + 0.5 }),
	"\"two\"'s lag_seconds grows while it is down ($lag1 s, then more)");
my $st = read_status($sdir);
my ($two_now) = grep { $_->{name} eq 'two' } @{ $st->{repos} };
cmp_ok($st->{rpo}{local_seconds}, '>=', $two_now->{lag_seconds},
	'rpo.local_seconds is the worst local repository\'s lag');

chmod(0700, $repo{two}) or die "chmod: $!";
ok(poll_until(sub { in_repo('two', $b) && in_repo('two', $c) }, 60),
	'writable again: "two" catches up');
ok(same_as_server('two', $b) && same_as_server('two', $c), 'with segments equal to pg_wal');
ok(poll_until(sub { !-e "$sdir/$b" && !-e "$sdir/$c" }), 'and the spool drains');
ok(poll_until(sub { my $r = repo_status($sdir, 'two'); $r->{name} && !defined $r->{last_error} }),
	'status.json clears the error');
like(receiver_log($rx), qr/repository "two" is reachable again/, 'the log says it recovered');

# --- the server restarts mid-stream, and is down for a while ------------------------------

sql('INSERT INTO t SELECT g FROM generate_series(1, 20000) g');
$node->stop('fast');
ok(poll_until(sub { (() = receiver_log($rx) =~ /reconnecting in/g) >= 3 }),
	'server down: the receiver retries');
my @waits = receiver_log($rx) =~ /reconnecting in ([\d.]+) s/g;
@waits = @waits[0 .. 2];
note("waits: @waits");
ok($waits[0] >= 0.5 && $waits[0] <= 1.0 && $waits[1] >= 1.0 && $waits[1] <= 2.0
	  && $waits[2] >= 2.0 && $waits[2] <= 4.0,
	"retries back off, each wait jittered within [b/2, b] for b = 1, 2, 4 s (@waits)");
like(receiver_log($rx), qr/warn\s+.*(connection to server|server "\Q$host\E)/,
	'each failure is logged');
$node->start;
sql('INSERT INTO t SELECT g FROM generate_series(1, 20000) g');
my $d = finish_segment(0);
ok(poll_until(sub { in_repo('one', $d) && in_repo('two', $d) }, 30),
	"after the restart segment $d reached both repositories");
my @bad;
my (undef, $from) = seg_of_name($a);
my (undef, $to) = seg_of_name($d);
for my $segno ($from .. $to)
{
	my $name = seg_name(1, $segno);
	for my $r (qw(one two))
	{
		push @bad, "$r/$name" unless same_as_server($r, $name);
	}
}
is_deeply(\@bad, [], "no gap: every segment $a..$d in both repositories equals pg_wal");

# The receiver killed (SIGKILL) in the middle of a segment: a restart resumes with no gap.
sql('INSERT INTO t SELECT g FROM generate_series(1, 50000) g');
kill('KILL', $rx->{pid});
is(receiver_wait_exit($rx, 10), 128 + 9, 'receiver killed with SIGKILL');
sql('INSERT INTO t SELECT g FROM generate_series(1, 50000) g');
$rx = receiver_start($config);
my $k = finish_segment(0);
ok(poll_until(sub { in_repo('one', $k) && in_repo('two', $k) }, 30),
	"after a restart segment $k reached both repositories");
@bad = ();
(undef, $to) = seg_of_name($k);
for my $segno ($from .. $to)
{
	my $name = seg_name(1, $segno);
	for my $r (qw(one two))
	{
		push @bad, "$r/$name" unless same_as_server($r, $name);
	}
}
is_deeply(\@bad, [], "no gap after SIGKILL: every segment $a..$k in both repositories equals pg_wal");

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');

# Killed while padding a new segment: its .partial is shorter than a segment and holds
# only zeros (nothing is written into it before the padding is done). The restart pads
# it to the end and streams that segment again from the server, with no gap.
# The segment being written (the spool may not have started it yet) is put in the
# state such a kill leaves.
my $cut_name = seg_name(1, int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG));
my $cut = "$sdir/$cut_name.partial";
open(my $fh, '>', $cut) or die "open $cut: $!";
close($fh);
truncate($cut, 3 * 1024 * 1024 + 512) or die "truncate $cut: $!";
$rx = receiver_start($config, name => 'cut');
sql('INSERT INTO t SELECT g FROM generate_series(1, 1000) g');
$c = finish_segment(0);
is($c, $cut_name, "the segment being written when stopped is $cut_name");
ok(poll_until(sub { in_repo('one', $c) && in_repo('two', $c) }, 60),
	"after a kill while padding, segment $c reached both repositories");
ok(same_as_server('one', $c) && same_as_server('two', $c),
	"segment $c in both repositories equals pg_wal");
unlike(receiver_log($rx), qr/has size/, 'the short zero-filled .partial is not reported as damage');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');

# --- a repository unavailable when the receiver starts -------------------------------

# A file where the cluster's folder should be: repo.json can be neither read nor
# written. The stream must not wait for that repository.
my $late = "$tmp/repo_late";
mkdir $late;
write_file("$late/main", "in the way\n");
my $late_spool = "$tmp/spool_late/main";
my $late_config = write_config(
	receiver_config(
		spool => "$tmp/spool_late",
		repos => [ [ one => $repo{one} ], [ late => $late ] ],
		conninfo => $conninfo),
	"$tmp/late.yaml");
$rx = receiver_start($late_config, name => 'late');
my $e = finish_segment(100);
ok(poll_until(sub { in_repo('one', $e) }),
	"a repository unavailable at start does not stall the stream: \"one\" gets $e");
ok(-f "$late_spool/$e", 'the spool keeps it for the other repository');
like(receiver_log($rx), qr/warn\s+repository "late": .*main/, 'the log says what is wrong with "late"');
ok(poll_until(sub { my $st = read_status($late_spool); $st && grep { $_->{name} eq 'late' && $_->{last_error} } @{ $st->{repos} } }),
	'status.json has the error for "late"');
unlink("$late/main");
ok(poll_until(sub { -f "$late/main/wal/00000001/$e" && !-e "$late_spool/$e" }, 60),
	'once it is usable the repository is created, catches up, and the spool drains');
my $g = repo_cat($late, 'main', "wal/00000001/$e");
ok($g->{rc} == 0 && $g->{stdout} eq slurp_bytes("$pgwal/$e"), "$e in \"late\" equals pg_wal");
is(receiver_stop($rx)->{rc}, 0, 'stopped');

# --- conditions retrying cannot fix ---------------------------------------------------

# A config like the main one with other settings.
sub other_config
{
	my ($name, %o) = @_;
	return write_config(
		receiver_config(
			spool => "$tmp/spool_$name",
			repos => [ [ one => $repo{one} ] ],
			conninfo => $conninfo,
			%o),
		"$tmp/$name.yaml");
}

my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $r = run_pgark([ '--config', other_config('dead', conninfo => "host=$host port=$dead_port",
			repos => [ [ fresh => "$tmp/repo_fresh" ] ]), 'receive' ],
	env => { PGARK_TEST_MAX_RETRIES => 2 }, timeout => 30);
is($r->{rc}, 1, 'unreachable server: exit 1 after PGARK_TEST_MAX_RETRIES attempts');
is(scalar(() = $r->{stderr} =~ /warn\s+connection to server on socket "\Q$host\E\/\.s\.PGSQL\.$dead_port" failed/g),
	2, 'each failed attempt is logged with the socket it tried');
like($r->{stderr}, qr/error\s+connection to server on socket "\Q$host\E\/\.s\.PGSQL\.$dead_port" failed: No such file or directory/,
	'and the last one is the error');
ok(!-e "$tmp/repo_fresh/main/repo.json", 'nothing was written to the repository');

# SIGTERM while waiting to reconnect: a clean exit at once.
$rx = receiver_start("$tmp/dead.yaml", name => 'dead');
ok(poll_until(sub { receiver_log($rx) =~ /reconnecting in/ }), 'unreachable server: retrying');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM while waiting to reconnect: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));

# Wrong password.
my $password = 'Corr3ct-Horse';
my $wrong = 'Wr0ng-Battery';
sql("CREATE ROLE pwuser LOGIN REPLICATION PASSWORD '$password'");
my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_text = slurp_file($hba);
write_file($hba, "local replication pwuser scram-sha-256\n" . $hba_text);
$node->reload;
$r = run_pgark([ '--config', other_config('pw', conninfo => "$conninfo user=pwuser password=$wrong",
			slot => 'pw_slot', create_slot => 1), 'receive' ], timeout => 30);
is($r->{rc}, 1, 'wrong password: exit 1 at once');
like($r->{stderr}, qr/password authentication failed for user "pwuser"/, 'says so');
unlike($r->{stderr}, qr/\Q$wrong\E/, 'without showing the password');
unlike($r->{stderr}, qr/reconnecting/, 'and without retrying');
is(sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pw_slot'"), '0', 'no slot was created');

# A slot that does not exist, create_slot false.
$r = run_pgark([ '--config', other_config('noslot', slot => 'nosuch'), 'receive' ], timeout => 30);
is($r->{rc}, 2, 'missing slot without create_slot: exit 2');
like($r->{stderr}, qr/error\s+replication slot "nosuch" does not exist on "?\Q$host\E/, 'names the slot');
like($r->{stderr},
	qr/hint: create it \(SELECT pg_create_physical_replication_slot\('nosuch', true\)\) or set create_slot: true for cluster "main"/,
	'with the hint that fixes it');
is(sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'nosuch'"), '0',
	'and no slot was created');

# A repository that belongs to another cluster.
my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(allows_streaming => 1);
$other->start;
my $before = join(',', sort(slurp_dir("$repo{one}/main/wal/00000001")));
$r = run_pgark([ '--config', other_config('other', conninfo => "host=$host port=" . $other->port,
			create_slot => 1), 'receive' ], timeout => 30);
my $sys1 = sql('SELECT system_identifier FROM pg_control_system()');
my $sys2 = $other->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()');
is($r->{rc}, 1, 'repository of another cluster: exit 1');
like($r->{stderr},
	qr/error\s+repository "one" belongs to database system $sys1, but the server is system $sys2/,
	'names both system identifiers');
like($r->{stderr}, qr/hint: a repository holds one cluster/, 'with a hint');
is(join(',', sort(slurp_dir("$repo{one}/main/wal/00000001"))), $before,
	'and nothing was added to the repository');
like(slurp_file("$repo{one}/main/repo.json"), qr/"system_identifier": "$sys1"/,
	'repo.json still names the first system');

$other->stop;
$node->stop;
done_testing();
