# A timeline switch: the receiver streams from a primary through a multi-host
# conninfo (target_session_attrs=read-write); the primary stops, its streaming
# standby is promoted, and the receiver follows onto timeline 2 on the new primary:
# 00000002.history is shipped, the old timeline's last segment is kept as .partial,
# every segment of both timelines is in the repository byte for byte as the servers
# have it, and pg_waldump reads the restored WAL of both timelines.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;

my $SEG = 16 * 1024 * 1024;
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$primary->start;
$primary->safe_psql('postgres', 'CREATE TABLE t (id int, pad text)');
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
# The slot must exist on the standby too, for after the promotion.
$standby->safe_psql('postgres', "SELECT pg_create_physical_replication_slot('pgark_main', true)");

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $sdir = "$tmp/spool/main";
my $h = $primary->host;
my $conninfo = "host=$h,$h port=" . $primary->port . ',' . $standby->port
  . ' target_session_attrs=read-write';
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $repo ] ],
		conninfo => $conninfo,
		create_slot => 1),
	"$tmp/pgark.yaml");

sub in_repo { return -f "$repo/main/wal/$_[0]" }

my $rx = receiver_start($config);
ok(poll_until(sub { $primary->safe_psql('postgres', "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_main'") eq 't' }),
	'receiving from the primary (first host of the conninfo)');
