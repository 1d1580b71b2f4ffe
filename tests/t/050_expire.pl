# pgark expire against three backups of a small pgbench database (WAL archived by
# `pgark receive`) with retention full: 1: --dry-run removes nothing (the repository
# tree is byte for byte the same); expire keeps only the newest backup, removes the
# older manifests, the chunks only they named and the WAL before the kept backup's
# start, keeps the history and every chunk the kept backup names; verify is clean
# after it. An expire while a backup runs skips the sweep and the backup completes
# intact; a backup killed half-way leaves chunks an expire removes once its marker went
# unrefreshed for longer than the limit (not at once: its pid says nothing). Links planted
# inside the repository are not followed: nothing outside it is removed. Temporary files
# of writes that never ended go once untouched for a day, not before.
use strict;
use warnings;

use File::Find;
use IPC::Run;
use JSON::PP;
use POSIX ();
use Time::Local ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my $setup = ops_setup(dbname => 'postgres', extra => "    backup: { chunk_size: 64KiB }\n    retention: { full: 1 }\n");
my ($node, $tmp, $config) = @$setup{qw(node tmp config)};
my %root = %{ $setup->{root} };

sub sql { return $node->safe_psql('postgres', $_[0]) }
my $dump = tool_bin('repo_dump');

sub pgark { return run_pgark([ '--config', $config, @_ ]) }

sub backup
{
	my $r = pgark('backup', '--no-progress', '--json', @_);
	is($r->{rc}, 0, 'backup exits 0') or diag($r->{stderr});
	return decode_json($r->{stdout});
}

