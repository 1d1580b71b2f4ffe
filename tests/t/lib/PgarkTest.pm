# PgarkTest — helpers shared by the integration tests in tests/t/.
#
# Paths of the built binaries, config files, a throwaway s3rver on a free loopback
# port (stopped when the test ends) and running a command with its stdout, stderr
# and exit code captured. Use together with PostgreSQL::Test::Cluster; tests run
# under tests/harness/prove.sh, which sets PGARK_BUILD and PGARK_ROOT.

package PgarkTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use IO::Socket::INET;
use IPC::Run;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use Time::Local ();

our @EXPORT = qw(pgark_bin pgark_asan_bin tool_bin run_cmd run_pgark write_file write_config
  s3rver_start s3rver_stop s3_create_bucket free_tcp_port
  poll_until wait_past_stop_time in_nanosleep s3rver_unread_requests
  receiver_config local_offsite_config receiver_start receiver_stop receiver_wait_exit receiver_stop_limit
  receiver_log receiver_alive read_status repo_status repo_cat repo_plant slurp_bytes wal_mismatches
  lsn_int lsn_text seg_name seg_of_name psql_start psql_finished);

use JSON::PP;

my $root = $ENV{PGARK_ROOT}
  // File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my @s3rvers;
my @receivers;

# Directory of the build under test (the Makefile's $(BUILD), absolute).
sub build_dir
{
	my $dir = $ENV{PGARK_BUILD}
	  or croak 'PGARK_BUILD is not set: run the tests through make check';
	return $dir;
}

# The pgark binary under test.
sub pgark_bin
{
	return build_dir() . '/pgark';
}

# The address/undefined-sanitizer build of pgark ("make asan" beside the build under
# test), or undef when it was not built.
sub pgark_asan_bin
{
	my $bin = build_dir() . '-asan/pgark';
	return -x $bin ? $bin : undef;
}

# A helper program built from tests/tools/NAME.c.
sub tool_bin
{
	my ($name) = @_;
	my $path = build_dir() . "/tests/tools/$name";
	croak "test tool \"$path\" is not built (make tools)" unless -x $path;
	return $path;
}

