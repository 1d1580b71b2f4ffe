# A backup's chunks are durable before its manifest (issue 25): each chunk is written
# under a temporary name, and a flush (at the barrier before manifest.json, or when
# enough are waiting) fsyncs them and only then renames them to their names; the chunk
# directories are fsynced once each, at the barrier. A failure of either fsync fails
# the backup with the path named and no manifest.json left behind; a backup killed
# before a flush leaves temporary files that nothing counts, killed after it chunks
# the next backup reuses. The next backup completes and verifies.
use strict;
use warnings;

use File::Find;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo";

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
$src->safe_psql('postgres',
	'CREATE TABLE t AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 20000) g');

my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $local }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
    backup: { chunk_size: 256KiB }
EOF
mkdir("$tmp/spool") or die "mkdir: $!";

sub manifests
{
	my @found;
	find(sub { push @found, $File::Find::name if $_ eq 'manifest.json' }, $local)
	  if -d $local;
	return scalar @found;
}

# Files below the chunk store: chunks under their names, and temporary files.
sub chunk_files
{
	my ($names, $temps) = (0, 0);
	find(sub {
		$names++ if /^[0-9a-f]{64}$/;
		$temps++ if /^\..*\.tmp\./;
	}, "$local/main/chunks") if -d "$local/main/chunks";
	return ($names, $temps);
}

# The fsync of the chunk files at the flush fails (a test knob of the posix driver:
# every file whose path starts with main/chunks/): nothing is published.
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress' ],
	env => { PGARK_TEST_FAIL_FILE_FSYNC => 'main/chunks/' });
is($r->{rc}, 1, 'a failed file fsync at the flush fails the backup');
like(
	$r->{stderr},
	qr{could not fsync "\Q$local\E/main/chunks/[0-9a-f]{2}/[0-9a-f]{64}": Input/output error},
	'the error names the chunk');
like($r->{stderr}, qr/while making (the chunks stored in repository "local"|earlier writes) durable/,
	'and says what was being made durable');
is(manifests(), 0, 'no manifest.json was written');
is_deeply([ chunk_files() ], [ 0, 0 ], 'no chunk under its name, no temporary file left');

# Start a backup paused at hook $var and SIGKILL it there.
sub kill_at
{
	my ($var) = @_;
	my $flag = "$tmp/pause-$var";
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ pgark_bin(), '--config', $config, 'backup', '--no-progress' ],
		'<', \undef, '>', \$out, '2>', \$err, init => sub { $ENV{$var} = $flag });
	ok(poll_until(sub { -s $flag || !$h->pumpable }, 120), "backup paused at $var")
	  or diag($err);
	chomp(my $pid = slurp_file($flag));
	kill('KILL', $pid);
	eval { $h->finish };
	is($h->full_result(0) & 127, 9, "backup SIGKILLed at $var");
	unlink($flag);
}

# Killed before its first flush: its chunks are temporary files only.
kill_at('PGARK_TEST_PAUSE_FLUSH');
my ($names, $temps) = chunk_files();
is($names, 0, 'killed before the flush: no chunk under its name');
ok($temps > 0, 'killed before the flush: temporary files are left');
is(manifests(), 0, 'killed before the flush: no manifest.json');

# Killed after a flush, before the directory fsyncs: chunks under their names, whole.
kill_at('PGARK_TEST_PAUSE_DIR_SYNC');
my ($names2, $temps2) = chunk_files();
ok($names2 > 0, 'killed before the directory fsyncs: chunks are under their names');
is($temps2, $temps, 'and it left no temporary file of its own');
is(manifests(), 0, 'killed before the directory fsyncs: no manifest.json');

$r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'the next backup completes') or diag($r->{stderr});
my ($new, $reused) = $r->{stdout} =~ /(\d+) new chunks, (\d+) reused/;
ok($reused >= $names2, 'it reuses the chunks the killed backup published')
  or diag($r->{stdout});
my ($names3, $temps3) = chunk_files();
is($names3, $names2 + $new, 'the temporary files left are not counted as chunks');
is($temps3, $temps, 'they are left alone');
$r = run_pgark([ '--config', $config, 'verify' ]);
is($r->{rc}, 0, 'and it verifies') or diag($r->{stderr});
my $done = manifests();
# new rows, so that the next backup writes chunks in new directories
$src->safe_psql('postgres',
	'INSERT INTO t SELECT g, md5((g + 1)::text) FROM generate_series(20001, 30000) g');

# The fsync of the chunk directories at the barrier fails (a test knob of the posix
# driver: every directory whose path starts with main/chunks/).
$r = run_pgark([ '--config', $config, 'backup', '--no-progress' ],
	env => { PGARK_TEST_FAIL_DIR_FSYNC => 'main/chunks/' });
is($r->{rc}, 1, 'a failed directory fsync at the barrier fails the backup');
like(
	$r->{stderr},
	qr{could not fsync directory "\Q$local\E/main/chunks/[0-9a-f]{2}": Input/output error},
	'the error names the directory');
like(
	$r->{stderr},
	# At the barrier before the manifest, or earlier at the first other write of the
	# backup (a WAL segment it archives), which syncs what was deferred before it.
	qr/while making (the chunks stored in repository "local"|earlier writes) durable/,
	'and says what was being made durable');
ok(-d "$local/main/chunks", 'the chunks were stored');
is(manifests(), $done, 'no manifest.json was written');

$r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'the next backup completes') or diag($r->{stderr});
is(manifests(), $done + 1, 'its manifest.json is there');
$r = run_pgark([ '--config', $config, 'verify' ]);
is($r->{rc}, 0, 'and it verifies') or diag($r->{stderr});

$src->stop;
done_testing();
