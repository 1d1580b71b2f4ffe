# pgark receive against a real primary: the slot is created when asked, the stream
# starts at the server's current segment, every completed segment reaches BOTH
# posix repositories in order, byte for byte what the server has in pg_wal,
# compressed (and encrypted when a passphrase is configured); a segment leaves the
# spool once both repositories hold it. Restarts resume from the spool with no gap
# and no overlap, and from the slot when the spool is gone. status.json tells the
# positions, and SIGTERM/SIGINT stop cleanly and promptly with the final flush reported.
# One receiver per spool: a second one exits 1 naming the first's pid while the first
# runs on (it does not wait for the lock); after a kill -9 of the first, a new one starts.
use strict;
use warnings;

use File::Path qw(rmtree);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
# Keep the server's own segments around so the test can compare with them.
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $pgwal = $node->data_dir . '/pg_wal';

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $spool = "$tmp/spool";
my $sdir = "$spool/main";
my %repo = (one => "$tmp/repo1", two => "$tmp/repo2");
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my $config = write_config(
	receiver_config(
		spool => $spool,
		repos => [ [ one => $repo{one} ], [ two => $repo{two} ] ],
		conninfo => $conninfo,
		create_slot => 1),
	"$tmp/pgark.yaml");

# Switch to a new segment; returns the name of the one just completed.
sub finish_segment
{
	my ($rows) = @_;
	sql("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, $rows) g")
	  if $rows;
	my $name = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	return $name;
}

sub in_repo { return -f "$repo{$_[0]}/main/wal/00000001/$_[1]" }

# Every segment from $first to $last in repository $r equals pg_wal's.
sub check_segments
{
	my ($r, $first, $last, $what) = @_;
	my (undef, $a) = seg_of_name($first);
	my (undef, $b) = seg_of_name($last);
	my @bad;
	for my $segno ($a .. $b)
	{
		my $name = seg_name(1, $segno);
		my $got = repo_cat($repo{$r}, 'main', "wal/00000001/$name");
		push @bad, "$name: $got->{stderr}" and next if $got->{rc} != 0;
		push @bad, "$name differs" if $got->{stdout} ne slurp_bytes("$pgwal/$name");
	}
	is_deeply(\@bad, [], "$what: repository \"$r\" holds " . ($b - $a + 1)
		  . " segments $first..$last, each equal to pg_wal");
}

# --- first start: slot created, stream from the server's current segment ---------

sql('CREATE TABLE t (id int, pad text)');
my $first = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
my (undef, $first_no) = seg_of_name($first);
my $rx = receiver_start($config);

