# PgarkSwift — a throwaway OpenStack Swift with its S3 API, for the integration tests.
#
# tests/harness/swift-s3.py runs a one-node Swift (account, container, object and
# proxy servers in one Python process, s3api and tempauth in the proxy) over HTTPS
# with a CA made for the run. Unlike s3rver it verifies every request's SigV4
# signature, Content-MD5 and payload hash, and it answers a conditional PUT
# (If-None-Match: *) with 501 NotImplemented. Started once per test file: about 3 s of
# its own after Python's start-up. Stopped by swift_stop or when the test script ends;
# its log is in the test's log directory.
package PgarkSwift;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename qw(basename dirname);
use File::Spec;
use IO::Select;
use IPC::Run;
use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(swift_start swift_stop swift_revoke);

my $root = $ENV{PGARK_ROOT}
  // File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my $python = '/usr/bin/python3';    # Debian's, which python3-swift installs into
my @swifts;

# It says so itself when python3-swift is missing (its log is shown then).
sub swift_script
{
	my $py = "$root/tests/harness/swift-s3.py";
	croak "\"$py\" is missing" unless -f $py;
	return $py;
}

# Start a Swift; returns { endpoint (https://127.0.0.1:PORT), port, ca_file,
# access_key ("test:tester"), secret_key, region, pid, dir, log }. Options:
# buckets => [ names ] created before it returns; dir => where its store goes
# (default: a fresh temp dir); timeout => seconds to wait for it (default 180);
# users => { NAME => KEY } more users of the account (access key "test:NAME").
sub swift_start
{
	my (%opt) = @_;
	my $py = swift_script();
	my $dir = $opt{dir} // PostgreSQL::Test::Utils::tempdir();
	my $test = basename($0, '.pl');
	my $log = "$PostgreSQL::Test::Utils::log_path/${test}_swift_" . (scalar(@swifts) + 1) . '.log';
	my @cmd = ($python, $py, "$dir/swift", map { ('--bucket', $_) } @{ $opt{buckets} // [] });
	my %users = %{ $opt{users} // {} };
	push @cmd, map { ('--user', "$_:$users{$_}") } sort keys %users;

	pipe(my $from, my $to) or croak "pipe: $!";
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		close($from);
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>&', $to);
		open(STDERR, '>>', $log);
		exec(@cmd) or POSIX::_exit(127);
	}
	close($to);
	my $sw = { pid => $pid, log => $log };
	push @swifts, $sw;

	# One JSON line on stdout once its buckets exist.
	my $line = '';
	my $sel = IO::Select->new($from);
	my $deadline = Time::HiRes::time() + ($opt{timeout} // 180);
	while (Time::HiRes::time() < $deadline && $line !~ /\n/)
	{
		next unless $sel->can_read(0.5);
		last unless sysread($from, $line, 4096, length($line));
	}
	close($from);
	my $info = $line =~ /\n/ ? eval { decode_json($line) } : undef;
	if (!$info || !$info->{endpoint})
	{
		swift_stop($sw);
		diag("swift did not start; its log ($log):\n"
			  . (-f $log ? slurp_file($log) : '(none)'));
		croak 'swift would not start';
	}
	%$sw = (%$info, pid => $pid, log => $log);
	note("swift listening on $sw->{endpoint}, log $log");
	return $sw;
}

# Take access keys out of the running server: refused from the moment this returns
# (it waits for the server to say so in its log).
sub swift_revoke
{
	my ($sw, @keys) = @_;
	my $file = "$sw->{dir}/revoke";
	open(my $fh, '>', $file) or croak "$file: $!";
	print $fh map { "$_\n" } @keys;
	close($fh) or croak "$file: $!";
	my $before = -f $sw->{log} ? -s $sw->{log} : 0;
	kill('USR1', $sw->{pid}) or croak "kill USR1 $sw->{pid}: $!";
	my $deadline = Time::HiRes::time() + 60;
	while (Time::HiRes::time() < $deadline)
	{
		my $log = slurp_file($sw->{log});
		my $new = substr($log, $before);
		return if !grep { $new !~ /revoked \Q$_\E$/m } @keys;
		usleep(100_000);
	}
	croak "swift did not revoke @keys";
}

sub swift_stop
{
	my ($sw) = @_;
	return unless $sw && $sw->{pid};
	kill('TERM', $sw->{pid});
	for (1 .. 100)
	{
		last if waitpid($sw->{pid}, WNOHANG) != 0;
		usleep(50_000);
	}
	if (waitpid($sw->{pid}, WNOHANG) == 0)
	{
		kill('KILL', $sw->{pid});
		waitpid($sw->{pid}, 0);
	}
	$sw->{pid} = undef;
	return;
}

END
{
	my $rc = $?;
	swift_stop($_) for @swifts;
	$? = $rc;
}

1;
