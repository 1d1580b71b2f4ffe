# pgark as a systemd service (issue 21 item 5): the units of contrib/systemd pass
# `systemd-analyze verify` as `make install` installs them (DESTDIR honoured, ExecStart
# pointing at the installed binary); a receiver run with $NOTIFY_SOCKET (a datagram
# socket this test binds, as systemd would) says READY=1, sends WATCHDOG=1 every half
# $WATCHDOG_USEC, tells its STATUS=, RELOADING=1 on SIGHUP then READY=1 again, and
# STOPPING=1 on SIGTERM; and a process whose stderr is the journal ($JOURNAL_STREAM names
# it) logs "<N>" priorities without time stamps.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Temp;
use IO::Select;
use IO::Socket::UNIX;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Socket qw(SOCK_DGRAM);
use Test::More;
use Time::HiRes qw(time);
use PgarkTest;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $tmp = PostgreSQL::Test::Utils::tempdir();
my @units = map { s{.*/}{}r } sort glob("$root/contrib/systemd/*.service $root/contrib/systemd/*.timer");
is(scalar(@units), 15, 'the receiver\'s unit and seven service + timer pairs');

# make install under a DESTDIR: the binary, and the units naming it where it will be.
my $r = run_cmd([ 'make', '--no-print-directory', '-C', $root, 'BUILD=' . PgarkTest::build_dir(), 'install',
	"DESTDIR=$tmp/dest", 'PREFIX=/usr' ]);
is($r->{rc}, 0, 'make install DESTDIR=... PREFIX=/usr') or diag($r->{stderr});
ok(-x "$tmp/dest/usr/bin/pgark", 'the binary in DESTDIR/usr/bin');
my @installed = map { s{.*/}{}r } sort glob("$tmp/dest/usr/lib/systemd/system/*");
is_deeply(\@installed, \@units, 'every unit in DESTDIR/usr/lib/systemd/system');
like(slurp_file("$tmp/dest/usr/lib/systemd/system/pgark-receive\@.service"),
	qr{^ExecStart=/usr/bin/pgark --cluster %i receive$}m, 'ExecStart names /usr/bin/pgark');

# systemd-analyze verify checks that ExecStart's program exists: the units installed with
# BINDIR the build under test.
$r = run_cmd([ 'make', '--no-print-directory', '-C', $root, 'install-systemd', "UNITDIR=$tmp/units",
	'BINDIR=' . PgarkTest::build_dir() ]);
is($r->{rc}, 0, 'make install-systemd into a directory of its own') or diag($r->{stderr});
for my $u (@units)
{
	# --man=no: the man page is not installed here.
	$r = run_cmd([ 'systemd-analyze', 'verify', '--man=no', "$tmp/units/$u" ]);
	is($r->{rc}, 0, "systemd-analyze verify $u") or diag($r->{stdout} . $r->{stderr});
	is($r->{stderr}, '', "... without a remark");
}
my $receive_unit = slurp_file("$root/contrib/systemd/pgark-receive\@.service");
like($receive_unit, qr/^$_$/m, "pgark-receive\@.service: $_")
  for ('Type=notify', 'Restart=on-failure', 'ProtectSystem=strict', 'NoNewPrivileges=true',
	'PrivateTmp=true', 'ReadWritePaths=/var/lib/pgark', 'WatchdogSec=\S+');
like(slurp_file("$root/contrib/systemd/pgark-$_->[0]\@.timer"), qr/^OnCalendar=$_->[1]$/m,
	"pgark-$_->[0]\@.timer: $_->[1]")
  for ([ backup => 'daily' ], [ verify => 'daily' ], [ drill => 'weekly' ], [ expire => 'daily' ],
	[ report => 'daily' ], [ copy => '\*:0/15' ]);
like(slurp_file("$root/contrib/systemd/pgark-config-backup\@.timer"), qr/^OnCalendar=\*-\*-\* 00\/4:00:00$/m,
	'pgark-config-backup@.timer: every 4 hours (the configuration RPO)');
like(slurp_file("$root/contrib/systemd/pgark-config-backup\@.service"),
	qr/^ExecStart=\S+ --cluster %i backup --config-only$/m, 'pgark-config-backup@.service: backup --config-only');

# The receiver and $NOTIFY_SOCKET.
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "wal_keep_size = 1GB\n");
$node->start;
my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => "$tmp/repo" ] ],
		conninfo => 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres',
		create_slot => 1),
	"$tmp/pgark.yaml");

# A short directory: a socket's path has room for 107 bytes.
my $sockdir = File::Temp::tempdir('pgark-notify-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $path = "$sockdir/notify";
my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => $path) or die "bind $path: $!";

# Datagrams received, each with its arrival time, until $cond->(list) or $timeout s.
sub collect
{
	my ($s, $cond, $timeout) = @_;
	my @got;
	my $sel = IO::Select->new($s);
	my $deadline = time() + $timeout;
	while (!$cond->(\@got) && time() < $deadline)
	{
		next unless $sel->can_read(0.2);
		my $msg;
		$s->recv($msg, 4096);
		push @got, { msg => $msg, at => time() };
	}
	note("notify: " . join(' | ', map { $_->{msg} =~ s/\n/\\n/gr } @got));
	return \@got;
}
sub has { my ($list, $re) = @_; return scalar grep { $_->{msg} =~ $re } @$list }

