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

our @EXPORT = qw(pgark_bin tool_bin run_cmd run_pgark write_file write_config
  s3rver_start s3rver_stop free_tcp_port);

my $root = $ENV{PGARK_ROOT}
  // File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my @s3rvers;

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
	return $js;
}

# Start an s3rver; returns { endpoint, host, port, dir, pid, access_key, secret_key }.
# Options: dir => data directory (default: a fresh temp dir), key/cert => files for
# HTTPS. It is stopped by s3rver_stop or when the test script ends.
sub s3rver_start
{
	my (%opt) = @_;
	my $js = s3rver_script();
	my $dir = $opt{dir} // PostgreSQL::Test::Utils::tempdir();
	my $scheme = $opt{cert} ? 'https' : 'http';

	for my $attempt (1 .. 5)
	{
		my $port = free_tcp_port();
		my $log = "$PostgreSQL::Test::Utils::log_path/s3rver_$port.log";
		my @cmd = (
			'node', '--openssl-legacy-provider', $js,
			'-d', $dir, '-a', '127.0.0.1', '-p', $port, '--silent');
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
			access_key => 'S3RVER',
			secret_key => 'S3RVER',
		};
		push @s3rvers, $s3;
		# Poll until it accepts connections, or it died (port taken: try another).
		for (1 .. 200)
		{
			if (waitpid($pid, WNOHANG) == $pid)
			{
				$s3->{pid} = undef;
				last;
			}
			my $c = IO::Socket::INET->new(
				PeerAddr => '127.0.0.1',
				PeerPort => $port,
				Proto => 'tcp');
			if ($c)
			{
				close($c);
				note("s3rver listening on $s3->{endpoint}, data in $dir");
				return $s3;
			}
			usleep(50_000);
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
	for (1 .. 100)
	{
		last if waitpid($s3->{pid}, WNOHANG) != 0;
		usleep(50_000);
	}
	if (waitpid($s3->{pid}, WNOHANG) == 0)
	{
		kill('KILL', $s3->{pid});
		waitpid($s3->{pid}, 0);
	}
	$s3->{pid} = undef;
	return;
}

END
{
	my $rc = $?;
	s3rver_stop($_) for @s3rvers;
	$? = $rc;
}

1;
