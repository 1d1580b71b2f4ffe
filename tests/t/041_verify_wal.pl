# pgark verify, WAL scope, against WAL a real server wrote and `pgark receive` archived
# into two posix repositories: a clean archive verifies with exit 0, then each way the
# archive can be damaged — a segment deleted, a byte flipped, an object truncated, a
# timeline without its history file — makes verify exit 3 naming the repository and the
# segment (and only that one), in text and in --json.
use strict;
use warnings;

use File::Copy qw(copy);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my $setup = ops_setup(conf => "track_commit_timestamp = on\n");
my ($node, $tmp, $config) = @$setup{qw(node tmp config)};
my %root = %{ $setup->{root} };

sub sql { return $node->safe_psql('postgres', $_[0]) }

sub wal_file { my ($r, $tli, $name) = @_; return "$root{$r}/main/wal/$tli/$name" }

# --- fill the repositories ----------------------------------------------------------

my $rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams through its slot');
sql('CREATE TABLE t (id int, pad text)');
my @segs;
for my $i (1 .. 6)
{
	sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g");
	push @segs, sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
}
ok( poll_until(
		sub {
			-f wal_file('one', '00000001', "$segs[-1].idx")
			  && -f wal_file('two', '00000001', "$segs[-1].idx");
		}),
	"both repositories hold $segs[-1] and its time index");
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');

sub verify
{
	my (@args) = @_;
	return run_pgark([ '--config', $config, 'verify', @args ]);
}

