# wal-fetch's read-ahead: after serving segment N it fetches the next segments into
# pg_wal/.pgark-prefetch, and a later request is served from there (a rename, logged at
# level detail as "restored segment X from the read-ahead cache").
#  - Step by step with wal-fetch itself: after the first segment, the following ones
#    appear in the cache; the next request is served from the cache, with the same bytes
#    a plain fetch gives; segments the server has gone past are pruned.
#  - The window is wal_fetch_read_ahead segments after the last one served, and slides
#    with each request; 0 turns the read-ahead off.
#  - A request for a segment the read-ahead is fetching waits for its copy and serves
#    it; when the read-ahead ends without one, or left only a stale temporary file and
#    runs no more, the segment is fetched from the repository.
#  - A restore replaying six segments written after the backup: the server log shows
#    later segments came from the cache, the rows equal the source's, and nothing is
#    left in the cache afterwards.
#  - restore --start --wait with a target and action shutdown reports the target reached,
#    although the server log that came with the backup holds an old failure.
#  - A restore to a point before the end of the archive, started by hand: once the
#    server has left recovery, the read-ahead removes its cache from pg_wal.
#  - A segment damaged in every repository stops the server, still in recovery (not an
#    early end of recovery and promotion); repaired, a new start finishes the recovery.
use strict;
use warnings;

use Fcntl qw(:flock);
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $pgark = pgark_bin();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";

my $src = PostgreSQL::Test::Cluster->new('src');
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
log: { level: detail }
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
EOF
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', <<"EOF");
autovacuum = off
archive_mode = on
archive_command = '"$pgark" --config "$config" wal-push "%p"'
EOF
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
# As if this cluster had once been restored by pgark with --start: the server log of
# that start is in the data directory, so it is in the backup too, with the words of a
# failed attempt. A later restore --start --wait must judge by its own start only.
write_file($src->data_dir . '/pgark-start.log',
	"2026-01-01 00:00:00.000 UTC [1] FATAL:  recovery ended before configured recovery target was reached\n");
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'pgark backup') or diag($r->{stderr});

# Six segments of real WAL after the backup (several MB of inserts each, so that
# replaying one takes the server a moment), each closed with a switch.
my @segs;
for my $i (0 .. 5)
{
	sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series($i * 50000 + 1, ($i + 1) * 50000) g");
	push @segs, sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
}
ok($src->poll_query_until('postgres',
	"SELECT last_archived_wal >= '$segs[-1]' FROM pg_stat_archiver"),
	"the six segments $segs[0] .. $segs[-1] are archived");
is(scalar(grep { -f "$repo/main/wal/00000001/$_" } @segs), 6, 'all six in the repository');
my $want = sql("SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t");

# --- step by step ---------------------------------------------------------------------

my $wal = "$tmp/step/pg_wal";
my $cache = "$wal/.pgark-prefetch";
make_path($wal);
sub fetch
{
	my ($seg, $dir) = @_;
	return run_pgark([ '--config', $config, 'wal-fetch', $seg, "$dir/RECOVERYXLOG" ]);
}

$r = fetch($segs[0], $wal);
is($r->{rc}, 0, "wal-fetch $segs[0]");
unlike($r->{stderr}, qr/read-ahead cache/, 'the first one is fetched from the repository');
ok(poll_until(sub { !grep { !-f "$cache/$_" } @segs[ 1 .. 5 ] }, 60),
	'the read-ahead fetched the five segments after it into the cache');

$r = fetch($segs[1], $wal);
is($r->{rc}, 0, "wal-fetch $segs[1]");
like($r->{stderr}, qr/restored segment \Q$segs[1]\E from the read-ahead cache/,
	'served from the cache, and logged so');
ok(!-e "$cache/$segs[1]", 'it left the cache (moved, not copied)');
my $from_cache = slurp_bytes("$wal/RECOVERYXLOG");

my $plain = "$tmp/plain/pg_wal";
make_path($plain);
$r = fetch($segs[1], $plain);
is($r->{rc}, 0, 'the same segment fetched where no cache is');
unlike($r->{stderr}, qr/read-ahead cache/, 'that one from the repository');
is(length($from_cache), 16 * 1024 * 1024, 'the cached copy is a whole segment');
ok($from_cache eq slurp_bytes("$plain/RECOVERYXLOG"), 'with the same bytes');

# The server skips nothing in practice, but whatever it has gone past goes.
$r = fetch($segs[3], $wal);
like($r->{stderr}, qr/restored segment \Q$segs[3]\E from the read-ahead cache/,
	"$segs[3] from the cache too");
