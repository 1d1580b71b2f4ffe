# The spool when it cannot drain.
#
# A repository that already holds a segment under the same name with other content
# is never overwritten: the receiver reports ERR_EXISTS for it (log, status.json)
# and keeps the segment in the spool, while the other repository gets it. A spool
# that reaches spool_max, or whose filesystem fills (a 40 MiB tmpfs from make
# check), stops taking WAL: the server is never told that anything is flushed which
# is not in the spool, the slot keeps the rest, and when room returns the stream
# resumes with no gap.
use strict;
use warnings;

use File::Copy qw(copy);
use File::Path qw(rmtree);
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

sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my %repo = (one => "$tmp/repo1", two => "$tmp/repo2");
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;

sub config
{
	my ($spool, %o) = @_;
	return write_config(
		receiver_config(
			spool => $spool,
			repos => [ [ one => $repo{one} ], [ two => $repo{two} ] ],
			conninfo => $conninfo,
			create_slot => 1,
			%o),
		"$tmp/pgark.yaml");
}

sub current_seg { return int(lsn_int(sql('SELECT pg_current_wal_insert_lsn()')) / $SEG) }

sub finish_segment
{
	sql('INSERT INTO t SELECT g FROM generate_series(1, 100) g');
	my $name = seg_name(1, current_seg());
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


# Segments $from..$to (numbers) in both repositories equal pg_wal; returns the misses.
sub missing
{
	my ($from, $to) = @_;
	my @bad;
	for my $segno ($from .. $to)
	{
		my $name = seg_name(1, $segno);
		push @bad, map { "$_/$name" } grep { !same_as_server($_, $name) } qw(one two);
	}
	return \@bad;
}

sub slot_restart
{
	return lsn_int(sql("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgark_main'"));
}

# The end of what the spool holds durably: the end of its highest complete segment,
# or how far its .partial holds the server's bytes.
sub spool_durable_end
{
	my ($sdir) = @_;
	my $end = 0;
	for my $f (slurp_dir($sdir))
	{
		next unless $f =~ /^([0-9A-F]{24})(\.partial)?$/;
		my (undef, $segno) = seg_of_name($1);
		my $data = slurp_bytes("$sdir/$f");
		my $server = slurp_bytes("$pgwal/$1");
		my $n = 0;
		# the longest prefix equal to the server's, in 8 kB pages
		$n += 8192 while $n < length($data) && substr($data, $n, 8192) eq substr($server, $n, 8192);
		$end = $segno * $SEG + $n if $segno * $SEG + $n > $end;
	}
	return $end;
}

# --- a different segment under the same name ------------------------------------------

sql('CREATE TABLE t (id int)');
my $spool = "$tmp/spool";
my $sdir = "$spool/main";
my $rx = receiver_start(config($spool));
# streaming before the switch, or its new slot would start at the next segment
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'receiver streaming');
my $a = finish_segment();
ok(poll_until(sub { in_repo('one', $a) && in_repo('two', $a) }), "segment $a archived");
# Plant $a's content under the next segment's name in "two", as another server
# archiving into the same repository would.
my (undef, $ano) = seg_of_name($a);
my $b = seg_name(1, $ano + 1);
my $a_content = repo_cat($repo{two}, 'main', "wal/00000001/$a");
die "repo_cat $a: $a_content->{stderr}" if $a_content->{rc} != 0;
repo_plant($repo{two}, 'main', "wal/00000001/$b", $a_content->{stdout});
my $planted = slurp_bytes("$repo{two}/main/wal/00000001/$b");
is(finish_segment(), $b, "the next segment is $b");
ok(poll_until(sub { in_repo('one', $b) }), "repository \"one\" gets $b");
ok(same_as_server('one', $b), 'equal to pg_wal');
my $two;
ok(poll_until(sub { $two = repo_status($sdir, 'two'); $two && $two->{last_error} }),
	'repository "two" reports an error');
# A well-formed object under $b's name holding other WAL: what a second server
# archiving into the same repository would leave.
my $conflict = qr/segment \Q$b\E is already in repository "two" with different content/;
like($two->{last_error}, $conflict, 'status.json: the segment is already there with different content');
like($two->{last_error}, qr/while shipping \Q$b\E to repository "two"/, 'and says what was being shipped');
like(receiver_log($rx), qr/warn\s+repository "two": $conflict/, 'the log says the same');
ok(slurp_bytes("$repo{two}/main/wal/00000001/$b") eq $planted, 'the stored object was not overwritten');
ok(-f "$sdir/$b", 'the spool keeps the segment');
is($two->{last_segment}, $a, "\"two\" stays at $a: shipping stays in order");
unlink("$repo{two}/main/wal/00000001/$b");
ok(poll_until(sub { in_repo('two', $b) && !-e "$sdir/$b" }, 60),
	'with the foreign object removed, "two" gets the segment and the spool drains');
ok(same_as_server('two', $b), 'equal to pg_wal');
is(receiver_stop($rx)->{rc}, 0, 'stopped');

# --- spool_max ------------------------------------------------------------------------