my $rx = receiver_start($config, name => 'notify',
	env => { NOTIFY_SOCKET => $path, WATCHDOG_USEC => 1_000_000 });
my $got = collect($sock, sub { has($_[0], qr/^READY=1$/m) }, 60);
ok(has($got, qr/^READY=1\nSTATUS=/), 'READY=1 with a STATUS= line');
$got = collect($sock, sub { has($_[0], qr/^WATCHDOG=1$/m) >= 4 }, 30);
my @pings = grep { $_->{msg} =~ /^WATCHDOG=1$/m } @$got;
is(scalar(@pings), 4, 'WATCHDOG=1, again and again');
my $span = $pings[-1]{at} - $pings[0]{at};
ok($span > 1.0 && $span < 3.0, sprintf('... about every half second (3 intervals in %.2f s)', $span));
$got = collect($sock, sub { has($_[0], qr/^STATUS=streaming timeline 1, flushed [0-9A-F]+\/[0-9A-F]+; RPO local [0-9.]+ s$/m) }, 30);
ok(has($got, qr/^STATUS=streaming timeline 1/m), 'STATUS= says it streams, and the RPO');

kill 'HUP', $rx->{pid};
$got = collect($sock, sub { has($_[0], qr/^READY=1$/m) }, 30);
ok(has($got, qr/^RELOADING=1$/m), 'SIGHUP: RELOADING=1');
ok(has($got, qr/^READY=1$/m), '... then READY=1 again');
my ($i_reload) = grep { $got->[$_]{msg} =~ /^RELOADING=1$/m } 0 .. $#$got;
my ($i_ready) = grep { $got->[$_]{msg} =~ /^READY=1$/m } 0 .. $#$got;
ok(defined $i_reload && defined $i_ready && $i_reload < $i_ready, '... in that order');

kill 'TERM', $rx->{pid};
$got = collect($sock, sub { has($_[0], qr/^STOPPING=1$/m) }, 30);
ok(has($got, qr/^STOPPING=1$/m), 'SIGTERM: STOPPING=1');
is(receiver_wait_exit($rx, 30), 0, '... and a clean exit');

# An abstract socket ("@name"), and a watchdog meant for another process: no WATCHDOG=1.
my $abstract = "pgark-test-$$";
my $asock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => "\0$abstract")
  or die "bind \@$abstract: $!";
$rx = receiver_start($config, name => 'abstract',
	env => { NOTIFY_SOCKET => "\@$abstract", WATCHDOG_USEC => 200_000, WATCHDOG_PID => 1 });
$got = collect($asock, sub { has($_[0], qr/^READY=1$/m) }, 60);
ok(has($got, qr/^READY=1$/m), 'READY=1 through an abstract socket');
$got = collect($asock, sub { 0 }, 2);
is(has($got, qr/^WATCHDOG=1$/m), 0, 'no WATCHDOG=1 when WATCHDOG_PID is another process');
is(receiver_stop($rx)->{rc}, 0, 'that receiver stops cleanly');

# The journal: stderr is the file $JOURNAL_STREAM names ("DEVICE:INODE").
my $closed = free_tcp_port();
my $jconfig = write_config(
	receiver_config(
		spool => "$tmp/jspool",
		repos => [ [ local => "$tmp/jrepo" ] ],
		conninfo => "host=127.0.0.1 port=$closed dbname=postgres connect_timeout=2"),
	"$tmp/journal.yaml");

# Run pgark with stdout and stderr into $file; with $journal, JOURNAL_STREAM names the
# file (else another one). Returns the exit code and what was written.
sub run_journal
{
	my ($file, $journal, @args) = @_;
	open(my $fh, '>', $file) or die "$file: $!";
	my @st = stat($fh);
	my $ino = $journal ? $st[1] : $st[1] + 1;
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		open(STDOUT, '>&', $fh);
		open(STDERR, '>&', $fh);
		$ENV{JOURNAL_STREAM} = "$st[0]:$ino";
		$ENV{PGARK_TEST_MAX_RETRIES} = 1;
		$ENV{PGPASSFILE} = '/nonexistent';
		exec(pgark_bin(), '--config', $jconfig, @args) or exit 127;
	}
	waitpid($pid, 0);
	close($fh);
	return ($? >> 8, slurp_file($file));
}
my ($rc, $log) = run_journal("$tmp/journal.log", 1, 'receive');
isnt($rc, 0, 'a receiver whose server is not there gives up (PGARK_TEST_MAX_RETRIES)');
note($log);
my @lines = split /\n/, $log;
ok(@lines >= 3, 'it logged');
is_deeply([ grep { !/^<[3467]>\S/ } @lines ], [], 'to the journal: every line opens with <N>, no time stamp');
like($log, qr/^<6>pgark receive starting for cluster "main"/m, 'info is <6>');
like($log, qr/^<4>.*127\.0\.0\.1/m, 'a failed connection (warn) is <4>');
like($log, qr/^<3>/m, 'the final error is <3>');
($rc, $log) = run_journal("$tmp/plain.log", 0, 'receive');
like($log, qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z info   pgark receive starting/m,
	'$JOURNAL_STREAM naming another file: the usual time-stamped lines');
unlike($log, qr/^<\d>/m, '... and no priority prefix');

done_testing();