ok(!-e "$cache/$segs[2]", "$segs[2], passed over, was pruned");
ok(-e "$cache/$segs[4]" || -e "$cache/$segs[5]", 'the later ones stay');

# A cached copy is handed over only if it still is the whole segment it is named after:
# one cut short, or another segment under its name, is removed and the segment fetched
# from the repository, with the repository's bytes.
ok(poll_until(sub { -f "$cache/$segs[4]" && -f "$cache/$segs[5]" }, 60),
	"$segs[4] and $segs[5] are in the cache");
truncate("$cache/$segs[4]", 8 * 1024 * 1024) or die "truncate: $!";
$r = fetch($segs[4], $wal);
is($r->{rc}, 0, "wal-fetch $segs[4], its cached copy cut short");
like($r->{stderr}, qr/the read-ahead's copy of segment \Q$segs[4]\E is damaged: fetching it from the repositories/,
	'the damaged copy is reported');
unlike($r->{stderr}, qr/restored segment \Q$segs[4]\E from the read-ahead cache/, 'and not served');
my $got4 = slurp_bytes("$wal/RECOVERYXLOG");
$r = fetch($segs[4], $plain);
is($r->{rc}, 0, "$segs[4] fetched where no cache is, for reference");
ok($got4 eq slurp_bytes("$plain/RECOVERYXLOG") && length($got4) == 16 * 1024 * 1024,
	"what the server got for $segs[4] is the repository's whole segment");
write_file("$cache/$segs[5]", $got4);
$r = fetch($segs[5], $wal);
is($r->{rc}, 0, "wal-fetch $segs[5], another segment's bytes under its name in the cache");
like($r->{stderr}, qr/the read-ahead's copy of segment \Q$segs[5]\E is damaged/, 'reported too');
my $got5 = slurp_bytes("$wal/RECOVERYXLOG");
$r = fetch($segs[5], $plain);
ok($got5 eq slurp_bytes("$plain/RECOVERYXLOG"), "the server got $segs[5]'s own bytes");
ok($got5 ne $got4, "not $segs[4]'s");

# --- the size of the window ------------------------------------------------------------

sub config_with
{
	my ($depth) = @_;
	my $text = slurp_file($config);
	$text =~ s/(    repos: \[local\]\n)/$1    wal_fetch_read_ahead: $depth\n/ or die 'no repos line';
	return write_config($text, "$tmp/pgark-$depth.yaml");
}

# The k-th segment after $segs[0] (16 MiB segments: 256 a log file).
sub seg_after
{
	my ($k) = @_;
	my ($tli, $log, $seg) = map { hex } unpack('A8 A8 A8', $segs[0]);
	my $n = $log * 256 + $seg + $k;
	return sprintf('%08X%08X%08X', $tli, int($n / 256), $n % 256);
}
my @w = map { seg_after($_) } 0 .. 4;

my $two = config_with(2);
my $wwal = "$tmp/window/pg_wal";
my $wcache = "$wwal/.pgark-prefetch";
make_path($wwal);
$r = run_pgark([ '--config', $two, 'wal-fetch', $w[0], "$wwal/RECOVERYXLOG" ]);
is($r->{rc}, 0, "wal_fetch_read_ahead 2: wal-fetch $w[0]");
ok(poll_until(sub { -f "$wcache/$w[1]" && -f "$wcache/$w[2]" }, 60),
	'the two segments after it are read ahead');
ok(!-e "$wcache/$w[3]", 'but not a third');
$r = run_pgark([ '--config', $two, 'wal-fetch', $w[1], "$wwal/RECOVERYXLOG" ]);
like($r->{stderr}, qr/restored segment \Q$w[1]\E from the read-ahead cache/,
	"$w[1] from the cache");
ok(poll_until(sub { -f "$wcache/$w[3]" }, 60), 'the window slid: the next one is read ahead');
ok(!-e "$wcache/$w[4]", 'and only that one');

my $off = config_with(0);
my $owal = "$tmp/off/pg_wal";
make_path($owal);
$r = run_pgark([ '--config', $off, 'wal-fetch', $segs[0], "$owal/RECOVERYXLOG" ]);
is($r->{rc}, 0, "wal_fetch_read_ahead 0: wal-fetch $segs[0]");
ok(!-e "$owal/.pgark-prefetch", 'no read-ahead at all');

# --- a request for the segment the read-ahead is fetching --------------------------------
# At the start of a replay the server asks for segments faster than the read-ahead has
# warmed up: a request that finds its segment being fetched (the read-ahead's temporary
# copy in the cache, its lock held) waits for that copy instead of fetching the segment
# a second time. Played here by hand: this test holds the lock and the temporary file.
my $ref = "$tmp/ref/pg_wal";
make_path($ref);
is(fetch($segs[2], $ref)->{rc}, 0, "$segs[2] fetched where no cache is, for reference");
my $ref_bytes = slurp_bytes("$ref/RECOVERYXLOG");

my $awal = "$tmp/await/pg_wal";
my $acache = "$awal/.pgark-prefetch";
make_path($acache);
my $adest = "$awal/RECOVERYXLOG";
my $atmp = "$acache/.pgark-fetch.4242.$segs[2].tmp";
open(my $lock, '>', "$acache/.lock") or die "lock: $!";
flock($lock, LOCK_EX | LOCK_NB) or die "flock: $!";

# wal-fetch of $segs[2] in the background, its output in $alog; returns its pid.
my $alog = "$tmp/await.log";
sub start_fetch
{
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $alog);
		open(STDERR, '>&', \*STDOUT);
		exec($pgark, '--config', $off, 'wal-fetch', $segs[2], $adest) or POSIX::_exit(127);
	}
	return $pid;
}