# Three segments: two complete ones and the one being filled.
config($spool, spool_max => '48MiB');
$rx = receiver_start("$tmp/pgark.yaml");
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }), 'receiver running with spool_max 48MiB');
chmod(0000, $repo{two}) or die "chmod: $!";
my $first = current_seg();
finish_segment() for 1 .. 4;
my $last = current_seg() - 1;
ok(poll_until(sub { receiver_log($rx) =~ /spool "\Q$sdir\E" is full: a new segment would pass spool_max \(50331648 bytes\)/ }),
	'the spool reaches spool_max: the receiver says so');
like(receiver_log($rx), qr/hint: the repositories are not keeping up/, 'with a hint');
like(receiver_log($rx), qr/waiting for room in the spool/, 'and waits for room');
ok(poll_until(sub { (read_status($sdir)->{last_error} // '') =~ /would pass spool_max/ }),
	'status.json has it as last_error');
my $usage = 0;
$usage += -s "$sdir/$_" for grep { /^[0-9A-F]{24}(\.partial)?$/ } slurp_dir($sdir);
cmp_ok($usage, '<=', 48 * 1024 * 1024, 'the spool holds no more than spool_max');
my $durable = spool_durable_end($sdir);
cmp_ok(slot_restart(), '<=', $durable,
	'the slot never passed what the spool holds (restart_lsn ' . lsn_text(slot_restart())
	  . ' <= ' . lsn_text($durable) . ')');
cmp_ok($durable, '<', ($last + 1) * $SEG, 'and the spool does not hold everything yet');
chmod(0700, $repo{two}) or die "chmod: $!";
ok(poll_until(sub { in_repo('one', seg_name(1, $last)) && in_repo('two', seg_name(1, $last)) }, 90),
	'room again: every segment reaches both repositories');
like(receiver_log($rx), qr/room in the spool again; resuming/, 'the receiver resumed by itself');
is_deeply(missing($first, $last), [], 'no gap: each equal to pg_wal');
ok(poll_until(sub { !grep { /^[0-9A-F]{24}$/ } slurp_dir($sdir) }),
	'and the spool drains: no segment is received twice and left behind');
unlike(receiver_log($rx), qr/reconnecting in/, 'no reconnect storm while the spool was full');
is(receiver_stop($rx)->{rc}, 0, 'stopped');

# --- a full filesystem ----------------------------------------------------------------

SKIP:
{
	skip 'PGARK_TEST_SPOOLFS is not set (make check as root mounts a 40 MiB tmpfs)', 13
	  unless $ENV{PGARK_TEST_SPOOLFS};
	my $fs = "$ENV{PGARK_TEST_SPOOLFS}/014";
	rmtree($fs);
	my $fsdir = "$fs/main";
	$rx = receiver_start(config($fs));
	ok(poll_until(sub { (read_status($fsdir) // {})->{connected} }), 'receiver running with its spool on a 40 MiB filesystem');
	# (Its wal folder, not its root: a posix repository whose root cannot be opened
	# is refused when the configuration is loaded, and this receiver restarts.)
	chmod(0000, "$repo{two}/main/wal") or die "chmod: $!";
	$first = current_seg();
	finish_segment() for 1 .. 3;
	$last = current_seg() - 1;
	ok(poll_until(sub { receiver_log($rx) =~ /No space left on device/ }),
		'the filesystem fills: the receiver says so');
	like(receiver_log($rx), qr/could not pad "\Q$fsdir\E\/[0-9A-F]{24}\.partial": No space left on device/,
		'naming the file it could not create');
	$durable = spool_durable_end($fsdir);
	cmp_ok(slot_restart(), '<=', $durable,
		'the slot never passed what the spool holds (restart_lsn ' . lsn_text(slot_restart())
		  . ' <= ' . lsn_text($durable) . ')');
	cmp_ok($durable, '<', ($last + 1) * $SEG, 'and the spool does not hold everything yet');
	# Stopping while waiting for room is as clean, and a restart with a full spool
	# waits again.
	ok(poll_until(sub { receiver_log($rx) =~ /waiting for room in the spool/ }), 'waiting for room');
	my $stop = receiver_stop($rx);
	is($stop->{rc}, 0, 'SIGTERM while waiting for room: exit 0');
	cmp_ok($stop->{seconds}, '<', receiver_stop_limit(), sprintf('promptly (%.1f s)', $stop->{seconds}));
	$rx = receiver_start("$tmp/pgark.yaml");
	ok(poll_until(sub { receiver_log($rx) =~ /waiting for room in the spool/ }),
		'restarted with a full spool: waits for room again');
	chmod(0700, "$repo{two}/main/wal") or die "chmod: $!";
	ok(poll_until(sub { in_repo('one', seg_name(1, $last)) && in_repo('two', seg_name(1, $last)) }, 90),
		'room again: every segment reaches both repositories');
	is_deeply(missing($first, $last), [], 'no gap: each equal to pg_wal');
	ok(poll_until(sub { !grep { /^[0-9A-F]{24}$/ } slurp_dir($fsdir) }), 'and the spool drains');
	is(receiver_stop($rx)->{rc}, 0, 'stopped');
	rmtree($fs);
}

$node->stop;
done_testing();
