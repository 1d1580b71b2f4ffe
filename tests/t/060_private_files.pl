# What pgark keeps on local disk for itself is private, whatever the umask: under umask
# 022 the receiver's spool (status.json, the shippers' cursors, the segments), the
# backup fingerprint cache and wal-fetch's read-ahead cache (.want, .lock) are 0600 in
# 0700 directories. A spool or cache directory another user owns is refused: the
# receiver exits 2 naming it before it connects, a backup warns and hashes every
# chunk, wal-fetch warns and serves from the repository without the read-ahead.
# "Another user" is root: /usr is root's on every machine this runs on, and no file can
# be written there by the test user either way.
use strict;
use warnings;

use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

plan skip_all => 'needs a user other than root' if $> == 0;

umask(022);    # a common default, under which fopen() creates 0644 files

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $spool = "$tmp/spool";
my $sdir = "$spool/main";
my $repo = "$tmp/repo";
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my %base = (repos => [ [ one => $repo ] ], conninfo => $conninfo, create_slot => 1);
my $config = write_config(receiver_config(%base, spool => $spool), "$tmp/pgark.yaml");

sub mode { my @st = stat($_[0]); return @st ? sprintf('%04o', $st[2] & 07777) : 'missing' }

# --- the spool -------------------------------------------------------------------------

my $rx = receiver_start($config);
sql('CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g');
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { -f "$repo/main/wal/00000001/$seg" }, 60), "segment $seg shipped");
ok(poll_until(sub { -f "$sdir/status.json" && -f "$sdir/shipped.one" && glob("$sdir/*.partial") },
		60),
	'the spool holds a status, a cursor and the segment being filled');
my ($partial) = glob("$sdir/*.partial");
is(mode($spool), '0700', 'spool directory 0700');
is(mode($sdir), '0700', "the cluster's directory 0700");
is(mode("$sdir/status.json"), '0600', 'status.json 0600');
is(mode("$sdir/shipped.one"), '0600', "the shipper's cursor 0600");
is(mode($partial), '0600', 'the segment being filled 0600');
my @wide = grep { (stat $_)[2] & 077 } glob("$sdir/* $sdir/.[!.]*");
is_deeply(\@wide, [], 'no file in the spool is open to others');
is(receiver_stop($rx)->{rc}, 0, 'receiver stopped');

# --- the fingerprint cache ----------------------------------------------------------------

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--label', 'cached' ]);
is($r->{rc}, 0, 'backup') or diag($r->{stderr});
is(mode("$sdir/backup-fingerprints"), '0600', 'fingerprint cache 0600');

# --- wal-fetch's read-ahead ---------------------------------------------------------------

my $wal = "$tmp/fake/pg_wal";
make_path($wal);
$r = run_pgark([ '--config', $config, 'wal-fetch', $seg, "$wal/RECOVERYXLOG" ]);
is($r->{rc}, 0, "wal-fetch $seg") or diag($r->{stderr});
ok(poll_until(sub { -f "$wal/.pgark-prefetch/.want" && -f "$wal/.pgark-prefetch/.lock" }, 30),
	'the read-ahead keeps its files');
is(mode("$wal/.pgark-prefetch"), '0700', 'read-ahead cache directory 0700');
is(mode("$wal/.pgark-prefetch/.want"), '0600', '.want 0600');
is(mode("$wal/.pgark-prefetch/.lock"), '0600', '.lock 0600');

# --- directories another user owns ------------------------------------------------------------

my $me = getpwuid($>) // '';
my $not_mine = qr/is owned by uid 0 \(root\), not by uid $> \(\Q$me\E\) that runs pgark/;

# The spool itself.
my $foreign = write_config(receiver_config(%base, spool => '/usr'), "$tmp/foreign.yaml");
$r = run_pgark([ '--config', $foreign, 'receive' ]);
is($r->{rc}, 2, 'receive with a spool root owns: exit 2');
like($r->{stderr}, qr/error\s+spool directory "\/usr" $not_mine/, 'naming it and both owners');
like($r->{stderr}, qr/hint: another user could read or replace what pgark keeps there/,
	'with a hint');
unlike($r->{stderr}, qr/connect/, 'before any connection');

# The cluster's directory in a spool of ours (a link to a directory root owns).
make_path("$tmp/spool2");
symlink('/usr', "$tmp/spool2/main") or die "symlink: $!";
my $linked = write_config(receiver_config(%base, spool => "$tmp/spool2"), "$tmp/linked.yaml");
$r = run_pgark([ '--config', $linked, 'receive' ]);
is($r->{rc}, 2, "receive with a cluster directory root owns: exit 2");
like($r->{stderr}, qr/spool directory "\Q$tmp\E\/spool2\/main" $not_mine/, 'naming it');

# A backup goes on without its cache, and says why.
$r = run_pgark([ '--config', $foreign, 'backup', '--no-progress', '--label', 'uncached' ]);
is($r->{rc}, 0, 'backup with a spool root owns: still done') or diag($r->{stderr});
like($r->{stderr},
	qr/warn\s+fingerprint cache not used, every chunk is hashed: spool directory "\/usr" $not_mine/,
	'warning that the cache is not used, and why');
ok(!-e '/usr/main', 'nothing was made there');

# wal-fetch serves from the repository without the read-ahead.
my $wal2 = "$tmp/fake2/pg_wal";
make_path($wal2);
symlink('/usr', "$wal2/.pgark-prefetch") or die "symlink: $!";
$r = run_pgark([ '--config', $config, 'wal-fetch', $seg, "$wal2/RECOVERYXLOG" ]);
is($r->{rc}, 0, 'wal-fetch with a cache directory root owns: served') or diag($r->{stderr});
ok(-s "$wal2/RECOVERYXLOG", 'the segment is there');
like($r->{stderr},
	qr/warn\s+read-ahead cache directory "\Q$wal2\E\/.pgark-prefetch" $not_mine; the read-ahead is off/,
	'warning that the read-ahead is off, and why');

$node->stop;
done_testing();