# (pg_walfile_name names the previous segment for an LSN on a boundary.)
my $first = seg_name(1, int(lsn_int($primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()')) / $SEG));
# What the repository lacks after the switch was written after this moment.
my $t_tli1 = time();
$primary->safe_psql('postgres', "INSERT INTO t SELECT g, 'tli1' FROM generate_series(1, 1000) g");
$primary->safe_psql('postgres', 'SELECT pg_switch_wal()');
$primary->safe_psql('postgres', "INSERT INTO t SELECT g, 'tli1 tail' FROM generate_series(1, 100) g");
$primary->wait_for_catchup($standby);
my $tli1_end = $primary->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
ok(poll_until(sub { (read_status($sdir) // {})->{flushed_lsn} eq $tli1_end }),
	"the receiver has timeline 1 up to $tli1_end");

# --- the primary goes, the standby is promoted ----------------------------------

$primary->stop('fast');
ok(poll_until(sub { receiver_log($rx) =~ /reconnecting in/ }), 'the receiver notices the primary is gone and retries');
$standby->promote;
my $switch = $standby->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(poll_until(sub { (read_status($sdir) // {})->{timeline} == 2 }, 60),
	'the receiver follows the promoted standby onto timeline 2');
like(receiver_log($rx), qr/timeline ended; following timeline 2 from/, 'and says so');

# The history file, then new WAL on timeline 2.
my $hist = slurp_bytes($standby->data_dir . '/pg_wal/00000002.history');
my ($switchpoint) = $hist =~ /^1\t([0-9A-F]+\/[0-9A-F]+)\t/m;
ok($switchpoint, "timeline 2 branched off at $switchpoint");
ok(poll_until(sub { in_repo('00000002.history') }), '00000002.history shipped');
my $got = repo_cat($repo, 'main', 'wal/00000002.history');
is($got->{stdout}, $hist, 'equal to the server\'s');

# Lag after the switch: the repository holds timeline 1 up to (about) the switch
# point, so what it lacks is the little written on timeline 2 since, not all WAL.
my $lag;
ok( poll_until(sub {
			my $st = read_status($sdir);
			return 0 unless $st && $st->{timeline} == 2
			  && lsn_int($st->{flushed_lsn}) >= lsn_int($switchpoint);
			$lag = $st->{repos}[0];
			return 1;
		}),
	'status.json: flushed past the switch point on timeline 2');
cmp_ok($lag->{lag_bytes}, '<', $SEG,
	'lag_bytes after the switch counts only what is missing (less than a segment)');
# Bounded by the time since then, not a fixed figure a loaded machine could pass. (+1 s:
# the receiver keeps flush times in 100 ms steps and dates a byte by the step before the
# one that flushed it.)
my $since = time() - $t_tli1;
cmp_ok($lag->{lag_seconds}, '<=', $since + 1,
	sprintf('and lag_seconds (%.1f s) only since the last writes on timeline 1 (%.1f s ago)',
		$lag->{lag_seconds}, $since));

$standby->safe_psql('postgres', "INSERT INTO t SELECT g, 'tli2' FROM generate_series(1, 1000) g");
my $last2 = $standby->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn())');
$standby->safe_psql('postgres', 'SELECT pg_switch_wal()');
ok(poll_until(sub { in_repo("00000002/$last2") }), "segment $last2 of timeline 2 archived");

# --- what the repository holds ---------------------------------------------------------

my $sp_seg = int(lsn_int($switchpoint) / $SEG);
my (undef, $first_no) = seg_of_name($first);
my (undef, $last2_no) = seg_of_name($last2);
my $old_last = seg_name(1, $sp_seg);
ok(poll_until(sub { in_repo("00000001/$old_last.partial") }),
	"the old timeline's last segment is kept as $old_last.partial");
ok(!in_repo("00000001/$old_last"), 'and not as a complete segment');

my $restore = "$tmp/restore";
mkdir $restore;
my @bad;
for my $segno ($first_no .. $sp_seg - 1)
{
	my $name = seg_name(1, $segno);
	my $r = repo_cat($repo, 'main', "wal/00000001/$name");
	push @bad, "$name: $r->{stderr}" and next if $r->{rc};
	push @bad, "$name differs from the old primary's"
	  if $r->{stdout} ne slurp_bytes($primary->data_dir . "/pg_wal/$name");
	write_file("$restore/$name", $r->{stdout});
}
my $r = repo_cat($repo, 'main', "wal/00000001/$old_last.partial");
my $sp_off = lsn_int($switchpoint) % $SEG;
# The old primary wrote timeline 1 up to its shutdown, which is the switch point.
my $server_partial = slurp_bytes($primary->data_dir . "/pg_wal/$old_last");
push @bad, "$old_last.partial: $r->{stderr}" if $r->{rc};
push @bad, "$old_last.partial is shorter than the switch point"
  if length($r->{stdout}) < $sp_off;
push @bad, "$old_last.partial differs from the old primary's up to the switch point"
  if substr($r->{stdout}, 0, $sp_off) ne substr($server_partial, 0, $sp_off);
# pg_waldump reads no .partial names; pad to a full segment as the server would.
write_file("$restore/$old_last", $r->{stdout} . ("\0" x ($SEG - length($r->{stdout}))));
for my $segno ($sp_seg .. $last2_no)
{
	my $name = seg_name(2, $segno);
	my $r2 = repo_cat($repo, 'main', "wal/00000002/$name");
	push @bad, "$name: $r2->{stderr}" and next if $r2->{rc};
	push @bad, "$name differs from the new primary's"
	  if $r2->{stdout} ne slurp_bytes($standby->data_dir . "/pg_wal/$name");
	write_file("$restore/$name", $r2->{stdout});
}
is_deeply(\@bad, [],
	'timeline 1 from ' . seg_name(1, $first_no) . " to the switch point and timeline 2 to $last2: every segment equal to the servers'");

my $w = run_cmd([ 'pg_waldump', '-q', '-p', $restore, '-t', 1,
	'-s', lsn_text($first_no * $SEG), '-e', $switchpoint ]);
is($w->{rc}, 0, "pg_waldump reads timeline 1 up to the switch point $switchpoint");
$w = run_cmd([ 'pg_waldump', '-q', '-p', $restore, '-t', 2,
	'-s', $switchpoint, '-e', lsn_text(($last2_no + 1) * $SEG) ]);
is($w->{rc}, 0, "pg_waldump reads timeline 2 from the switch point to the end of $last2");
my $dump = '';
IPC::Run::run([ 'pg_waldump', '-p', $restore, '-t', 2, '-s', $switchpoint,
	'-e', lsn_text(($last2_no + 1) * $SEG) ], '>', \$dump, '2>', '/dev/null');
is(scalar(() = $dump =~ /rmgr: Heap .*desc: INSERT/g), 1000,
	'and finds the 1000 inserts made on timeline 2');

# Each timeline has its high-water mark: timeline 1's ends with the .partial kept at the
# switch, timeline 2's covers its last segment.
sub mark_of
{
	my ($tli) = @_;
	my $m = repo_cat($repo, 'main', sprintf('wal/%08X.hwm', $tli));
	return $m->{rc} == 0 ? eval { JSON::PP->new->decode($m->{stdout}) } : undef;
}
ok(poll_until(sub { my $m = mark_of(2); $m && ($m->{segment} // '') ge $last2 }),
	"timeline 2's high-water mark covers $last2");
my $m1 = mark_of(1);
is($m1->{partial}{segment}, $old_last, "timeline 1's mark ends with $old_last.partial");
cmp_ok($m1->{partial}{bytes}, '>=', $sp_off, 'past the switch point');

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'SIGTERM: exit 0');
cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));

$standby->stop;
done_testing();