# 'waiting' while it sleeps in its wait for the read-ahead's copy (the only place where
# wal-fetch sleeps), 'exited' once it has exited, else 0: what the test waits for before
# it plays the read-ahead's part, instead of a guess at how long wal-fetch takes to start.
sub fetch_state
{
	my ($pid) = @_;
	return 'waiting' if in_nanosleep($pid);
	my $stat = eval { slurp_file("/proc/$pid/stat") } // '';
	return $stat =~ /\)\s+Z\s/ || $stat eq '' ? 'exited' : 0;
}

# Its exit code, once it has exited (killed, and undef, if it does not).
sub fetch_exit
{
	my ($pid) = @_;
	my $rc;
	poll_until(
		sub {
			return 0 if waitpid($pid, WNOHANG) != $pid;
			$rc = $? >> 8;
			return 1;
		});
	if (!defined $rc)
	{
		kill('KILL', $pid);
		waitpid($pid, 0);
	}
	return $rc;
}

write_file($atmp, 'partial copy');
my $pid = start_fetch();
# the copy must appear while it waits, for the log line below
is(poll_until(sub { fetch_state($pid) }), 'waiting', 'a request for a segment being read ahead waits for it');
# the read-ahead's copy: the segment itself (a copy that is not a whole segment with its
# own header is not served, below)
# (whole, as the read-ahead's rename makes it appear: written beside it, then renamed)
write_file("$acache/.staged", $ref_bytes);
rename("$acache/.staged", "$acache/$segs[2]") or die "rename: $!";
unlink $atmp;
is(fetch_exit($pid), 0, 'and exits 0 once the copy is there');
ok(slurp_bytes($adest) eq $ref_bytes, "serving the read-ahead's copy");
like(slurp_file($alog),
	qr/restored segment \Q$segs[2]\E from the read-ahead cache, once the read-ahead had fetched it/,
	'logged so');
unlink $adest;

# The read-ahead ends without a copy (not in the archive, damaged): fetched here.
write_file($atmp, 'partial copy');
$pid = start_fetch();
is(poll_until(sub { fetch_state($pid) }), 'waiting', 'waiting again');
unlink $atmp;
is(fetch_exit($pid), 0, 'the read-ahead ended without a copy: exit 0');
ok(slurp_bytes($adest) eq $ref_bytes, "with the repository's bytes");
unlike(slurp_file($alog), qr/read-ahead cache/, 'fetched from the repository');
unlink $adest;

# A temporary file left by a read-ahead that died: no lock held, no wait for ever.
close($lock);
write_file($atmp, 'partial copy');
$pid = start_fetch();
is(fetch_exit($pid), 0, 'a stale temporary file and no read-ahead running: exit 0');
ok(slurp_bytes($adest) eq $ref_bytes, "with the repository's bytes");

# --- a restore that replays the six segments ------------------------------------------

my $dst = PostgreSQL::Test::Cluster->new('restored');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $dst->data_dir,
	'--start', '--wait', '--port', $dst->port ]);
