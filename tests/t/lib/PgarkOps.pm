# PgarkOps — helpers of the tests of the operations commands (check, verify): a
# `pgark receive` in the background to fill posix repositories, and the
# YAML of one cluster. Kept apart from PgarkTest so that receiver helpers written for
# the receiver's own tests can land there without a clash; the names differ.

package PgarkOps;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename ();
use File::Path qw(make_path);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

our @EXPORT = qw(ops_config ops_setup ops_receiver_start ops_receiver_stop wait_for);

my @running;

# PgarkTest's poll_until under the name the operations tests first used; new tests
# call poll_until.
sub wait_for
{
	return poll_until(@_);
}

# YAML for cluster "main" received into posix repositories:
# ops_config(spool => DIR, conninfo => ..., repos => [[name, path], ...],
#            rpo_target => '15m', create_slot => 1, extra => "...")
sub ops_config
{
	my (%o) = @_;
	make_path($o{spool});
	my $yaml = "spool: $o{spool}\nlog: { level: detail }\nrepos:\n";
	# No copies of the segment being filled: what these tests count is complete segments.
	$yaml .= "  $_->[0]: { type: posix, path: $_->[1], partial_upload_interval: 0s }\n"
	  for @{ $o{repos} };
	$yaml .= "clusters:\n  main:\n";
	$yaml .= "    conninfo: \"$o{conninfo}\"\n";
	$yaml .= "    create_slot: " . ($o{create_slot} ? 'true' : 'false') . "\n";
	$yaml .= "    partial_upload_interval: 0s\n";
	$yaml .= "    rpo_target: " . ($o{rpo_target} // '15m') . "\n";
	$yaml .= "    repos: [" . join(', ', map { $_->[0] } @{ $o{repos} }) . "]\n";
	$yaml .= $o{extra} if $o{extra};
	return $yaml;
}

# The set-up most operations tests share: a started cluster "primary" with 1 MiB WAL
# segments (many segments for little WAL) and the postgresql.conf lines given in conf
# (default: autovacuum off), two posix repositories "one" and "two" in a fresh temporary
# directory, and a config file naming them with a replication slot created by the
# receiver; extra is appended to the cluster's section. Returns { node, tmp, root =>
# { one => DIR, two => DIR }, config }.
sub ops_setup
{
	my (%o) = @_;
	my $node = PostgreSQL::Test::Cluster->new('primary');
	$node->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
	$node->append_conf('postgresql.conf', $o{conf} // "autovacuum = off\n");
	$node->start;
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my %root = (one => "$tmp/repo1", two => "$tmp/repo2");
	my $config = write_config(
		ops_config(
			spool => "$tmp/spool",
			conninfo => 'host=' . $node->host . ' port=' . $node->port
			  . ($o{dbname} ? " dbname=$o{dbname}" : ''),
			repos => [ [ one => $root{one} ], [ two => $root{two} ] ],
			create_slot => 1,
			extra => $o{extra}),
		"$tmp/pgark.yaml");
	return { node => $node, tmp => $tmp, root => \%root, config => $config };
}

# Start "pgark --config FILE receive" in the background, output to a log file.
sub ops_receiver_start
{
	my ($config) = @_;
	my ($test) = File::Basename::basename($0) =~ /^([^.]+)/;
	my $log = "$PostgreSQL::Test::Utils::tmp_check/${test}_receiver_" . (scalar(@running) + 1) . '.log';
	my $pid = fork() // croak "fork: $!";
	if ($pid == 0)
	{
		$ENV{PGPASSFILE} = '/nonexistent';
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log);
		open(STDERR, '>&', \*STDOUT);
		exec(pgark_bin(), '--config', $config, 'receive') or POSIX::_exit(127);
	}
	my $rx = { pid => $pid, log => $log };
	push @running, $rx;
	note("receiver pid $pid, log $log");
	return $rx;
}

# SIGTERM and wait (SIGKILL after 30 s); returns the exit code.
sub ops_receiver_stop
{
	my ($rx) = @_;
	return $rx->{rc} unless $rx->{pid};
	kill('TERM', $rx->{pid});
	my $done = poll_until(sub { waitpid($rx->{pid}, WNOHANG) == $rx->{pid} }, 30);
	if (!$done)
	{
		kill('KILL', $rx->{pid});
		waitpid($rx->{pid}, 0);
	}
	$rx->{rc} = $? >> 8;
	$rx->{pid} = undef;
	return $rx->{rc};
}

END
{
	my $rc = $?;
	for my $rx (@running)
	{
		next unless $rx->{pid};
		kill('KILL', $rx->{pid});
		waitpid($rx->{pid}, 0);
	}
	$? = $rc;
}

1;