sub manifest_chunks
{
	my ($repo, $label) = @_;
	my $r = run_cmd([ $dump, $root{$repo}, 'main', 'get', "backups/$label/manifest.json" ]);
	die "cannot read manifest of $label: $r->{stderr}" if $r->{rc};
	my @lines = split /\n/, $r->{stdout};
	shift @lines;
	my %c;
	for (@lines) { $c{$_} = 1 for @{ decode_json($_)->{chunks} // [] } }
	return \%c;
}

sub chunks_on_disk
{
	my ($repo) = @_;
	my %c;
	for my $f (glob("$root{$repo}/main/chunks/*/*")) { $c{$1} = 1 if $f =~ m{/([0-9a-f]{64})$} }
	return \%c;
}

# Every file under a root with its size, mtime and content digest.
sub tree
{
	my ($dir) = @_;
	my %t;
	find(
		sub {
			return unless -f $_;
			my @s = stat($_);
			$t{$File::Find::name} = join(':', $s[7], $s[9], $s[1]);
		},
		$dir);
	return \%t;
}

sub segno
{
	my ($lsn) = @_;
	my ($h, $l) = map { hex } split m{/}, $lsn;
	return int(($h * 2**32 + $l) / 2**20);
}

sub segname { my ($tli, $s) = @_; return sprintf('%08X%08X%08X', $tli, int($s / 4096), $s % 4096) }

# --- three backups -------------------------------------------------------------------

my $rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams through its slot');
$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', 'postgres' ], 'pgbench -i -s 1');
# Named: time-based labels have one-second resolution, and these follow each other closely.
my @b;
for my $i (1 .. 3)
{
	push @b, backup('--label', "b$i");
	$node->command_ok([ 'pgbench', '-t', '300', '-n', 'postgres' ], "pgbench after backup $i");
	sql('VACUUM FULL pgbench_accounts') if $i == 1;    # new files: chunks only backup 1 names
}
my $last = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok( poll_until(
		sub {
			-f "$root{one}/main/wal/00000001/$last"
			  && -f "$root{two}/main/wal/00000001/$last";
		}),
	"both repositories hold $last");
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');
my @labels = map { $_->{label} } @b;
is(pgark('verify')->{rc}, 0, 'verify is clean before expire');

# Leftovers of writes that never ended, as a process killed mid-write leaves them: one
# untouched for two days (expire takes it), one changed an hour ago (a write that may
# still be going on: it stays).
my ($fan) = sort glob("$root{one}/main/chunks/*");
my $stale = "$fan/.0123.tmp.4242.deadbeef";
my $young = "$fan/.4567.tmp.4243.cafebabe";
for my $f ([ $stale, 2 * 86400 ], [ $young, 3600 ])
{
	open(my $fh, '>', $f->[0]) or die "$f->[0]: $!";
	print $fh 'x' x 1000;
	close($fh);
	my $t = time() - $f->[1];
	utime($t, $t, $f->[0]) or die "utime $f->[0]: $!";
}

# --- dry run -------------------------------------------------------------------------

my %before = map { ($_ => tree($root{$_})) } keys %root;
my $r = pgark('expire', '--dry-run');
is($r->{rc}, 0, 'expire --dry-run exits 0') or diag($r->{stderr});
like($r->{stdout}, qr/repository "one" \(dry run: nothing removed\)/, 'says it is a dry run');
like($r->{stdout}, qr/to expire: \Q$labels[0] $labels[1]\E/, 'names the backups it would expire');
like($r->{stdout}, qr/would remove \d+ unreferenced chunks/, 'and counts chunks');
like($r->{stdout}, qr/would remove 1 temporary files of writes that never ended \(1000 B\)/,
	'and the leftover of a write that never ended');
$r = pgark('expire', '--dry-run', '--json');
is($r->{rc}, 0, 'expire --dry-run --json exits 0');
my $dry = decode_json($r->{stdout});
is_deeply(tree($root{$_}), $before{$_}, "dry run: repository $_ unchanged") for sort keys %root;
my ($d1) = grep { $_->{name} eq 'one' } @{ $dry->{repositories} };
is_deeply($d1->{kept}, [ $labels[2] ], 'dry run: keeps the newest');
is_deeply($d1->{expired}, [ @labels[ 0, 1 ] ], 'dry run: would expire the two older');
cmp_ok($d1->{chunks}{removed}, '>', 0, 'dry run: some chunks would go');
cmp_ok($d1->{wal}{segments}, '>', 0, 'dry run: some WAL would go');
is_deeply($d1->{leftovers}, { files => 1, bytes => 1000, older_than_s => 86400 },
	'dry run: one leftover would go');

# --- expire ------------------------------------------------------------------------

my %named = map { ($_ => manifest_chunks('one', $_)) } @labels;
$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire exits 0') or diag($r->{stderr});
my $done = decode_json($r->{stdout});
my ($e1) = grep { $_->{name} eq 'one' } @{ $done->{repositories} };
is_deeply($e1->{expired}, [ @labels[ 0, 1 ] ], 'expired the two older backups');
is($e1->{chunks}{removed}, $d1->{chunks}{removed}, 'removed as many chunks as the dry run said');
is($e1->{wal}{segments}, $d1->{wal}{segments}, 'and as many segments');
ok(!defined $e1->{chunks}{skipped}, 'the sweep ran');
is($e1->{leftovers}{files}, 1, 'removed one leftover');
ok(!-e $stale, 'the leftover untouched for two days is gone');
ok(-e $young, 'the one changed an hour ago stays');
unlink($young);

my $kept_start = segno($b[2]{start_lsn});
for my $repo (sort keys %root)
{
	my $m = "$root{$repo}/main/backups";
	ok(!-e "$m/$labels[$_]/manifest.json", "repo $repo: manifest of $labels[$_] removed") for 0, 1;
	ok(!-e "$m/$labels[$_]/backup_manifest", "repo $repo: backup_manifest of $labels[$_] removed")
	  for 0, 1;
	ok(-f "$m/$labels[2]/manifest.json", "repo $repo: the newest backup stays");

	my $disk = chunks_on_disk($repo);
	my $want = manifest_chunks($repo, $labels[2]);
	my @lost = grep { !$disk->{$_} } keys %$want;
	is_deeply(\@lost, [], "repo $repo: every chunk the kept backup names is there");
	my @extra = grep { !$want->{$_} } keys %$disk;
	is_deeply(\@extra, [], "repo $repo: no chunk it does not name is left");

	my @segs = map { m{/([0-9A-F]{24})$} ? hex(substr($1, 8, 8)) * 4096 + hex(substr($1, 16)) : () }
	  glob("$root{$repo}/main/wal/00000001/*");
	my @old = grep { $_ < $kept_start } @segs;
	is_deeply(\@old, [], "repo $repo: no segment before the kept backup's start " . segname(1, $kept_start));
	ok((grep { $_ == $kept_start } @segs), "repo $repo: the kept backup's start segment stays");
	my @idx = grep { m{/([0-9A-F]{24})\.idx$} && (hex(substr($1, 8, 8)) * 4096 + hex(substr($1, 16))) < $kept_start }
	  glob("$root{$repo}/main/wal/00000001/*.idx");
	is_deeply(\@idx, [], "repo $repo: their time indexes went with them");
}
my @only_old = grep { !$named{ $labels[2] }{$_} } (keys %{ $named{ $labels[0] } }, keys %{ $named{ $labels[1] } });
ok(@only_old > 0, scalar(@only_old) . ' chunks were named by the expired backups alone');

$r = pgark('verify');
is($r->{rc}, 0, 'verify is clean after expire') or diag($r->{stdout});
# The recovery window starts at the kept backup's consistency point now.
$r = pgark('info', '--json');
is($r->{rc}, 0, 'info --json exits 0');
my ($ri) = grep { $_->{name} eq 'one' } @{ decode_json($r->{stdout})->{repositories} };
my ($w) = @{ $ri->{recovery_window} };
is($w->{timeline}, 1, 'recovery window on timeline 1');
is($w->{from_backup}, $labels[2], 'starts at the kept backup');
is($w->{from_lsn}, $b[2]{stop_lsn}, 'at its stop LSN');
# The window starts at the earliest time a restore of it reaches: the newest transaction
# before its stop point (the manifest records it), else the second after its stop time.
my $mh = decode_json((split /\n/, repo_cat($root{one}, 'main', "backups/$labels[2]/manifest.json")->{stdout})[0]);
my $earliest;
if ($mh->{consistent_time_us})
{
	my $us = $mh->{consistent_time_us};
	$earliest = POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime(int($us / 1000000)))
	  . sprintf('.%06dZ', $us % 1000000);
}
else
{
	my ($y, $mo, $d, $h, $mi, $sec) = $b[2]{stop_time} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):(\d+)Z$/;
	$earliest = POSIX::strftime('%Y-%m-%dT%H:%M:%S.000000Z',
		gmtime(Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y) + 1));
}
is($w->{from_time}, $earliest, 'and the earliest time it reaches');
cmp_ok(lsn_int($w->{to_lsn}), '>', lsn_int($w->{from_lsn}), 'ends at a later commit (pgbench after it)');
like($w->{to_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'with its commit time from the time index');
ok($w->{to_xid} > 0, 'and xid');
is($w->{missing_segments}, 0, 'no segment missing');
$r = pgark('info');
like($r->{stdout}, qr/recovery window, timeline 1: \Q$earliest\E \(backup \Q$labels[2]\E, \Q$b[2]{stop_lsn}\E\) \.\. \S+ \(last commit/,
	'info shows the window in text');

$r = pgark('expire');
is($r->{rc}, 0, 'a second expire exits 0');
like($r->{stdout}, qr/removed 0 unreferenced chunks/, 'and finds nothing more to sweep');

# The oldest point of the window is the kept backup's consistency point: a restore to
# it still works, with the rows of that moment (two pgbench runs of 300 transactions);
# a time before it was expired and is refused.
my $rn = PostgreSQL::Test::Cluster->new('restored');
$r = pgark('restore', '--pgdata', $rn->data_dir, '--target', 'immediate', '--target-action', 'promote');
is($r->{rc}, 0, 'restore to the oldest point of the window exits 0') or diag($r->{stderr});
like($r->{stdout}, qr/restored backup "\Q$labels[2]\E"/, 'from the kept backup');
$rn->append_conf('postgresql.conf', 'port = ' . $rn->port . "\n");
$rn->start;
ok($rn->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'recovery finishes');
is($rn->safe_psql('postgres', 'SELECT count(*) FROM pgbench_history'), '600',
	'the restored cluster holds the rows of that moment');
$rn->stop;
my $rn2 = PostgreSQL::Test::Cluster->new('too_early');
$r = pgark('restore', '--pgdata', $rn2->data_dir, '--target-time', $b[0]{stop_time});
is($r->{rc}, 2, 'a time before the window (an expired backup\'s) is refused');
like($r->{stderr}, qr/outside the restorable window.*before the oldest backup is consistent/,
	'saying it is before the oldest backup');

# --- a backup running while expire sweeps ----------------------------------------------

sql("CREATE TABLE rnd AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t "
	  . "FROM generate_series(1, 200000) g; CHECKPOINT");
my ($out, $err) = ('', '');
my $h;
{
	local $ENV{PGARK_TEST_MAX_RATE} = 2048;    # kB/s: a backup of some seconds
	$h = IPC::Run::start([ pgark_bin(), '--config', $config, 'backup', '--no-progress', '--json' ],
		'>', \$out, '2>', \$err);
}
ok(poll_until(sub { glob("$root{one}/main/backups/*.running") }), 'the running backup wrote its marker');
$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire during a backup exits 0') or diag($r->{stderr});
my $during = decode_json($r->{stdout});
like($_->{chunks}{skipped}, qr/backup "\d{8}T\d{6}Z" is running \(its marker refreshed \d+ s ago, pid \d+/,
	"repo $_->{name}: sweep skipped while the backup runs") for @{ $during->{repositories} };
like($_->{wal}{skipped}, qr/backup "\d{8}T\d{6}Z" is running/,
	"repo $_->{name}: and so is the WAL pruning") for @{ $during->{repositories} };
$h->finish;
is($h->result(0), 0, 'the backup completes') or diag($err);
my $b4 = decode_json($out);
ok(!glob("$root{one}/main/backups/*.running"), 'and removes its marker');
$r = pgark('verify', '--backup', $b4->{label});
is($r->{rc}, 0, 'the backup taken during expire verifies clean') or diag($r->{stdout});

# --- a killed backup's chunks are swept once its marker is stale ------------------------

sql("CREATE TABLE rnd2 AS SELECT g, md5(g::text) || md5((g * 3)::text) AS t "
	  . "FROM generate_series(1, 200000) g; CHECKPOINT");
my $before_kill = chunks_on_disk('one');
{
	# named: it may start in the second the last one ended in
	local $ENV{PGARK_TEST_MAX_RATE} = 2048;
	$h = IPC::Run::start(
		[ pgark_bin(), '--config', $config, 'backup', '--no-progress', '--label', 'killed' ],
		'>', \$out, '2>', \$err);
}
ok(poll_until(sub { scalar(grep { !$before_kill->{$_} } keys %{ chunks_on_disk('one') }) >= 4 || !$h->pumpable }),
	'killed backup wrote new chunks first');
$h->signal('KILL');
eval { $h->finish };
my @orphans = grep { !$before_kill->{$_} } keys %{ chunks_on_disk('one') };
ok(@orphans >= 4, scalar(@orphans) . ' chunks left by the killed backup');
# Its marker is as fresh as its last heartbeat: the process being gone says nothing
# (it could be in another PID namespace, or on another host).
$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire right after the kill exits 0') or diag($r->{stderr});
like(decode_json($r->{stdout})->{repositories}[0]{chunks}{skipped}, qr/is running/,
	'the killed backup\'s marker, refreshed moments ago, still holds the sweep off');
is_deeply([ grep { !chunks_on_disk('one')->{$_} } @orphans ], [], 'its chunks stay meanwhile');
# Eleven minutes later (by the writer's clock in it and by the file's time) it is stale.
for my $repo (sort keys %root)
{
	my ($file) = glob("$root{$repo}/main/backups/*.running");
	my ($label) = $file =~ m{/([^/]+)\.running$};
	my $m = decode_json(repo_cat($root{$repo}, 'main', "backups/$label.running")->{stdout});
	my $old = time() - 660;
	$m->{heartbeat_ms} = $old * 1000;
	repo_plant($root{$repo}, 'main', "backups/$label.running", encode_json($m));
	utime($old, $old, $file) or die "utime: $!";
}
$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire once the marker is stale exits 0') or diag($r->{stderr});
like($r->{stderr}, qr/left a running marker not refreshed for 6[6-9]\d s \(limit 600 s\); removing it/,
	'says the marker is stale, and removes it');
ok(!glob("$root{$_}/main/backups/*.running"), "repo $_: no marker left") for sort keys %root;
my $after = chunks_on_disk('one');
is_deeply([ grep { $after->{$_} } @orphans ], [], 'its chunks are swept');
is_deeply(decode_json($r->{stdout})->{repositories}[0]{kept}, [ $b4->{label} ], 'full: 1 keeps the newest complete backup');
$r = pgark('verify');
is($r->{rc}, 0, 'verify is clean at the end') or diag($r->{stdout});

# --- links inside a repository are never followed --------------------------------------
#
# Links planted where pgark's directories go, pointing at a live directory outside the
# repository: a folder that looks like a backup that died (expire removes those), a
# timeline's WAL directory holding a segment older than the kept backup (expire removes
# those), and a chunk directory moved to another disk with a chunk no manifest names
# (expire sweeps those). Expire follows none of them: it exits 0, warns once about each
# link, and removes nothing outside; verify finds the chunks behind the moved directory
# missing (exit 3) and names the link.

my $live = "$tmp/live";
mkdir($live) or die "mkdir $live: $!";
mkdir("$live/$_") or die "mkdir: $!" for qw(died died/sub wal);
write_file("$live/died/important.conf", "keep me\n");
write_file("$live/died/sub/data", 'x' x 1000);
write_file("$live/wal/000000090000000000000001", "an old timeline's segment\n");
my ($aa) = map { m{/([0-9a-f]{2})$} ? $1 : () } sort glob("$root{one}/main/chunks/*");
ok(defined $aa, "repository one has a chunk directory to move ($aa)");
rename("$root{one}/main/chunks/$aa", "$live/chunks-$aa") or die "rename: $!";
write_file("$live/chunks-$aa/$aa" . ('0' x 62), "a chunk no manifest names\n");
my %link = (
	"backups/20000101T000000Z" => "$live/died",
	"wal/00000009" => "$live/wal",
	"chunks/$aa" => "$live/chunks-$aa");
symlink($link{$_}, "$root{one}/main/$_") or die "symlink $_: $!" for sort keys %link;
my $live_before = tree($live);
cmp_ok(scalar(keys %$live_before), '>=', 5, 'the live directory holds files');

$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire with links in the repository exits 0') or diag($r->{stderr});
for my $l (sort keys %link)
{
	my $want = qq{repository "one": skipping "$root{one}/main/$l": it is a symbolic link, }
	  . 'which pgark does not follow inside a repository';
	my $n = () = $r->{stderr} =~ /\Q$want\E/g;
	is($n, 1, "expire warns once about the link main/$l");
}
my ($lx) = grep { $_->{name} eq 'one' } @{ decode_json($r->{stdout})->{repositories} };
is_deeply($lx->{incomplete_removed}, [], 'the linked folder is not taken for a backup that died');
is($lx->{wal}{segments}, 0, 'no WAL segment removed');
is($lx->{chunks}{removed}, 0, 'no chunk removed');
is_deeply(tree($live), $live_before, 'every file outside the repository is still there, unchanged');
ok(-l "$root{one}/main/$_", "the link main/$_ is still there") for sort keys %link;

$r = pgark('verify');
is($r->{rc}, 3, 'verify exits 3 while chunks sit behind a link');
like($r->{stdout}, qr{problem: repository "one", "chunks/$aa/$aa[0-9a-f]{62}": .* is missing},
	'the chunks behind it are missing from the repository');
like($r->{stderr},
	qr/repository "one": skipping "\Q$root{one}\E\/main\/chunks\/$aa": it is a symbolic link/,
	'and it says why: the link it does not follow');

unlink("$root{one}/main/$_") or die "unlink $_: $!" for sort keys %link;
unlink("$live/chunks-$aa/$aa" . ('0' x 62));    # gone only if expire removed it
rename("$live/chunks-$aa", "$root{one}/main/chunks/$aa") or die "rename: $!";
$r = pgark('verify');
is($r->{rc}, 0, 'verify is clean once the chunks are back in place') or diag($r->{stdout});

# --- bad conditions ------------------------------------------------------------------

$r = pgark('expire', '--bogus');
is($r->{rc}, 2, 'unknown option: exit 2');
like($r->{stderr}, qr/unknown option "--bogus" for expire/, 'unknown option: named');
my $noret = write_config(
	ops_config(
		spool => "$tmp/spool",
		conninfo => 'host=' . $node->host . ' port=' . $node->port,
		repos => [ [ one => $root{one} ] ]),
	"$tmp/noret.yaml");
$r = run_pgark([ '--config', $noret, 'expire' ]);
is($r->{rc}, 2, 'no retention configured: exit 2');
like($r->{stderr}, qr/cluster "main" has no retention/, 'no retention: says so');

done_testing();