is($r->{rc}, 0, 'restore --target latest --start --wait') or diag($r->{stderr});
$dst->_update_pid(1);
is($dst->safe_psql('postgres',
	"SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	$want, 'the rows equal the source\'s');

my $log = slurp_file($dst->data_dir . '/pgark-start.log');
my @replayed = grep { $log =~ /restored log file "\Q$_\E" from archive/ } @segs;
is(scalar @replayed, 6, 'the server replayed the six segments from wal-fetch');
my @cached = grep { $log =~ /restored segment \Q$_\E from the read-ahead cache/ } @segs;
note('served from the read-ahead cache: ' . join(' ', @cached));
# Replaying a segment of inserts takes the server far longer than reading the next one
# ahead (5 of 6 from the cache on an idle machine): at least two, even under load.
cmp_ok(scalar @cached, '>=', 2, scalar(@cached) . ' of them came from the read-ahead cache');

# When the server asks past the end of the archive, the cache empties.
my $dcache = $dst->data_dir . '/pg_wal/.pgark-prefetch';
ok(poll_until(sub { !glob("$dcache/0*") }, 30), 'no segment is left in the cache');

$dst->stop;

my $sd = PostgreSQL::Test::Cluster->new('shutdown');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $sd->data_dir,
	'--target', 'immediate', '--target-action', 'shutdown', '--start', '--wait', '--port', $sd->port ]);
is($r->{rc}, 0, 'restore --target immediate --target-action shutdown --start --wait')
  or diag($r->{stderr});
like($r->{stdout}, qr/recovery reached the target and the server shut down: .*recovery stopping after reaching consistency/,
	'reports the target reached, from this start\'s log lines');

# --- a restore started by hand, to a point before the end of the archive ---------------
# The read-ahead has fetched segments past the target, which the promoted server never
# asks for: once recovery is over (no recovery.signal), it removes the cache from pg_wal.
my $hd = PostgreSQL::Test::Cluster->new('byhand');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $hd->data_dir,
	'--target', 'immediate', '--target-action', 'promote' ]);
is($r->{rc}, 0, 'restore --target immediate --target-action promote') or diag($r->{stderr});
$hd->append_conf('postgresql.conf', 'port = ' . $hd->port);
$hd->start;
ok($hd->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'started by hand, promoted');
my $hcache = $hd->data_dir . '/pg_wal/.pgark-prefetch';
like(slurp_file($hd->logfile), qr/restored log file "[0-9A-F]{24}" from archive/,
	'its WAL came through wal-fetch');
ok(poll_until(sub { !-e $hcache }, 30), 'the read-ahead cache is gone from pg_wal after recovery');
$hd->stop;

# --- a damaged segment stops recovery instead of ending it --------------------------------
# Were a damaged (or unreachable) segment reported as missing, the server would end
# recovery before it and, restoring to latest, promote a timeline short of the WAL that
# exists. wal-fetch exits above 125: the server stops, still in recovery; once the copy
# is repaired, starting it again finishes the recovery.
my $bad = "$repo/main/wal/00000001/$segs[3]";
my $good = slurp_file($bad);
{
	open(my $fh, '+<', $bad) or die;
	binmode($fh);
	seek($fh, int(length($good) / 2), 0);
	print $fh chr(ord(substr($good, int(length($good) / 2), 1)) ^ 0xff);
	close($fh);
}
my $dd = PostgreSQL::Test::Cluster->new('damaged');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $dd->data_dir,
	'--start', '--wait', '--port', $dd->port ]);
isnt($r->{rc}, 0, 'restore --start --wait fails when a segment is damaged in every repository');
$log = slurp_file($dd->data_dir . '/pgark-start.log');
like($log, qr/\Q$segs[3]\E.*repository "local"/, 'the server log has wal-fetch\'s error naming the segment and the repository');
like($log, qr/FATAL:\s+could not restore file "\Q$segs[3]\E" from archive/, 'the server stopped on it');
unlike($log, qr/archive recovery complete|selected new timeline ID/, 'and did not end recovery or promote');
ok(poll_until(sub { !-e $dd->data_dir . '/postmaster.pid' }, 60), 'no server is left running');
my ($ctl) = run_command([ 'pg_controldata', '-D', $dd->data_dir ]);
like($ctl, qr/Database cluster state:\s+in archive recovery/, 'pg_control: still in archive recovery');

write_file($bad, $good);
# the restored configuration is the source's: this node's own port for a plain start
$dd->append_conf('postgresql.conf', 'port = ' . $dd->port);
$dd->start;
ok($dd->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'repaired, a new start ends the recovery');
is($dd->safe_psql('postgres',
	"SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	$want, 'with the source\'s rows');
$dd->stop;

$src->stop;
done_testing();