# Run a command; returns { rc, stdout, stderr }. Options: env => { VAR => value }
# (undef deletes), stdin => text, timeout => seconds (default: the PG harness's).
sub run_cmd
{
	my ($cmd, %opt) = @_;
	my ($out, $err) = ('', '');
	my $in = $opt{stdin} // '';
	my %saved;

	while (my ($k, $v) = each %{ $opt{env} // {} })
	{
		$saved{$k} = $ENV{$k};
		if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
	}
	my $timeout = IPC::Run::timeout($opt{timeout}
		  // $PostgreSQL::Test::Utils::timeout_default);
	my $ok = eval {
		IPC::Run::run($cmd, '<', \$in, '>', \$out, '2>', \$err, $timeout);
		1;
	};
	my $rc = $ok ? $? >> 8 : -1;
	$err .= "\n[run_cmd: $@]" unless $ok;
	while (my ($k, $v) = each %saved)
	{
		if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
	}
	note(join(' ', @$cmd) . " => exit $rc");
	note("stdout: $out") if $out ne '';
	note("stderr: $err") if $err ne '';
	return { rc => $rc, stdout => $out, stderr => $err };
}

# Run pgark with arguments (and run_cmd's options after a hash ref:
# run_pgark(['info', '--json'], env => {...})).
sub run_pgark
{
	my ($args, %opt) = @_;
	return run_cmd([ pgark_bin(), @$args ], %opt);
}

sub write_file
{
	my ($path, $content, $mode) = @_;
	make_path(dirname($path));
	open(my $fh, '>', $path) or croak "could not write \"$path\": $!";
	print $fh $content;
	close($fh) or croak "could not write \"$path\": $!";
	chmod($mode // 0600, $path);
	return $path;
}

# Write a pgark YAML config (text) to $path, or to a fresh temp dir; returns the path.
sub write_config
{
	my ($yaml, $path) = @_;
	$path //= PostgreSQL::Test::Utils::tempdir() . '/pgark.yaml';
	return write_file($path, $yaml, 0600);
}

# A TCP port on 127.0.0.1 nobody listens on right now. The kernel picks it from the
# ephemeral range, which the PostgreSQL harness (10200-32767) does not use.
sub free_tcp_port
{
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto => 'tcp',
		Listen => 1) or croak "could not find a free port: $!";
	my $port = $sock->sockport;
	close($sock);
	return $port;
}

sub s3rver_script
{
	my $js = "$root/tests/harness/s3/node_modules/s3rver/bin/s3rver.js";
	croak "s3rver is not installed at \"$js\": run make deps" unless -f $js;
	return "$root/tests/harness/s3rver-atomic.js";    # s3rver with atomic PUTs
}

# Start an s3rver; returns { endpoint, host, port, dir, pid, access_key, secret_key }.
# Options: dir => data directory (default: a fresh temp dir), key/cert => files for
# HTTPS, port => the port to listen on (to restart one where it was; default: a
# free one), log_requests => 1 to have it log one line per request answered in the
# file $s3->{log} (the tail of "METHOD /bucket/key STATUS TIMEms SIZE": its logger cuts
# the front, the method with it). It is stopped by s3rver_stop or when
# the test script ends.
sub s3rver_start
{
	my (%opt) = @_;
	my $js = s3rver_script();
	my $dir = $opt{dir} // PostgreSQL::Test::Utils::tempdir();
	my $scheme = $opt{cert} ? 'https' : 'http';

	for my $attempt (1 .. 5)
	{
		my $port = $opt{port} // free_tcp_port();
		my $log = "$PostgreSQL::Test::Utils::log_path/s3rver_$port.log";
		my @cmd = (
			'node', '--openssl-legacy-provider', $js,
			'-d', $dir, '-a', '127.0.0.1', '-p', $port);
		push @cmd, '--silent' unless $opt{log_requests};
		push @cmd, ('--key', $opt{key}, '--cert', $opt{cert}) if $opt{cert};

		my $pid = fork() // croak "fork: $!";
		if ($pid == 0)
		{
			open(STDIN, '<', '/dev/null');
			open(STDOUT, '>>', $log);
			open(STDERR, '>&', \*STDOUT);
			exec(@cmd) or POSIX::_exit(127);
		}
		my $s3 = {
			pid => $pid,
			port => $port,
			host => '127.0.0.1',
			dir => $dir,
			endpoint => "$scheme://127.0.0.1:$port",
			log => $log,
			access_key => 'S3RVER',
			secret_key => 'S3RVER',
		};
		push @s3rvers, $s3;
		# Poll until it accepts connections, or it died (port taken: try another). Node
		# can take many seconds to start on a loaded machine.
		my $up = poll_until(
			sub {
				if (waitpid($pid, WNOHANG) == $pid)
				{
					$s3->{pid} = undef;
					return 'died';
				}
				my $c = IO::Socket::INET->new(
					PeerAddr => '127.0.0.1',
					PeerPort => $port,
					Proto => 'tcp') or return 0;
				close($c);
				return 'listening';
			});
		if ($up eq 'listening')
		{
			note("s3rver listening on $s3->{endpoint}, data in $dir");
			return $s3;
		}
		s3rver_stop($s3);
		diag("s3rver did not start on port $port (attempt $attempt), see $log");
	}
	croak 's3rver would not start';
}

sub s3rver_stop
{
	my ($s3) = @_;
	return unless $s3 && $s3->{pid};
	kill('TERM', $s3->{pid});
	# Killed if it has not gone within 5 s (its writes are atomic: s3rver-atomic.js).
	if (!poll_until(sub { waitpid($s3->{pid}, WNOHANG) != 0 }, 5))
	{
		kill('KILL', $s3->{pid});
		waitpid($s3->{pid}, 0);
	}
	$s3->{pid} = undef;
	return;
}

# Create a bucket (s3rver does not check signatures: a bare PUT does). Returns 1.
sub s3_create_bucket
{
	my ($s3, $bucket) = @_;
	require HTTP::Tiny;
	my $r = HTTP::Tiny->new(timeout => 10)->put("$s3->{endpoint}/$bucket");
	croak "could not create bucket \"$bucket\": $r->{status} $r->{content}"
	  unless $r->{success};
	return 1;
}

# --- waiting -----------------------------------------------------------------------

# Poll $cond (a code ref) every 50 ms until it returns true or $timeout seconds pass;
# returns its last value. The default timeout is the PostgreSQL harness's (180 s, or
# PG_TEST_TIMEOUT_DEFAULT), as for its poll_query_until: generous, because the suite
# runs on loaded machines, and a condition that holds returns at once anyway. Give a
# timeout only when the number means something (a negative check over a window), and
# say what. No sleeps where a poll will do.
sub poll_until
{
	my ($cond, $timeout) = @_;
	$timeout //= $PostgreSQL::Test::Utils::timeout_default;
	my $deadline = Time::HiRes::time() + $timeout;
	while (1)
	{
		my $v = $cond->();
		return $v if $v;
		return $v if Time::HiRes::time() >= $deadline;
		usleep(50_000);
	}
}

# Wait until the wall clock is a whole second past a backup's stop_time (the UTC text
# "YYYY-MM-DDTHH:MM:SSZ" of backup --json, whole seconds). A restore uses a backup for
# a target time at or after its stop_time + 1 s, so a commit made once this returns can
# be a target that backup serves. Waits on the recorded time, not on when the command
# returned; dies on a text that is not such a time.
sub wait_past_stop_time
{
	my ($stop_time) = @_;
	my ($y, $mo, $d, $h, $mi, $s) =
	  ($stop_time // '') =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z$/
	  or croak "not a backup stop_time: \"" . ($stop_time // 'undef') . '"';
	my $usable = Time::Local::timegm($s, $mi, $h, $d, $mo - 1, $y) + 1;
	poll_until(sub { Time::HiRes::time() >= $usable })
	  or croak "the clock did not pass $stop_time + 1 s";
	return;
}

# True while process $pid sleeps in nanosleep, as the kernel's wait channel for it says.
# The programs under test pause that way (usleep) only in their wait loops: a test sees
# that one has reached such a loop instead of guessing how long it takes to get there.
sub in_nanosleep
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/wchan") or return 0;
	my $wchan = <$fh> // '';
	close($fh);
	return $wchan =~ /nanosleep/ ? 1 : 0;
}

# Connections to an s3rver that hold request bytes it has not read. While the server is
# stopped (SIGSTOP) the kernel still accepts connections and queues what clients send:
# a count above 0 then means an upload is under way and waits for an answer that does
# not come. (IPv4 loopback, from /proc/net/tcp: established sockets on the server's
# port with a receive queue.)
sub s3rver_unread_requests
{
	my ($s3) = @_;
	my $port = sprintf('%04X', $s3->{port});
	my $n = 0;
	open(my $fh, '<', '/proc/net/tcp') or croak "could not read /proc/net/tcp: $!";
	while (my $line = <$fh>)
	{
		my (undef, $local, undef, $state, $queues) = split ' ', $line;
		next unless defined $queues && $local =~ /:$port$/ && $state eq '01';
		my (undef, $rx) = split /:/, $queues;
		$n++ if hex($rx) > 0;
	}
	close($fh);
	return $n;
}

# --- the WAL receiver ------------------------------------------------------------

# YAML for one cluster received into posix repositories. Options: spool (dir),
# repos => [ [name, path], ... ], cluster (default "main"), conninfo, slot,
# create_slot, synchronous, partial (the cluster's partial_upload_interval, default
# "0s": the S3 repositories'), local_partial (each posix repository's own
# partial_upload_interval; default unset: 1s),
# passphrase_file, spool_max, level (log level, default "detail"), extra (text
# appended to the cluster section), s3 => [ [name, $s3rver, bucket, { key => value
# overrides }], ... ] (S3 repositories, after the posix ones; allow_http: true when
# the endpoint is http://, as the tests' s3rver is, unless an override says otherwise).
sub receiver_config
{
	my (%o) = @_;
	my $cluster = $o{cluster} // 'main';
	my $yaml = "spool: $o{spool}\n";
	$yaml .= "spool_max: $o{spool_max}\n" if defined $o{spool_max};
	$yaml .= "log: { level: " . ($o{level} // 'detail') . " }\n";
	$yaml .= "repos:\n";
	my $lp = defined $o{local_partial} ? ", partial_upload_interval: $o{local_partial}" : '';
	$yaml .= "  $_->[0]: { type: posix, path: $_->[1]$lp }\n" for @{ $o{repos} };
	for my $r (@{ $o{s3} // [] })
	{
		my ($name, $s3, $bucket, $over) = @$r;
		my %k = (
			endpoint => $s3->{endpoint},
			bucket => $bucket,
			access_key_id => $s3->{access_key},
			secret_access_key => $s3->{secret_key},
			retries => 1,
			%{ $over // {} });
		# The tests' s3rver speaks plain http://, which a repository must allow.
		$k{allow_http} //= 'true' if $k{endpoint} =~ m{^http://};
		$yaml .= "  $name: { type: s3, "
		  . join(', ', map { "$_: $k{$_}" } sort keys %k) . " }\n";
	}
	$yaml .= "encryption: { passphrase_file: $o{passphrase_file} }\n"
	  if $o{passphrase_file};
	$yaml .= "clusters:\n  $cluster:\n";
	$yaml .= "    conninfo: \"$o{conninfo}\"\n";
	$yaml .= "    slot: $o{slot}\n" if $o{slot};
	$yaml .= "    create_slot: " . ($o{create_slot} ? 'true' : 'false') . "\n";
	$yaml .= "    synchronous: " . ($o{synchronous} ? 'true' : 'false') . "\n";
	$yaml .= "    partial_upload_interval: " . ($o{partial} // '0s') . "\n";
	$yaml .= "    repos: ["
	  . join(', ', map { $_->[0] } @{ $o{repos} }, @{ $o{s3} // [] }) . "]\n";
	$yaml .= $o{extra} if $o{extra};
	return $yaml;
}

# YAML of the pair the end-to-end tests use: cluster "main" received into "local"
# (posix, at local) and "offsite" (S3 on the s3rver s3, in bucket under prefix site1/),
# both encrypted under passphrase_file when it is given; no copies of the segment being
# filled. Options: spool, local, s3, bucket, passphrase_file, conninfo, extra (text
# appended to the cluster's section).
sub local_offsite_config
{
	my (%o) = @_;
	my $s3 = $o{s3};
	my $enc = $o{passphrase_file} ? "encryption: { passphrase_file: $o{passphrase_file} }\n" : '';
	return <<"EOF" . ($o{extra} // '');
spool: $o{spool}
log: { level: detail }
repos:
  local: { type: posix, path: $o{local} }
  offsite:
    type: s3
    endpoint: $s3->{endpoint}
    allow_http: true
    bucket: $o{bucket}
    prefix: site1/
    access_key_id: $s3->{access_key}
    secret_access_key: $s3->{secret_key}
${enc}clusters:
  main:
    conninfo: "$o{conninfo}"
    create_slot: true
    partial_upload_interval: 0s
    repos: [local, offsite]
EOF
}

# psql with the given arguments (e.g. -c STATEMENT ...) against dbname postgres of a
# PostgreSQL::Test::Cluster, in the background: { h, out, err }; psql_finished tells
# whether it has ended without waiting, and then holds its exit code in {rc}.
sub psql_start
{
	my ($node, $timeout, @args) = @_;
	my $c = { out => '', err => '' };
	$c->{h} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), @args ],
		'<', \undef, '>', \$c->{out}, '2>', \$c->{err},
		IPC::Run::timeout($timeout));
	return $c;
}

sub psql_finished
{
	my ($c) = @_;
	return 1 if defined $c->{rc};
	$c->{h}->pump_nb if $c->{h}->pumpable;
	return 0 if $c->{h}->pumpable;
	$c->{h}->finish;
	$c->{rc} = $c->{h}->full_result(0) >> 8;
	return 1;
}

# Start "pgark --config FILE receive" in the background, stdout and stderr into a
# log file. Options: env => { VAR => value }, args => [ extra global options ],
# name (for the log file), bin => another pgark binary (the sanitizer build's),
# wrap => [ a command that execs the rest, as unshare does ].
# Returns a handle for the functions below.
sub receiver_start
{
	my ($config, %opt) = @_;
	my $name = $opt{name} // 'receiver';
	# One log per receiver, named after the test file: test files run in parallel.
	my $test = File::Basename::basename($0, '.pl');
	my $log = "$PostgreSQL::Test::Utils::log_path/${test}_${name}_" . (scalar(@receivers) + 1) . '.log';
	my @cmd = (@{ $opt{wrap} // [] }, $opt{bin} // pgark_bin(), '--config', $config, @{ $opt{args} // [] }, 'receive');
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		while (my ($k, $v) = each %{ $opt{env} // {} })
		{
			if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
		}
		$ENV{PGPASSFILE} //= '/nonexistent';
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	my $rx = { pid => $pid, log => $log, cmd => \@cmd };
	push @receivers, $rx;
	note("started receiver pid $pid, log $log");
	return $rx;
}

sub receiver_alive
{
	my ($rx) = @_;
	return 0 unless $rx->{pid};
	my $r = waitpid($rx->{pid}, WNOHANG);
	return 1 if $r == 0;
	$rx->{rc} = $? & 127 ? 128 + ($? & 127) : $? >> 8;
	$rx->{pid} = undef;
	return 0;
}

# Wait up to $timeout seconds for the receiver to exit by itself; returns its exit
# code (128+signal when killed), or undef if it is still running.
sub receiver_wait_exit
{
	my ($rx, $timeout) = @_;
	poll_until(sub { !receiver_alive($rx) }, $timeout // 60);
	return $rx->{pid} ? undef : $rx->{rc};
}

# How many seconds a receiver may take to stop, or to reload, and still count as prompt.
# By design it waits at most 3 s for the server to end the stream and 3 s for an upload
# under way before it abandons it (the spool keeps what it was shipping). What a stop
# must never wait for is longer: an upload stalled until libcurl gives up (30 s without
# progress), the silence limit (60 s), a reconnection back-off (up to 30 s). The bound is
# generous so that a loaded machine does not fail it; the time taken is in the log.
sub receiver_stop_limit { return 20 }

# Send $sig (default TERM) and wait for the exit. Returns { rc, seconds }: the exit
# code and how long the receiver took to go. Killed after 30 s (rc undef then).
sub receiver_stop
{
	my ($rx, $sig) = @_;
	return { rc => $rx->{rc}, seconds => 0 } unless $rx->{pid};
	my $t0 = Time::HiRes::time();
	kill($sig // 'TERM', $rx->{pid});
	my $rc = receiver_wait_exit($rx, 30);
	my $secs = Time::HiRes::time() - $t0;
	if (!defined $rc)
	{
		kill('KILL', $rx->{pid});
		waitpid($rx->{pid}, 0);
		$rx->{pid} = undef;
	}
	note(sprintf('receiver stopped by SIG%s: exit %s after %.2f s',
			$sig // 'TERM', $rc // 'none', $secs));
	return { rc => $rc, seconds => $secs };
}

sub receiver_log
{
	my ($rx) = @_;
	return -f $rx->{log} ? slurp_file($rx->{log}) : '';
}

# The receiver's status.json as a hash, or undef while there is none.
sub read_status
{
	my ($spool_dir) = @_;
	my $path = "$spool_dir/status.json";
	return undef unless -f $path;
	my $text = eval { slurp_file($path) } // return undef;
	return eval { JSON::PP->new->decode($text) };
}

# Repository $name's entry in the receiver's status.json under $spool_dir; {} while
# there is none (no file yet, or no such repository), so a caller can look at a key.
sub repo_status
{
	my ($spool_dir, $name) = @_;
	my $st = read_status($spool_dir) // {};
	my ($r) = grep { $_->{name} eq $name } @{ $st->{repos} // [] };
	return $r // {};
}

# An object's verified plaintext through tests/tools/repo_cat: { rc, stdout, stderr }.
# Options: passphrase => text, header => 1 (print the envelope header instead).
sub repo_cat
{
	my ($root, $cluster, $path, %opt) = @_;
	my @cmd = (tool_bin('repo_cat'), $root, $cluster, $opt{header} ? ('-h') : (), $path);
	my ($out, $err) = ('', '');
	my $init = sub {
		if (defined $opt{passphrase}) { $ENV{PGARK_PASSPHRASE} = $opt{passphrase} }
		else { delete $ENV{PGARK_PASSPHRASE} }
	};
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, init => $init);
	return { rc => $? >> 8, stdout => $out, stderr => $err };
}

# Segments $from..$to (numbers, timeline 1) whose copy in any of @repos (repo_cat roots)
# is missing or differs from pg_wal's: a list of "repo/segment", empty when all match.
sub wal_mismatches
{
	my ($pgwal, $from, $to, @repos) = @_;
	my @bad;
	for my $segno ($from .. $to)
	{
		my $name = seg_name(1, $segno);
		my $want = slurp_bytes("$pgwal/$name");
		for my $repo (@repos)
		{
			my $got = repo_cat($repo, 'main', "wal/00000001/$name");
			push @bad, "$repo/$name" unless $got->{rc} == 0 && $got->{stdout} eq $want;
		}
	}
	return @bad;
}

# Write $content as object $path of a posix repository, as a proper envelope (the way a
# second writer of the repository would); dies on failure.
sub repo_plant
{
	my ($root, $cluster, $path, $content) = @_;
	my $r = run_cmd([ tool_bin('repo_cat'), $root, $cluster, '-w', $path ], stdin => $content);
	die "repo_cat -w $path failed: $r->{stderr}" if $r->{rc} != 0;
	return;
}

# LSN text "X/X" <-> integer; WAL segment names for 16 MiB segments (the suite's).
sub lsn_int
{
	my ($text) = @_;
	my ($hi, $lo) = $text =~ m{^([0-9A-Fa-f]+)/([0-9A-Fa-f]+)$}
	  or croak "not an LSN: \"$text\"";
	return hex($hi) * 4294967296 + hex($lo);
}

sub lsn_text
{
	my ($lsn) = @_;
	return sprintf('%X/%X', int($lsn / 4294967296), $lsn % 4294967296);
}

my $SEG = 16 * 1024 * 1024;

# Name of segment number $segno on timeline $tli.
sub seg_name
{
	my ($tli, $segno) = @_;
	return sprintf('%08X%08X%08X', $tli, int($segno / 256), $segno % 256);
}

# (tli, segno) of a segment name.
sub seg_of_name
{
	my ($name) = @_;
	my ($tli, $hi, $lo) = $name =~ /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})/
	  or croak "not a segment name: \"$name\"";
	return (hex($tli), hex($hi) * 256 + hex($lo));
}

sub slurp_bytes
{
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or croak "could not read \"$path\": $!";
	local $/;
	my $data = <$fh>;
	close($fh);
	return $data;
}

END
{
	my $rc = $?;
	for my $rx (@receivers)
	{
		next unless $rx->{pid};
		kill('KILL', $rx->{pid});
		waitpid($rx->{pid}, 0);
	}
	s3rver_stop($_) for @s3rvers;
	$? = $rc;
}

1;