ok(poll_until(sub { sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_main'") eq 't' }),
	'slot pgark_main created and in use');
is(sql("SELECT slot_type || ' ' || (restart_lsn IS NOT NULL) FROM pg_replication_slots"),
	'physical true', 'a physical slot that reserves WAL');
like(receiver_log($rx), qr/created replication slot "pgark_main"/, 'creation is logged');
my $seg_start = lsn_text($first_no * 16 * 1024 * 1024);
like(receiver_log($rx), qr{streaming WAL from \Q$seg_start\E on timeline 1},
	"stream starts at the start of the server's current segment ($seg_start)");
is(sql("SELECT application_name FROM pg_stat_replication"), 'pgark_main',
	'application_name defaults to pgark_<cluster>');

my $s1 = finish_segment(1000);
my $s2 = finish_segment(2000);
is($s1, $first, 'the first completed segment is the one streaming started in');
ok(poll_until(sub { in_repo('one', $s2) && in_repo('two', $s2) }),
	"segment $s2 reached both repositories");
check_segments('one', $first, $s2, 'first run');
check_segments('two', $first, $s2, 'first run');

my $hdr = repo_cat($repo{one}, 'main', "wal/00000001/$s2", header => 1);
my ($comp, $ciph, $len, $stored) =
  $hdr->{stdout} =~ /compression=(\d+) cipher=(\d+) length=(\d+) stored=(\d+)/;
is_deeply([ $comp, $ciph, $len ], [ 1, 0, 16 * 1024 * 1024 ],
	'the envelope says zstd, no cipher, 16 MiB of plaintext');
cmp_ok($stored, '<', 1024 * 1024, 'and a mostly empty segment is stored compressed');

ok(poll_until(sub { !-e "$sdir/$s1" && !-e "$sdir/$s2" }),
	'completed segments leave the spool once both repositories hold them');

# Ordered shipping: each repository got the segments in ascending order, once each.
for my $r (qw(one two))
{
	my @names = receiver_log($rx) =~ /shipped ([0-9A-F]{24}) to repository "$r"/g;
	is_deeply(\@names, [ sort @names ], "repository \"$r\" received segments in order");
	my %seen;
	is(scalar(grep { $seen{$_}++ } @names), 0, "and each once");
}

# --- status.json ---------------------------------------------------------------

# The server writes records of its own now and then (autovacuum, running transactions, a
# checkpoint): the position to reach is read again at each try. Each repository holds
# every complete segment, and, once its partial copy (every 500 ms) has run, the segment
# being filled up to the flush position too: either is where it should be.
my ($flush, $st);
ok( poll_until(
		sub {
			$flush = sql('SELECT pg_current_wal_flush_lsn()');
			$st = read_status($sdir);
			my $flush_seg = lsn_int($flush) - lsn_int($flush) % (16 << 20);
			$st && $st->{flushed_lsn} eq $flush && $st->{received_lsn} eq $flush
			  && (grep { lsn_int($_->{shipped_lsn}) >= $flush_seg && lsn_int($_->{shipped_lsn}) <= lsn_int($flush) } @{ $st->{repos} }) == 2;
		}),
	"status.json: flushed_lsn and received_lsn reach the server's flush position");
note("the server's flush position: $flush");
is($st->{timeline}, 1, 'timeline 1');
ok($st->{connected}, 'connected');
is_deeply([ map { $_->{name} } @{ $st->{repos} } ], [qw(one two)], 'one entry per repository');
for my $r (@{ $st->{repos} })
{
	is($r->{last_segment}, $s2, "repository \"$r->{name}\": last segment shipped is $s2");
	is($r->{lag_bytes}, lsn_int($flush) - lsn_int($r->{shipped_lsn}),
		"repository \"$r->{name}\": lag_bytes = flushed - shipped");
	ok(defined $r->{lag_seconds} && $r->{lag_seconds} >= 0, 'lag_seconds is reported');
	is($r->{last_error}, undef, 'no error');
}
ok(defined $st->{rpo}{local_seconds}, 'rpo: the local tier has a lag in seconds');
is($st->{rpo}{offsite_seconds}, undef, 'no off-site repository: no off-site tier');
ok(poll_until(sub { sql("SELECT flush_lsn = pg_current_wal_flush_lsn() FROM pg_stat_replication") eq 't' }),
	'pg_stat_replication shows the same flush position');

# --- SIGTERM: clean stop, final flush reported ---------------------------------------

sql("INSERT INTO t VALUES (-1, 'last before stop')");
my $before_stop = sql('SELECT pg_current_wal_flush_lsn()');
poll_until(sub { (read_status($sdir) // {})->{flushed_lsn} eq $before_stop });
my $stop = receiver_stop($rx, 'TERM');
is($stop->{rc}, 0, 'SIGTERM: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));
like(receiver_log($rx), qr/pgark receive stopped/, 'logs that it stopped');
# The server may write a record of its own (running transactions, a checkpoint) after
# the insert: the final position is the receiver's, at or after the insert's.
my $final = read_status($sdir)->{flushed_lsn};
is(sql("SELECT '$final'::pg_lsn >= '$before_stop'::pg_lsn"), 't',
	"status.json's final flush ($final) covers the last insert ($before_stop)");
is(sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'"),
	$final, 'the slot holds exactly the final flushed position');

# --- restart: resume from the spool, no gap, no overlap --------------------------

my $s3 = finish_segment(500);
my ($partial) = map { /^([0-9A-F]{24})\.partial$/ ? $1 : () } (slurp_dir($sdir));
ok($partial, "the spool kept the segment being filled ($partial)");
$rx = receiver_start($config);
my (undef, $pno) = seg_of_name($partial);
my $resume = lsn_text($pno * 16 * 1024 * 1024);
ok(poll_until(sub { in_repo('one', $s3) && in_repo('two', $s3) }),
	"after a restart segment $s3 reached both repositories");
like(receiver_log($rx), qr{streaming WAL from \Q$resume\E on timeline 1},
	"resumed at the start of the spool's partial segment ($resume)");
unlike(receiver_log($rx), qr/does not continue|error/i, 'no overlap or other error');
check_segments('one', $first, $s3, 'after restart');
check_segments('two', $first, $s3, 'after restart');

# SIGINT stops as cleanly.
$stop = receiver_stop($rx, 'INT');
is($stop->{rc}, 0, 'SIGINT: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));

# --- the spool lost: resume from the slot ------------------------------------------

my $restart = sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'");
my $restart_seg = lsn_text(lsn_int($restart) - lsn_int($restart) % (16 << 20));
rmtree($sdir);
my $s4 = finish_segment(500);
$rx = receiver_start($config);
ok(poll_until(sub { in_repo('one', $s4) && in_repo('two', $s4) }),
	"with an empty spool segment $s4 still reached both repositories");
like(receiver_log($rx), qr{streaming WAL from \Q$restart_seg\E on timeline 1},
	"started from the slot's restart_lsn $restart, rounded to its segment");
unlike(receiver_log($rx), qr/different content|error/i,
	'segments shipped again are identical: no error');
check_segments('one', $first, $s4, 'after losing the spool');
check_segments('two', $first, $s4, 'after losing the spool');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'stopped');

# --- one receiver per spool --------------------------------------------------------
#
# A second receiver for the same cluster and spool exits 1 at once, naming the first
# one's pid, before it connects or writes anything; the first goes on, its
# status.json its own. The lock dies with its holder: after a kill -9 of the first, a
# new receiver takes the spool and streams from where the spool ends.

# The text of receive.lock ('' while there is none).
sub lock_text { my $f = "$sdir/receive.lock"; return -f $f ? slurp_file($f) : '' }

$rx = receiver_start($config, name => 'first');
ok( poll_until(
		sub { my $s = read_status($sdir); $s && $s->{pid} == $rx->{pid} && $s->{connected} }),
	'the first receiver streams and writes status.json');
is(lock_text(), "$rx->{pid}\n", 'receive.lock holds its pid');
is(-f "$sdir/receive.lock" && sprintf('%o', (stat(_))[2] & 07777), '600', 'receive.lock is 0600');
my $second = receiver_start($config, name => 'second');
is(receiver_wait_exit($second), 1, 'a second receiver for the same spool exits 1');
ok(receiver_alive($rx), 'while the first runs on: it did not wait for the lock');
like(receiver_log($second),
	qr/ error +spool "\Q$sdir\E" is in use by another pgark receive \(pid $rx->{pid}\)\n/,
	"naming the spool and the first receiver's pid");
like(receiver_log($second), qr/ error +hint: one receiver runs per cluster and spool: stop the other one first/,
	'with a hint');
unlike(receiver_log($second), qr/starting|connect|slot|streaming/i,
	'before it connected or started anything');
is(sql('SELECT count(*) FROM pg_stat_replication'), '1', 'the server sees one receiver');
my $l1 = finish_segment(200);
ok(poll_until(sub { in_repo('one', $l1) && in_repo('two', $l1) }),
	"the first receiver goes on: $l1 reached both repositories");
ok( poll_until(sub { my $s = read_status($sdir); $s && $s->{repos}[0]{last_segment} eq $l1 }),
	'status.json follows it');
is(read_status($sdir)->{pid}, $rx->{pid}, "status.json is still the first receiver's");
is(lock_text(), "$rx->{pid}\n", 'and so is receive.lock');

my $killed = receiver_stop($rx, 'KILL');
is($killed->{rc}, 137, 'the first receiver is killed (SIGKILL)');
my $third = receiver_start($config, name => 'after_kill');
ok( poll_until(
		sub { my $s = read_status($sdir); $s && $s->{pid} == $third->{pid} && $s->{connected} }, 60),
	'after the kill, a new receiver takes the spool and streams');
is(lock_text(), "$third->{pid}\n", 'receive.lock holds the new pid');
my $l2 = finish_segment(200);
ok(poll_until(sub { in_repo('one', $l2) && in_repo('two', $l2) }, 60),
	"and ships: $l2 reached both repositories");
check_segments('one', $first, $l2, 'after a kill -9 and a new receiver');
check_segments('two', $first, $l2, 'after a kill -9 and a new receiver');
is(receiver_stop($third)->{rc}, 0, 'the new receiver stopped cleanly');
is(lock_text(), '', 'and left receive.lock empty');

# --- encryption: AES-256-GCM under a passphrase ----------------------------------------

my $pass = 'c0rrect horse battery';
write_file("$tmp/passphrase", "$pass\n");
my $enc_repo = "$tmp/repo_enc";
my $enc_config = write_config(
	receiver_config(
		spool => "$tmp/spool_enc",
		cluster => 'enc',
		repos => [ [ vault => $enc_repo ] ],
		passphrase_file => "$tmp/passphrase",
		conninfo => $conninfo,
		create_slot => 1),
	"$tmp/enc.yaml");
$rx = receiver_start($enc_config, env => { PGARK_TEST_KDF_N => 1024 }, name => 'enc');
ok(poll_until(sub { sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_enc'") eq 't' }),
	'encrypted cluster: streaming through its own slot');
my $s5 = finish_segment(300);
ok(poll_until(sub { -f "$enc_repo/enc/wal/00000001/$s5" }), "segment $s5 archived encrypted");
my $got = repo_cat($enc_repo, 'enc', "wal/00000001/$s5", passphrase => $pass);
is($got->{rc}, 0, 'decrypts with the passphrase');
ok($got->{stdout} eq slurp_bytes("$pgwal/$s5"), 'and equals pg_wal byte for byte');
$hdr = repo_cat($enc_repo, 'enc', "wal/00000001/$s5", header => 1)->{stdout};
like($hdr, qr/compression=1 cipher=1 length=16777216/, 'envelope: zstd and AES-256-GCM');
my $raw = slurp_bytes("$enc_repo/enc/wal/00000001/$s5");
my $page_magic = substr(slurp_bytes("$pgwal/$s5"), 0, 24);
ok(index($raw, $page_magic) < 0, 'the stored object does not show the WAL page header');
like(slurp_file("$enc_repo/enc/repo.json"), qr/"n": 1024/, 'the KDF cost of the test was used');
$got = repo_cat($enc_repo, 'enc', "wal/00000001/$s5", passphrase => 'wrong');
is($got->{rc}, 1, 'a wrong passphrase does not read it');
like($got->{stderr}, qr/wrong passphrase: it does not unlock the repository encryption key/,
	'and says so');
$got = repo_cat($enc_repo, 'enc', "wal/00000001/$s5");
like($got->{stderr}, qr/repository "test" is encrypted, but no passphrase is configured/,
	'no passphrase: refused with a clear message');
unlike(receiver_log($rx), qr/\Q$pass\E/, 'the passphrase never reaches the log');
$stop = receiver_stop($rx);
is($stop->{rc}, 0, 'encrypted receiver stopped cleanly');

$node->stop;
done_testing();
