# disk.low and disk.ok (alerts, issue 21): the receiver watches the free space of the
# filesystems it writes. Its spool and a posix repository are on a 64 MiB filesystem of
# their own (a tmpfs mounted in a user and mount namespace the receiver runs in), with
# disk_free_min 24MiB: a file filling that filesystem past the threshold gives one
# disk.low naming both paths (one filesystem, one alarm) and the free space left;
# removed, disk.ok closing that incident. WAL keeps reaching the repository meanwhile.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;
use PgarkWebhook;

my @unshare = ('unshare', '--user', '--map-root-user', '--mount');
plan skip_all => 'unprivileged user and mount namespaces are not available (unshare)'
  unless system(@unshare, 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt') == 0;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }
sql('CREATE TABLE t (id int)');

my $wh = webhook_start();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $fs = "$tmp/fs";    # the tmpfs, seen only inside the receiver's namespace
mkdir($fs) or die "mkdir: $!";
my $config = write_config(
	receiver_config(
		spool => "$fs/spool",
		repos => [ [ local => "$fs/repo" ] ],
		conninfo => 'host=' . $node->host . ' port=' . $node->port,
		create_slot => 1,
		extra => "notify:\n  - { url: \"$wh->{base}/json\", format: json }\n")
	  . "disk_free_min: 24MiB\n",
	"$tmp/pgark.yaml");

# The receiver in its namespace: the tmpfs mounted, the spool and repository made on it.
my $rx = receiver_start(
	$config,
	# (in the namespace the user is root: libpq would log in as "root")
	env => {
		PGARK_TEST_STATUS_INTERVAL_MS => 1000,
		PGARK_TEST_NOTIFY_RETRY_MS => 200,
		PGUSER => scalar(getpwuid($<))
	},
	wrap => [
		@unshare, 'sh', '-c',
		'mount -t tmpfs -o size=64m,mode=0700 tmpfs "$0" && mkdir "$0/spool" "$0/repo" && exec "$@"',
		$fs
	]);
# Run a shell command in the receiver's namespace (nsenter: it owns the namespace).
sub in_ns
{
	my ($cmd) = @_;
	return system('nsenter', '-t', $rx->{pid}, '-U', '-m', '--preserve-credentials', 'sh', '-c', $cmd) == 0;
}
ok(poll_until(sub { in_ns("test -f $fs/spool/main/status.json") }, 60), 'the receiver streams into its spool');
ok(!-e "$fs/spool", 'on a filesystem of its own, seen only in its namespace');
sql('INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()');

sub arrived
{
	my ($name) = @_;
	my @r = grep { ($_->{json}{event} // '') eq $name } @{ webhook_requests($wh) };
	return $r[0];
}
ok(!arrived('disk.low'), 'no disk.low while the filesystem has room');

# 64 MiB, of which the spool and repository hold a few: 48 MiB more leaves less than 24.
ok(in_ns("dd if=/dev/zero of=$fs/filler bs=1M count=48 2>/dev/null"), 'a file fills the filesystem');
my $low = poll_until(sub { arrived('disk.low') }, 60);
ok($low, 'disk.low sent');
my $e = $low->{json};
like(
	$e->{summary},
	qr/^the filesystem of the spool "\Q$fs\E\/spool\/main", repository "local" \("\Q$fs\E\/repo"\) has [\d.]+ MiB free, below disk_free_min \(24 MiB\)$/,
	'naming the spool and the repository on that filesystem, the free space and the threshold')
  or diag($e->{summary});
is($e->{severity}, 'warning', 'a warning');
cmp_ok($e->{details}{free_bytes}, '<', 24 << 20, 'details: the free bytes, below the threshold');
is($e->{details}{disk_free_min_bytes}, 24 << 20, 'details: the threshold in bytes');
like($e->{todo} // '', qr/filling up/, 'saying what to do');

sql('INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()');
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
ok(in_ns("rm $fs/filler"), 'the file removed');
my $ok = poll_until(sub { arrived('disk.ok') }, 60);
ok($ok, 'disk.ok sent');
is($ok->{json}{incident}, $e->{id}, 'closing the disk.low incident');
like($ok->{json}{summary}, qr/^the filesystem of the spool .* has [\d.]+ MiB free again \(disk_free_min 24 MiB\)$/,
	'saying the space is back');
is(scalar(grep { ($_->{json}{event} // '') eq 'disk.low' } @{ webhook_requests($wh) }), 1, 'disk.low sent once');

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'the receiver stops cleanly');
done_testing();