sub verify_json
{
	my $r = verify('--json');
	my $doc = eval { decode_json($r->{stdout}) };
	ok($doc, 'verify --json prints JSON') or diag($r->{stdout});
	return ($r->{rc}, $doc // { problems => [] });
}

# --- a clean archive ------------------------------------------------------------------

my $r = verify();
is($r->{rc}, 0, 'verify of a clean archive exits 0');
like($r->{stdout}, qr/cluster "main": no problems found/, 'and says so');
my ($rc, $doc) = verify_json();
is($rc, 0, 'verify --json exits 0 too');
is_deeply($doc->{problems}, [], 'with an empty problems array');
ok($doc->{ok}, 'and ok true');
for my $repo (@{ $doc->{repositories} })
{
	cmp_ok($repo->{segments}, '>=', scalar(@segs), "repository $repo->{name}: every segment decoded");
	is($repo->{time_indexes}, $repo->{segments},
		"repository $repo->{name}: every segment's time index matches its records");
	is($repo->{segments_without_time_index}, 0, "repository $repo->{name}: none lacks one");
}

# The time index tells real commit times: the newest commit is no older than the test.
# (Its content is checked by verify against a fresh decode; here: it exists per segment.)
ok(-s wal_file('one', '00000001', "$segs[2].idx"), 'a time index object sits beside each segment');

# --- segments without a time index: named, and rebuilt on request ------------------------

my @lost = @segs[ 1, 2 ];
my %was = map { $_ => repo_cat($root{one}, 'main', "wal/00000001/$_.idx")->{stdout} } @lost;
unlink(wal_file('one', '00000001', "$_.idx")) or die "unlink: $!" for @lost;
$r = verify();
is($r->{rc}, 0, 'segments without a time index: verify still exits 0 (the WAL is whole)');
like($r->{stdout}, qr/repository "one":.* \(2 segments without one: $lost[0] $lost[1]\)/,
	'and names them');
($rc, $doc) = verify_json();
my ($one) = grep { $_->{name} eq 'one' } @{ $doc->{repositories} };
is_deeply($one->{segments_without_time_index_names}, \@lost, '--json names them too');
$r = verify('--repair-index');
is($r->{rc}, 0, 'verify --repair-index exits 0');
like($r->{stdout}, qr/\(2 segments without one: $lost[0] $lost[1]; 2 rebuilt\)/, 'and says it rebuilt both');
like($r->{stderr}, qr/repository "one": rebuilt the time index of 2 segments/, 'in the log as well');
for my $seg (@lost)
{
	my $now = repo_cat($root{one}, 'main', "wal/00000001/$seg.idx");
	is($now->{rc}, 0, "$seg: its time index is back");
	is($now->{stdout}, $was{$seg}, "$seg: the same index archiving had made");
}
($rc, $doc) = verify_json();
($one) = grep { $_->{name} eq 'one' } @{ $doc->{repositories} };
is($one->{segments_without_time_index}, 0, 'none lacks one afterwards');
is($one->{time_indexes}, $one->{segments}, 'and each matches its segment');

# --- scenarios: mutilate, run, assert, repair -----------------------------------------

# Each scenario damages repository $repo, expects exactly one problem naming it and
# $seg, of $kind, with $message matching, then puts the bytes back.
sub scenario
{
	my (%s) = @_;
	my ($repo, $tli, $seg) = @{ \%s }{qw(repo tli seg)};
	my $path = wal_file($repo, $tli, $seg);
	my $saved = "$tmp/saved";
	copy($path, $saved) or die "copy: $!" if -f $path;
	$s{damage}->($path);

	my $t = verify();
	is($t->{rc}, 3, "$s{name}: verify exits 3");
	my $names = $s{text} // qr/\Q$seg\E/;
	like($t->{stdout}, qr/problem: repository "$repo".*$names/, "$s{name}: text names repository and segment");
	my ($jrc, $j) = verify_json();
	is($jrc, 3, "$s{name}: --json exits 3");
	my @p = @{ $j->{problems} };
	is(scalar(@p), 1, "$s{name}: exactly one problem") or diag(explain(\@p));
	is($p[0]{repository}, $repo, "$s{name}: problem in repository \"$repo\"");
	is($p[0]{segment}, exists $s{segment} ? $s{segment} : $seg, "$s{name}: names the segment");
	is($p[0]{kind}, $s{kind}, "$s{name}: kind $s{kind}");
	like($p[0]{message}, $s{message}, "$s{name}: message");
	ok(!$j->{ok}, "$s{name}: ok false");

	$s{repair} ? $s{repair}->($path) : copy($saved, $path) || die "copy back: $!";
	is(verify()->{rc}, 0, "$s{name}: clean again once repaired");
}

scenario(
	name => 'segment deleted',
	repo => 'two',
	tli => '00000001',
	seg => $segs[2],
	damage => sub { unlink($_[0]) or die "unlink: $!" },
	kind => 'missing',
	message => qr/^segment $segs[2] is missing$/);

scenario(
	name => 'byte flipped',
	repo => 'one',
	tli => '00000001',
	seg => $segs[3],
	damage => sub {
		my ($path) = @_;
		open(my $fh, '+<:raw', $path) or die "open: $!";
		my $size = -s $fh;
		seek($fh, int($size / 2), 0);
		read($fh, my $b, 1);
		seek($fh, int($size / 2), 0);
		print $fh chr(ord($b) ^ 0x20);
		close($fh);
	},
	kind => 'damaged',
	message => qr/wal\/00000001\/$segs[3].*repository "one"/);

scenario(
	name => 'object truncated',
	repo => 'two',
	tli => '00000001',
	seg => $segs[1],
	damage => sub { truncate($_[0], int((-s $_[0]) / 3)) or die "truncate: $!" },
	kind => 'damaged',
	message => qr/truncated.*"main\/wal\/00000001\/$segs[1]" of repository "two"/);

# A timeline-2 segment without 00000002.history (as after a promotion whose history
# file was lost): the segment's bytes are timeline 1's, which a timeline-2 stream may
# hold, so the only problem is the missing history.
my $tl2 = '00000002' . substr($segs[-1], 8);
scenario(
	name => 'history file missing',
	repo => 'one',
	tli => '00000002',
	seg => $tl2,
	segment => undef,
	text => qr/00000002\.history/,
	damage => sub {
		my $c = repo_cat($root{one}, 'main', "wal/00000001/$segs[-1]");
		die "repo_cat: $c->{stderr}" if $c->{rc} != 0;
		repo_plant($root{one}, 'main', "wal/00000002/$tl2", $c->{stdout});
	},
	repair => sub { unlink($_[0]); rmdir("$root{one}/main/wal/00000002") },
	kind => 'history',
	message => qr/^history file 00000002\.history is missing: timeline 2 has WAL but no history$/);

# --days: what was archived today is in scope, and a deleted segment still shows.
unlink(wal_file('one', '00000001', $segs[4])) or die;
$r = verify('--days', '1');
is($r->{rc}, 3, 'verify --days 1 sees the segment deleted from today\'s WAL');
like($r->{stdout}, qr/repository "one".*segment $segs[4] is missing/, 'and names it');
$r = verify('--days', 'x');
is($r->{rc}, 2, 'a --days that is not a number is a usage error');
like($r->{stderr}, qr/invalid value "x" for --days/, 'saying so');

done_testing();
