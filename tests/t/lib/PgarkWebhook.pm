# PgarkWebhook — a webhook receiver on loopback for the notification tests
# (tests/harness/webhook.py): it records every request and answers 200, or 500 a
# number of times, or never, as told.

package PgarkWebhook;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use PgarkTest;

our @EXPORT = qw(webhook_start webhook_stop webhook_mode webhook_requests webhook_wait);

my $root = $ENV{PGARK_ROOT} // File::Spec->rel2abs(dirname(__FILE__) . '/../../..');
my @hooks;

# Start one; returns { dir, port, pid, base (http://127.0.0.1:PORT) }.
sub webhook_start
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $test = File::Basename::basename($0, '.pl');
	my $log = "$PostgreSQL::Test::Utils::log_path/${test}_webhook_" . (scalar(@hooks) + 1) . '.log';
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log);
		open(STDERR, '>&', \*STDOUT);
		exec('python3', "$root/tests/harness/webhook.py", $dir) or POSIX::_exit(127);
	}
	my $wh = { dir => $dir, pid => $pid, log => $log };
	push @hooks, $wh;
	poll_until(sub { -s "$dir/port" }, 60) or croak "webhook.py did not start (log $log)";
	$wh->{port} = slurp_file("$dir/port");
	$wh->{base} = "http://127.0.0.1:$wh->{port}";
	note("webhook on $wh->{base}, records in $dir");
	return $wh;
}

sub webhook_stop
{
	my ($wh) = @_;
	return unless $wh->{pid};
	kill('KILL', $wh->{pid});
	waitpid($wh->{pid}, 0);
	$wh->{pid} = undef;
}

# "ok", "fail N" or "hang": how the next requests are answered.
sub webhook_mode
{
	my ($wh, $mode) = @_;
	write_file("$wh->{dir}/mode.new", "$mode\n");
	rename("$wh->{dir}/mode.new", "$wh->{dir}/mode") or croak "rename: $!";
}

# Every request so far: [{ time, method, path, content_type, status, body, json }],
# json being the decoded body (undef when it is not JSON).
sub webhook_requests
{
	my ($wh) = @_;
	my $file = "$wh->{dir}/requests.jsonl";
	return [] unless -f $file;
	my @r;
	for my $line (split /\n/, slurp_file($file))
	{
		my $rec = eval { decode_json($line) } or next;
		# the body is text already (webhook.py decoded it)
		$rec->{json} = eval { JSON::PP->new->decode($rec->{body}) };
		push @r, $rec;
	}
	return \@r;
}

# Poll until $cond->(requests) is true (default timeout: the harness's); returns the
# requests then, or undef.
sub webhook_wait
{
	my ($wh, $cond, $timeout) = @_;
	my $got;
	poll_until(sub { my $r = webhook_requests($wh); $got = $r if $cond->($r); $got }, $timeout);
	return $got;
}

END
{
	my $rc = $?;
	webhook_stop($_) for @hooks;
	$? = $rc;
}

1;
